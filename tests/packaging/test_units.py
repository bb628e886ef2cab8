"""The systemd files in systemd/: units verify, stay hardened, and sysusers/tmpfiles work.

Units are checked offline with this host's systemd-analyze in a scratch root (``--root``) that
holds the host's unit files, the units as the RPM installs them and stand-in executables for
the daemons; so neither the daemons nor a running systemd are needed. Exposure ceilings (the
overall level of ``systemd-analyze security --offline=true``, 0 best, 10 worst): hub 2.0,
agent 3.5, with or without the TXT drop-in. The example configs are loaded with the daemons'
own config loaders to keep units and configs naming the same paths.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hub.config import load_config as load_hub_config
from nodeagent.config import KeysConfig
from nodeagent.config import load_config as load_agent_config
from nodeagent.keys.providerconfig import ProviderConfig, load_provider_config

REPO = Path(__file__).resolve().parent.parent.parent
SYSTEMD = REPO / "systemd"
HOST_UNITS = Path("/usr/lib/systemd/system")
EXPOSURE_CEILING = {"trustplane-agent.service": 3.5, "trustplane-hub.service": 2.0}
CREDENTIALS = "/run/credentials/trustplane-agent.service"


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value assigned in ``path``, in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A root with the host's units, ours where the RPM puts them, and stand-in daemons."""
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    shutil.copytree(HOST_UNITS, units, symlinks=True)
    for unit in ("trustplane-agent.service", "trustplane-hub.service"):
        shutil.copy(SYSTEMD / unit, units / unit)
    (root / "usr/bin").mkdir(parents=True)
    for daemon in ("trustplane-agent", "trustplane-hub"):
        exe = root / "usr/bin" / daemon
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return root


def add_txt_dropin(root: Path) -> None:
    dropin = root / "etc/systemd/system/trustplane-agent.service.d/txt.conf"
    dropin.parent.mkdir(parents=True)
    shutil.copy(SYSTEMD / "trustplane-agent-txt.conf", dropin)


def exposure(root: Path, unit: str) -> float:
    result = run("systemd-analyze", "security", "--offline=true", f"--root={root}", unit)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@pytest.mark.parametrize("txt", [False, True], ids=["plain", "txt-dropin"])
def test_units_verify_clean(unit_root: Path, txt: bool) -> None:
    if txt:
        add_txt_dropin(unit_root)
    result = run(
        "systemd-analyze",
        "verify",
        f"--root={unit_root}",
        "trustplane-agent.service",
        "trustplane-hub.service",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_would_catch_a_bad_unit(unit_root: Path) -> None:
    """The verify check above can fail: a typo in a unit is reported."""
    unit = unit_root / "usr/lib/systemd/system/trustplane-hub.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    result = run("systemd-analyze", "verify", f"--root={unit_root}", "trustplane-hub.service")
    assert "Failed to parse protect system value" in result.stderr


@pytest.mark.parametrize("unit", sorted(EXPOSURE_CEILING))
def test_exposure_stays_under_its_ceiling(unit_root: Path, unit: str) -> None:
    assert exposure(unit_root, unit) <= EXPOSURE_CEILING[unit]


def test_agent_exposure_with_txt_dropin_stays_under_its_ceiling(unit_root: Path) -> None:
    plain = exposure(unit_root, "trustplane-agent.service")
    add_txt_dropin(unit_root)
    with_txt = exposure(unit_root, "trustplane-agent.service")
    assert plain < with_txt <= EXPOSURE_CEILING["trustplane-agent.service"]


def test_agent_unit_settings() -> None:
    s = unit_settings(SYSTEMD / "trustplane-agent.service")
    assert s["Service.Type"] == ["notify"]
    assert s["Service.NotifyAccess"] == ["main"]
    assert s["Service.ExecStart"] == ["/usr/bin/trustplane-agent run"]
    assert s["Service.Restart"] == ["on-failure"]
    assert s["Service.WatchdogSec"] == ["30s"]
    assert (s["Service.User"], s["Service.SupplementaryGroups"]) == (["trustplane"], ["tss"])
    assert s["Service.CapabilityBoundingSet"] == [""]
    assert s["Service.AmbientCapabilities"] == [""]
    assert (s["Service.DevicePolicy"], s["Service.DeviceAllow"]) == (["closed"], ["/dev/tpmrm0 rw"])
    assert s["Service.ProtectSystem"] == ["strict"]
    assert s["Service.MemoryDenyWriteExecute"] == ["yes"]
    assert s["Service.SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert s["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert s["Service.LoadCredential"] == [
        "uefi-eventlog:/sys/kernel/security/tpm0/binary_bios_measurements",
        "dmi-product-uuid:/sys/class/dmi/id/product_uuid",
    ]
    assert s["Service.SetCredential"] == ["uefi-eventlog:\\n", "dmi-product-uuid:\\n"]
    assert "Service.ProcSubset" not in s  # the agent reads /proc/sys/kernel/random/boot_id
    assert (s["Service.StateDirectory"], s["Service.RuntimeDirectory"]) == (
        ["trustplane"],
        ["trustplane-agent"],
    )
    # the key socket's default directory is the unit's runtime directory
    assert KeysConfig().socket.parent == Path("/run") / s["Service.RuntimeDirectory"][0]


def test_txt_dropin_adds_only_dev_mem_and_raw_io() -> None:
    assert unit_settings(SYSTEMD / "trustplane-agent-txt.conf") == {
        "Service.SupplementaryGroups": ["kmem"],
        "Service.CapabilityBoundingSet": ["CAP_SYS_RAWIO"],
        "Service.AmbientCapabilities": ["CAP_SYS_RAWIO"],
        "Service.DeviceAllow": ["/dev/mem r"],
    }


def test_hub_unit_settings() -> None:
    s = unit_settings(SYSTEMD / "trustplane-hub.service")
    assert s["Service.Type"] == ["notify"]  # the parent of the workers (hub.supervisor)
    assert s["Service.NotifyAccess"] == ["main"]
    assert s["Service.WatchdogSec"] == ["30s"]
    assert s["Service.ExecStart"] == ["/usr/bin/trustplane-hub run"]
    assert s["Service.User"] == ["trustplane-hub"]
    assert s["Service.CapabilityBoundingSet"] == [""]
    assert s["Service.PrivateDevices"] == ["yes"]
    assert s["Service.PrivateUsers"] == ["yes"]
    assert s["Service.LoadCredentialEncrypted"] == ["trustplane-hub.master-key"]
    assert s["Service.StateDirectory"] == ["trustplane-hub"]
    assert s["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_agent_config_points_at_the_units_directories_and_credential() -> None:
    unit = unit_settings(SYSTEMD / "trustplane-agent.service")
    config = load_agent_config(SYSTEMD / "agent.toml", dropins=SYSTEMD / "no-such-dir")
    assert config.state_dir == Path("/var/lib") / unit["Service.StateDirectory"][0]
    credentials = {c.split(":", 1)[0] for c in unit["Service.LoadCredential"]}
    assert credentials == {"uefi-eventlog", "dmi-product-uuid"}
    assert str(config.evidence.uefi_log) == f"{CREDENTIALS}/uefi-eventlog"
    assert str(config.evidence.dmi_uuid) == f"{CREDENTIALS}/dmi-product-uuid"


def test_hub_config_points_at_the_units_state_directory() -> None:
    unit = unit_settings(SYSTEMD / "trustplane-hub.service")
    config = load_hub_config(SYSTEMD / "hub.toml")
    assert config.state.dir == Path("/var/lib") / unit["Service.StateDirectory"][0]


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    """A root with our sysusers.d and tmpfiles.d files where the RPM puts them."""
    root = tmp_path / "sys"
    (root / "etc").mkdir(parents=True)
    for kind, directory in (("sysusers", "sysusers.d"), ("tmpfiles", "tmpfiles.d")):
        for package in ("trustplane-agent", "trustplane-hub"):
            dest = root / "usr/lib" / directory / f"{package}.conf"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SYSTEMD / f"{package}.{kind}.conf", dest)
    return root


def table(path: Path) -> dict[str, list[str]]:
    rows = (line.split(":") for line in path.read_text().splitlines() if line)
    return {row[0]: row for row in rows}


def test_sysusers_creates_the_system_users(sysroot: Path) -> None:
    result = run("systemd-sysusers", f"--root={sysroot}")
    assert result.returncode == 0, result.stderr
    users, groups = table(sysroot / "etc/passwd"), table(sysroot / "etc/group")
    assert sorted(users) == ["trustplane", "trustplane-hub"]
    agent, hub = users["trustplane"], users["trustplane-hub"]
    assert agent[4:] == ["trustplane node agent", "/var/lib/trustplane", "/usr/sbin/nologin"]
    assert hub[4:] == ["trustplane hub", "/var/lib/trustplane-hub", "/usr/sbin/nologin"]
    assert int(agent[2]) < 1000
    assert int(hub[2]) < 1000
    assert sorted(groups) == ["trustplane", "trustplane-hub", "tss"]
    assert groups["tss"][3] == "trustplane"


def test_tmpfiles_creates_the_directories_with_their_modes(sysroot: Path) -> None:
    assert run("systemd-sysusers", f"--root={sysroot}").returncode == 0
    result = run("systemd-tmpfiles", f"--root={sysroot}", "--create")
    assert (result.returncode, result.stderr) == (0, "")
    users = table(sysroot / "etc/passwd")
    agent_uid, hub_uid = int(users["trustplane"][2]), int(users["trustplane-hub"][2])
    want = {
        "var/lib/trustplane": (0o700, agent_uid),
        "run/trustplane-agent": (0o750, agent_uid),
        "var/lib/trustplane-hub": (0o700, hub_uid),
    }
    for path, (mode, uid) in want.items():
        st = (sysroot / path).stat()
        assert stat.S_ISDIR(st.st_mode), path
        assert (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid) == (oct(mode), uid, uid), path


# --- encrypted images: the provider's files, the cri-o drop-in, the OCI hook ------------------


def test_ocicrypt_config_names_the_installed_provider() -> None:
    conf = json.loads((SYSTEMD / "trustplane-ocicrypt.conf").read_text())
    assert conf == {
        "key-providers": {
            "trustplane": {"cmd": {"path": "/usr/bin/trustplane-keyprovider", "args": []}}
        }
    }
    scripts = (REPO / "setup.cfg").read_text()
    assert "trustplane-keyprovider = nodeagent.keys.provider:main" in scripts
    spec = (REPO / "rpm" / "trustplane.spec").read_text()
    assert (
        "systemd/trustplane-ocicrypt.conf %{buildroot}%{_sysconfdir}/trustplane/ocicrypt.conf"
        in spec
    )


def test_crio_dropin_points_cri_o_at_the_ocicrypt_config() -> None:
    assert unit_settings(SYSTEMD / "crio-trustplane.conf") == {
        "Service.Environment": ["OCICRYPT_KEYPROVIDER_CONFIG=/etc/trustplane/ocicrypt.conf"]
    }


def test_packaged_provider_config_loads_and_matches_the_agents_socket() -> None:
    cfg = load_provider_config({"TRUSTPLANE_KEYPROVIDER_CONFIG": str(SYSTEMD / "keyprovider.toml")})
    assert cfg == ProviderConfig()
    assert cfg.socket == str(KeysConfig().socket)


@pytest.mark.parametrize(
    ("annotations", "runs"),
    [
        ({"trustplane.io/require-trusted": "true"}, True),
        ({"trustplane.io/require-trusted": "false"}, False),
        ({"trustplane.io/require-trusted": "true-ish"}, False),
        ({"trustplane.io/require-trustedX": "true"}, False),
        ({"trustplaneXio/require-trusted": "true"}, False),
        ({"io.kubernetes.pod.name": "x"}, False),
    ],
)
def test_oci_hook_runs_for_the_annotation_only(annotations: dict[str, str], runs: bool) -> None:
    hook = json.loads((SYSTEMD / "trustplane-require-trusted.json").read_text())
    assert hook["version"] == "1.0.0"
    assert hook["stages"] == ["createRuntime"]
    assert hook["hook"]["path"] == "/usr/bin/trustplane-agent"
    assert hook["hook"]["args"] == ["trustplane-agent", "hook"]
    # oci-hooks(5): every key and value of when.annotations is a regular expression, and the
    # hook runs when some annotation matches a key and its value matches that key's value
    matched = any(
        re.search(key_re, key) and re.search(value_re, value)
        for key_re, value_re in hook["when"]["annotations"].items()
        for key, value in annotations.items()
    )
    assert matched == runs
