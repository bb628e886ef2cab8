"""trustplane's RPMs: built from the git tree, rpmlint-clean, installed, upgraded and removed.

The spec is built the way a non-Fedora build host builds it (scripts/build-rpms.sh: git archive,
rpmbuild -ba with a private _topdir, rpm/macros.trustplane-compat), twice: release 1 and a
later release 1.ci2 to upgrade to. The RPMs go into a createrepo_c repository with
trustplane-ci-base (tests/packaging/trustplane-ci-base.spec), a stand-in for the Fedora base
system that provides the names they require and the programs their scriptlets run, and are
installed into an empty ``dnf --installroot``, upgraded and removed. Every phase is recorded in
one module fixture; the tests read the record. Nothing is installed on this machine itself.

Needs root (dnf --installroot, file owners) and the Debian packages in the Makefile's
APT_PACKAGES (rpm, createrepo-c, dnf, rpmlint, python3-installer, ...).
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SETUP_CFG = REPO / "setup.cfg"
BUILD_PYTHON = "/usr/bin/python3"  # what rpm/macros.trustplane-compat builds with

# Programs the scriptlets run inside the installroot, copied with their libraries from this host.
BASE_PROGRAMS = (
    "/usr/bin/dash",
    "/usr/bin/getent",
    "/usr/sbin/groupadd",
    "/usr/sbin/useradd",
    "/usr/sbin/usermod",
    "/usr/sbin/nologin",
)
# Stand-ins for programs that talk to a running systemd: they log their arguments.
STUBS = ("systemctl", "systemd-tmpfiles")
STUB_LOG_DIR = "var/log/trustplane-ci"


def setup_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    return cfg["metadata"]["version"]


VERSION = setup_version()


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result.stdout


def python_version() -> str:
    return run(BUILD_PYTHON, "-Ic", "import sys; print(*sys.version_info[:2], sep='.')").strip()


# --- the CI base package -------------------------------------------------------------------


def canonical(path: str) -> str:
    """The merged-/usr path of ``path`` (the installroot has /lib -> usr/lib and so on)."""
    for old, new in (("/lib64/", "/usr/lib64/"), ("/lib/", "/usr/lib/"), ("/bin/", "/usr/bin/")):
        if path.startswith(old):
            return new + path[len(old) :]
    return path


def stage_base(stage: Path) -> None:
    """Lay out the CI base system's files under ``stage``."""
    for sub in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "dev", "run", "tmp"):
        (stage / sub).mkdir(parents=True)
    (stage / STUB_LOG_DIR).mkdir(parents=True)
    (stage / "var/lib").mkdir(parents=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (stage / link).symlink_to(target)
    (stage / "lib64").symlink_to("usr/lib64")
    for program in BASE_PROGRAMS:
        libraries = re.findall(r"(/\S+) \(0x[0-9a-f]+\)", run("ldd", program))
        for path in (program, *libraries):
            dest = stage / canonical(path).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(path), dest)
    (stage / "usr/bin/sh").symlink_to("dash")
    for name in STUBS:
        stub = stage / "usr/bin" / name
        stub.write_text(f'#!/bin/sh\necho "$*" >> /{STUB_LOG_DIR}/{name}.log\n')
        stub.chmod(0o755)
    os.mknod(stage / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (stage / "dev/null").chmod(0o666)
    etc = stage / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:::\n")
    (etc / "shadow").chmod(0o600)
    (etc / "gshadow").chmod(0o600)
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nshadow: files\n")
    (etc / "login.defs").write_text(
        "SYS_UID_MIN 201\nSYS_UID_MAX 999\nSYS_GID_MIN 201\nSYS_GID_MAX 999\n"
    )


# --- building ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    topdir: Path  # release 1
    repo: Path  # createrepo_c repository: base + release 1 + release 1.ci2
    rpms: dict[str, Path]  # release 1 binary RPMs by package name
    srpm: Path
    pyver: str


def package_name(rpm_file: Path) -> str:
    return run("rpm", "-qp", "--qf", "%{NAME}", rpm_file)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if os.geteuid() != 0:
        pytest.fail("the RPM tests need root (dnf --installroot, file owners)")
    tmp = tmp_path_factory.mktemp("rpm")
    topdir, topdir2 = tmp / "rpmbuild", tmp / "rpmbuild-ci2"
    run(REPO / "scripts/build-rpms.sh", topdir)
    run(REPO / "scripts/build-rpms.sh", topdir2, "--define", "dist .ci2")
    pyver = python_version()
    stage, base_top = tmp / "base-stage", tmp / "base-rpmbuild"
    stage_base(stage)
    run(
        "rpmbuild", "-bb", "--define", f"_topdir {base_top}", "--define", f"stage {stage}",
        "--define", f"pyver {pyver}", HERE / "trustplane-ci-base.spec",
    )  # fmt: skip
    repo = tmp / "repo"
    repo.mkdir()
    rpms = {}
    for rpm_file in sorted(topdir.glob("RPMS/noarch/*.rpm")):
        rpms[package_name(rpm_file)] = rpm_file
    for rpm_file in [*rpms.values(), *topdir2.glob("RPMS/noarch/*.rpm"), *base_top.rglob("*.rpm")]:
        shutil.copy2(rpm_file, repo)
    run("createrepo_c", "--quiet", repo)
    (srpm,) = topdir.glob("SRPMS/*.src.rpm")
    return Built(topdir=topdir, repo=repo, rpms=rpms, srpm=srpm, pyver=pyver)


# --- installing, upgrading, removing ----------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What an installroot looks like at one moment."""

    packages: frozenset[str]  # NAME-VERSION-RELEASE
    users: dict[str, list[str]]  # passwd fields by name
    groups: dict[str, list[str]]  # group fields by name
    files: dict[str, tuple[int, str, str] | None]  # path -> (st_mode, owner, group) or absent
    calls: dict[str, list[str]]  # stub name -> logged argument lines
    verify: str  # rpm -V output for trustplane's packages ("" when everything matches)


def read_table(path: Path) -> dict[str, list[str]]:
    rows = (line.split(":") for line in path.read_text().splitlines() if line)
    return {row[0]: row for row in rows}


def take_snapshot(root: Path, paths: list[str]) -> Snapshot:
    users, groups = read_table(root / "etc/passwd"), read_table(root / "etc/group")
    uid_names = {int(f[2]): name for name, f in users.items()}
    gid_names = {int(f[2]): name for name, f in groups.items()}
    files: dict[str, tuple[int, str, str] | None] = {}
    for path in paths:
        target = root / path.lstrip("/")
        if target.exists() or target.is_symlink():
            st = target.lstat()
            owner = uid_names.get(st.st_uid, str(st.st_uid))
            files[path] = (st.st_mode, owner, gid_names.get(st.st_gid, str(st.st_gid)))
        else:
            files[path] = None
    calls = {}
    for name in STUBS:
        log = root / STUB_LOG_DIR / f"{name}.log"
        calls[name] = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
    packages = frozenset(run("rpm", "--root", root, "-qa", "--qf", "%{NVR}\n").split())
    ours = sorted(p.rsplit("-", 2)[0] for p in packages if "ci-base" not in p)
    verify = subprocess.run(
        ["rpm", "--root", str(root), "-V", *ours], capture_output=True, text=True, check=False
    )
    return Snapshot(packages, users, groups, files, calls, verify.stdout + verify.stderr)


def dnf(built: Built, root: Path, *args: str) -> None:
    cache = root.parent / f"{root.name}-dnf"
    (cache / "repos.d").mkdir(parents=True, exist_ok=True)
    conf = cache / "dnf.conf"
    conf.write_text("[main]\ngpgcheck=0\nclean_requirements_on_remove=1\n")
    run(
        "dnf", "--assumeyes", f"--config={conf}", f"--installroot={root}",
        "--releasever=ci", f"--setopt=reposdir={cache / 'repos.d'}",
        f"--setopt=cachedir={cache / 'cache'}", f"--repofrompath=ci,{built.repo.as_uri()}",
        "--repo=ci", "--nogpgcheck", "--disableplugin=*", *args,
    )  # fmt: skip


@dataclass(frozen=True)
class Lifecycle:
    pyver: str
    installed: Snapshot
    upgraded: Snapshot
    removed: Snapshot
    rpmsave: str | None  # agent.toml.rpmsave's text after removal


AGENT_CONFIG_EDIT = '\n[hub]\nurl = "https://hub.ci.invalid:8443"\n'
HUB_STATE_FILE = "/var/lib/trustplane-hub/hub.sqlite"


def expected_files(pyver: str) -> dict[str, tuple[int, str, str]]:
    """Every file and directory the test checks, with the mode and owners it must have."""
    d, f, x = stat.S_IFDIR, stat.S_IFREG, stat.S_IFREG | 0o755
    sitelib = f"/usr/lib/python{pyver}/site-packages"
    return {
        "/usr/bin/trustplane": (x, "root", "root"),
        f"{sitelib}/trustcore/__init__.py": (f | 0o644, "root", "root"),
        f"{sitelib}/nodeagent/__init__.py": (f | 0o644, "root", "root"),
        f"{sitelib}/hub/__init__.py": (f | 0o644, "root", "root"),
        f"{sitelib}/trustplane/__init__.py": (f | 0o644, "root", "root"),
        f"{sitelib}/trustplane-{VERSION}.dist-info/METADATA": (f | 0o644, "root", "root"),
        "/usr/share/doc/python3-trustplane/README.md": (f | 0o644, "root", "root"),
        "/etc/trustplane": (d | 0o755, "root", "root"),
        "/usr/bin/trustplane-agent": (x, "root", "root"),
        "/usr/lib/systemd/system/trustplane-agent.service": (f | 0o644, "root", "root"),
        "/usr/lib/sysusers.d/trustplane-agent.conf": (f | 0o644, "root", "root"),
        "/usr/lib/tmpfiles.d/trustplane-agent.conf": (f | 0o644, "root", "root"),
        "/usr/share/trustplane/systemd/trustplane-agent-txt.conf": (f | 0o644, "root", "root"),
        "/etc/trustplane/agent.toml": (f | 0o640, "root", "trustplane"),
        "/etc/trustplane/agent.d": (d | 0o750, "root", "trustplane"),
        "/var/lib/trustplane": (d | 0o700, "trustplane", "trustplane"),
        "/run/trustplane-agent": (d | 0o750, "trustplane", "trustplane"),
        "/usr/bin/trustplane-keyprovider": (x, "root", "root"),
        "/etc/trustplane/ocicrypt.conf": (f | 0o644, "root", "root"),
        "/etc/trustplane/keyprovider.toml": (f | 0o644, "root", "root"),
        "/usr/lib/systemd/system/crio.service.d/50-trustplane-ocicrypt.conf": (
            f | 0o644,
            "root",
            "root",
        ),
        "/usr/share/containers/oci/hooks.d/trustplane-require-trusted.json": (
            f | 0o644,
            "root",
            "root",
        ),
        "/usr/bin/trustplane-hub": (x, "root", "root"),
        "/usr/lib/systemd/system/trustplane-hub.service": (f | 0o644, "root", "root"),
        "/usr/lib/sysusers.d/trustplane-hub.conf": (f | 0o644, "root", "root"),
        "/usr/lib/tmpfiles.d/trustplane-hub.conf": (f | 0o644, "root", "root"),
        "/etc/trustplane/hub.toml": (f | 0o640, "root", "trustplane-hub"),
        "/etc/trustplane/hub.d": (d | 0o750, "root", "trustplane-hub"),
        "/var/lib/trustplane-hub": (d | 0o700, "trustplane-hub", "trustplane-hub"),
        "/usr/share/trustplane/templates/uefi-secure-boot.json": (f | 0o644, "root", "root"),
        "/usr/share/trustplane/templates/txt-tboot.json": (f | 0o644, "root", "root"),
        "/usr/share/trustplane/flavor.schema.json": (f | 0o644, "root", "root"),
    }


@pytest.fixture(scope="module")
def lifecycle(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    root = tmp_path_factory.mktemp("installroot") / "root"
    root.mkdir()
    paths = [*expected_files(built.pyver), HUB_STATE_FILE, "/etc/trustplane/agent.toml.rpmsave"]
    paths.append("/etc/trustplane/hub.toml.rpmsave")

    # The base system first, as a user-installed package (dnf would remove it with the last
    # package that needs it otherwise).
    dnf(built, root, "install", "trustplane-ci-base")
    dnf(built, root, "install", f"trustplane-agent-{VERSION}-1", f"trustplane-hub-{VERSION}-1")
    installed = take_snapshot(root, paths)

    # The operator edits the agent's config and the hub writes state; both must survive.
    with (root / "etc/trustplane/agent.toml").open("a") as f:
        f.write(AGENT_CONFIG_EDIT)
    (root / HUB_STATE_FILE.lstrip("/")).write_text("state\n")
    dnf(
        built,
        root,
        "upgrade",
        f"trustplane-agent-{VERSION}-1.ci2",
        f"trustplane-hub-{VERSION}-1.ci2",
    )
    upgraded = take_snapshot(root, paths)

    dnf(built, root, "remove", "trustplane-agent", "trustplane-hub")
    removed = take_snapshot(root, paths)
    rpmsave = root / "etc/trustplane/agent.toml.rpmsave"
    text = rpmsave.read_text() if rpmsave.exists() else None
    return Lifecycle(built.pyver, installed, upgraded, removed, text)


# --- the tests --------------------------------------------------------------------------


def requirements(rpm_file: Path, what: str = "--requires") -> set[str]:
    return set(run("rpm", "-qp", what, rpm_file).splitlines())


def test_build_makes_the_three_noarch_packages_and_a_source_rpm(built: Built) -> None:
    assert sorted(built.rpms) == ["python3-trustplane", "trustplane-agent", "trustplane-hub"]
    assert all(p.name.endswith(f"-{VERSION}-1.noarch.rpm") for p in built.rpms.values())
    assert built.srpm.name == f"trustplane-{VERSION}-1.src.rpm"
    sources = set(run("rpm", "-qpl", built.srpm).split())
    assert f"trustplane-{VERSION}.tar.gz" in sources
    assert "macros.trustplane-compat" in sources


def test_spec_default_version_is_setup_cfg_version() -> None:
    spec = (REPO / "rpm/trustplane.spec").read_text()
    assert f"%{{!?tp_version:%global tp_version {VERSION}}}" in spec


def test_packages_require_only_these_base_system_names(built: Built) -> None:
    """The base-system names required are exactly the ones trustplane-ci-base provides.

    A new dependency fails here on purpose: the spec's Requires, trustplane-ci-base.spec's
    Provides and this list change together.
    """
    pyver = built.pyver
    rpmlib = re.compile(r"^rpmlib\(")
    internal = {f"python3-trustplane = {VERSION}-1"}
    seen = {
        name: {r for r in requirements(path) if not rpmlib.match(r) and r not in internal}
        for name, path in built.rpms.items()
    }
    assert seen == {
        "python3-trustplane": {
            "/usr/bin/python3",
            f"python(abi) = {pyver}",
            "python3-cryptography >= 41",
            f"python{pyver}dist(cryptography) >= 41",
        },
        "trustplane-agent": {
            "/bin/sh",
            "/usr/bin/python3",
            "config(trustplane-agent) = " + f"{VERSION}-1",
            "python3-tpm2-pytss >= 2.1",
            "python3-aiohttp >= 3.9",
            "python3-systemd >= 235",
            "python3-pyudev >= 0.24",
            "python3-prometheus_client >= 0.20",
            "shadow-utils",
            "systemd",
        },
        "trustplane-hub": {
            "/bin/sh",
            "/usr/bin/python3",
            "config(trustplane-hub) = " + f"{VERSION}-1",
            "python3-aiohttp >= 3.13",
            "python3-sqlite-utils >= 4.0",
            "python3-jinja2 >= 3.1",
            "python3-jwcrypto >= 1.5",
            "python3-prometheus_client >= 0.20",
            "shadow-utils",
            "systemd",
        },
    }
    assert requirements(built.rpms["trustplane-hub"], "--recommends") == {
        "python3-kubernetes-asyncio"
    }


FEDORA_NAMES = {
    "systemd-python": "python3-systemd",
    "prometheus-client": "python3-prometheus_client",
}


def test_requires_follow_setup_cfg_extras(built: Built) -> None:
    """Each dependency of setup.cfg's agent/hub extras is a Fedora Requires with its minimum."""
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    extras = cfg["options.extras_require"]
    for extra in ("agent", "hub"):
        wanted = set()
        for line in extras[extra].split():
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line)
            assert match, f"{extra}: {line!r} is not NAME>=VERSION"
            name, minimum = match.groups()
            fedora = FEDORA_NAMES.get(name.lower(), f"python3-{name.lower()}")
            wanted.add(f"{fedora} >= {minimum}")
        have = requirements(built.rpms[f"trustplane-{extra}"])
        assert wanted <= have, (
            f"trustplane-{extra} lacks {sorted(wanted - have)}: add them to rpm/trustplane.spec's"
            " Requires and to tests/packaging/trustplane-ci-base.spec's Provides"
        )


def test_rpmlint_with_fedora_settings_finds_nothing(built: Built) -> None:
    out = run(
        "rpmlint", "-c", REPO / "rpm/rpmlint-fedora.toml", "-r", REPO / "rpm/trustplane.rpmlintrc",
        built.topdir / "SOURCES/trustplane.spec", built.srpm, *built.rpms.values(),
    )  # fmt: skip
    assert "0 errors, 0 warnings" in out, out


MAN_PAGES = {
    "python3-trustplane": {"man1/trustplane.1"},
    "trustplane-agent": {"man8/trustplane-agent.8", "man5/trustplane-agent.toml.5"},
    "trustplane-hub": {"man8/trustplane-hub.8", "man5/trustplane-hub.toml.5"},
}


@pytest.mark.parametrize("package", sorted(MAN_PAGES))
def test_each_package_carries_its_manual_pages(built: Built, package: str) -> None:
    files = run("rpm", "-qpl", built.rpms[package]).split()
    pages = {
        f.removeprefix("/usr/share/man/").removesuffix(".gz")
        for f in files
        if f.startswith("/usr/share/man/")
    }
    assert pages == MAN_PAGES[package]


def test_the_hub_package_carries_the_templates(built: Built) -> None:
    # a host installed by dnf can repeat the README's flavor steps: the hub's built-in template
    # names resolve to these files (hub.flavorcli.TEMPLATE_DIRS)
    hub_files = set(run("rpm", "-qpl", built.rpms["trustplane-hub"]).split())
    for template in sorted((REPO / "firmware_measurements/templates").glob("*.json")):
        assert f"/usr/share/trustplane/templates/{template.name}" in hub_files


def test_dnf_installs_both_packages_and_the_library(lifecycle: Lifecycle) -> None:
    assert lifecycle.installed.packages == {
        "trustplane-ci-base-1-1",
        f"python3-trustplane-{VERSION}-1",
        f"trustplane-agent-{VERSION}-1",
        f"trustplane-hub-{VERSION}-1",
    }


def test_installed_files_have_their_modes_and_owners(lifecycle: Lifecycle) -> None:
    for path, want in expected_files(lifecycle.pyver).items():
        have = lifecycle.installed.files[path]
        assert have is not None, f"{path} is missing"
        assert (oct(have[0]), have[1], have[2]) == (oct(want[0]), want[1], want[2]), path


def test_rpm_verify_finds_every_file_as_packaged(lifecycle: Lifecycle) -> None:
    assert lifecycle.installed.verify == ""


def test_pre_scriptlets_created_the_system_users(lifecycle: Lifecycle) -> None:
    users, groups = lifecycle.installed.users, lifecycle.installed.groups
    agent, hub = users["trustplane"], users["trustplane-hub"]
    assert agent[4:] == ["trustplane node agent", "/var/lib/trustplane", "/usr/sbin/nologin"]
    assert hub[4:] == ["trustplane hub", "/var/lib/trustplane-hub", "/usr/sbin/nologin"]
    assert 201 <= int(agent[2]) <= 999  # a system user (login.defs SYS_UID range)
    assert 201 <= int(hub[2]) <= 999
    assert groups["trustplane"][2] == agent[3]
    assert groups["trustplane-hub"][2] == hub[3]
    assert groups["tss"][3].split(",") == ["trustplane"]


def test_post_scriptlets_preset_the_units_and_create_the_directories(
    lifecycle: Lifecycle,
) -> None:
    assert sorted(lifecycle.installed.calls["systemctl"]) == [
        "--no-reload preset trustplane-agent.service",
        "--no-reload preset trustplane-hub.service",
    ]
    assert sorted(lifecycle.installed.calls["systemd-tmpfiles"]) == [
        "--create /usr/lib/tmpfiles.d/trustplane-agent.conf",
        "--create /usr/lib/tmpfiles.d/trustplane-hub.conf",
    ]


def test_upgrade_restarts_the_services_and_keeps_config_and_state(lifecycle: Lifecycle) -> None:
    up = lifecycle.upgraded
    assert {p for p in up.packages if "ci-base" not in p} == {
        f"python3-trustplane-{VERSION}-1.ci2",
        f"trustplane-agent-{VERSION}-1.ci2",
        f"trustplane-hub-{VERSION}-1.ci2",
    }
    # The old package's %postun restarts the running service; no preset on upgrade.
    assert sorted(up.calls["systemctl"]) == [
        "daemon-reload",
        "daemon-reload",
        "try-restart trustplane-agent.service",
        "try-restart trustplane-hub.service",
    ]
    # The edited config is kept in place (%config(noreplace)) and flagged as modified by rpm -V.
    assert up.files["/etc/trustplane/agent.toml"] == (stat.S_IFREG | 0o640, "root", "trustplane")
    assert re.search(r"^S\.5\S* +c /etc/trustplane/agent\.toml$", up.verify, re.M), up.verify
    assert up.files[HUB_STATE_FILE] is not None
    assert len([u for u in up.users if u.startswith("trustplane")]) == 2


def test_remove_takes_the_files_and_keeps_edited_config_state_and_users(
    lifecycle: Lifecycle,
) -> None:
    gone = lifecycle.removed
    assert gone.packages == {"trustplane-ci-base-1-1"}
    kept = {p for p, st in gone.files.items() if st is not None}
    assert kept == {
        "/etc/trustplane",
        "/etc/trustplane/agent.toml.rpmsave",
        "/var/lib/trustplane-hub",
        HUB_STATE_FILE,
    }
    assert lifecycle.rpmsave is not None
    assert lifecycle.rpmsave.endswith(AGENT_CONFIG_EDIT)
    assert sorted(gone.calls["systemctl"]) == [
        "--no-reload disable --now trustplane-agent.service",
        "--no-reload disable --now trustplane-hub.service",
        "daemon-reload",
        "daemon-reload",
    ]
    # Fedora's rule: packages never delete system users (their files may outlive them).
    assert {"trustplane", "trustplane-hub"} <= set(gone.users)
