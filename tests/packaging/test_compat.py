"""rpm/trustplane-rpm-compat.py, the stand-in for Fedora's pyproject and sysusers macros.

Its whole path is exercised by test_rpm.py (build, install, users created); these tests pin the
%pre shell it writes and its refusals, which that path does not reach.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent.parent / "rpm/trustplane-rpm-compat.py"


def load_compat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trustplane_rpm_compat", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compat = load_compat()


def test_sysusers_pre_writes_idempotent_shadow_utils_calls() -> None:
    text = (
        "# comment\n"
        'u trustplane - "trustplane node agent" /var/lib/trustplane -\n'
        "m trustplane tss\n"
        "g kvm 36\n"
        "u svc 450 - - /bin/false\n"
    )
    assert compat.sysusers_pre(text).splitlines() == [
        "getent group trustplane >/dev/null || groupadd -r trustplane || :",
        (
            "getent passwd trustplane >/dev/null || useradd -r -g trustplane"
            " -d /var/lib/trustplane -s /usr/sbin/nologin -c 'trustplane node agent'"
            " trustplane || :"
        ),
        "getent group tss >/dev/null || groupadd -r tss || :",
        "usermod -a -G tss trustplane || :",
        "getent group kvm >/dev/null || groupadd -r -g 36 kvm || :",
        "getent group svc >/dev/null || groupadd -r -g 450 svc || :",
        (
            "getent passwd svc >/dev/null || useradd -r -u 450 -g svc -d / -s /bin/false -c ''"
            " svc || :"
        ),
    ]


@pytest.mark.parametrize("line", ["r - 500-900", "m onlyuser", "x foo"])
def test_sysusers_pre_refuses_lines_it_cannot_translate(line: str) -> None:
    with pytest.raises(compat.CompatError, match=r"line 1: unsupported sysusers\.d line"):
        compat.sysusers_pre(line + "\n")


def test_save_files_lists_module_directories_and_the_dist_info(tmp_path: Path) -> None:
    sitelib = "/usr/lib/python3.11/site-packages"
    root = tmp_path / sitelib.lstrip("/")
    (root / "pkg").mkdir(parents=True)
    (root / "single.py").write_text("")
    (root / "pkg-1.0.dist-info").mkdir()
    lines, modules = compat.save_files(tmp_path, sitelib, ["pkg", "single"])
    assert lines == [f"{sitelib}/pkg/", f"{sitelib}/single.py", f"{sitelib}/pkg-1.0.dist-info/"]
    assert modules == ["pkg", "single"]
    with pytest.raises(compat.CompatError, match=r"module 'absent' is not installed"):
        compat.save_files(tmp_path, sitelib, ["absent"])
