# trustplane: every target sets up what it needs (apt packages when run as root, a virtualenv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The test data (event-log corpus, recorded ocicrypt traffic) lives in tests/data; SHARED=DIR
# points the tests, benchmarks and the demo at another copy laid out the same way.
ifdef SHARED
export TRUSTPLANE_SHARED := $(abspath $(SHARED))
endif
ARGS ?=

APT_PACKAGES := swtpm swtpm-tools tpm2-tools libtss2-dev libsystemd-dev pkg-config gcc python3-dev python3-venv umockdev gir1.2-umockdev-1.0 python3-gi
# tests/packaging: building, linting and installing the RPMs, checking the systemd units (and
# running them under a real systemd in a systemd-nspawn container)
APT_PACKAGES += rpm createrepo-c dnf rpmlint systemd systemd-container python3-installer python3-packaging python3-pip python3-setuptools python3-wheel
# tests/e2e: the status page in headless Chromium (Playwright drives the Debian build)
APT_PACKAGES += chromium
# tests/test_manpages.py: the manual pages rendered with groff
APT_PACKAGES += groff-base man-db
# tests of the hub on PostgreSQL (a throw-away cluster made by the tests with initdb)
APT_PACKAGES += postgresql
# encrypted images: a real OCI registry, and podman + runc running the OCI hook
APT_PACKAGES += docker-registry podman runc busybox-static
# the fake Kubernetes API server is proven with the real kubectl (Debian's kubernetes-client,
# unless a kubectl is already installed from another source)
APT_PACKAGES += $(if $(shell command -v kubectl),,kubernetes-client)
STAMP_APT := $(VENV)/.apt-done
STAMP_PY := $(VENV)/.py-done

.PHONY: setup demo test check lint types contracts bench clean

setup: $(STAMP_PY)

$(STAMP_APT):
	@bash scripts/install-system-deps.sh $(APT_PACKAGES)
	@mkdir -p $(VENV) && touch $@

$(STAMP_PY): $(STAMP_APT) setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	$(VENV)/bin/trustplane demo $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

types: setup
	$(VENV)/bin/mypy

contracts: setup
	$(VENV)/bin/lint-imports

check: lint types contracts test

bench: setup
	$(PY) -m bench.eventlog --json
	$(PY) -m bench.quote --json
	$(PY) -m bench.flavors --json
	$(PY) -m bench.hub_verify --json
	$(PY) -m bench.hub --json --hosts 10000
	$(PY) -m bench.hub --json --hosts 10000 --workers 2
	$(PY) -m bench.bus --json
	$(PY) -m bench.idle_connections --json
	$(PY) -m bench.agent --json
	$(PY) -m bench.keys --json
	$(PY) -m bench.images --json
	$(PY) -m bench.store_report --json
	$(PY) -m bench.clusters --json --nodes 5000

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
