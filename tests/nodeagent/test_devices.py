"""TPM device discovery and hot-plug through the real pyudev, under a umockdev testbed.

Each scenario runs ``udev_harness.py`` under ``umockdev-wrapper`` (the umockdev preload library
redirects libudev, sysfs and uevents to a testbed the harness builds). umockdev is an apt
package (Makefile APT_PACKAGES); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from trustplane.swtpm import Swtpm, free_port

HARNESS = Path(__file__).with_name("udev_harness.py")


def _harness(*args: str) -> dict[str, Any]:
    wrapper = shutil.which("umockdev-wrapper")
    assert wrapper is not None, (
        "umockdev-wrapper not found: apt install umockdev gir1.2-umockdev-1.0"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "TSS2_LOG": "all+NONE",
    }
    out = subprocess.run(
        [wrapper, sys.executable, str(HARNESS), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _config(tmp_path: Path, tpm: Swtpm) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[hub]\nurl = "https://127.0.0.1:{free_port()}"\ntimeout = 1\n'
        f'[tpm]\ntcti = "{tpm.tcti}"\ndevice = "/dev/tpmrm0"\n'
        f'[evidence]\nuefi_log = "{tmp_path / "none"}"\ntxt = false\n'
        "[attestation]\ninterval = 3600\nbackoff_initial = 30\nbackoff_max = 60\n"
    )
    return cfg


def test_discovery_prefers_tpmrm_and_watch_sees_remove_and_add() -> None:
    seen = _harness("watcher")
    assert seen["found"] == ["/dev/tpmrm0", "/dev/tpm0"]
    assert seen["after_remove"] == ["/dev/tpm0"]
    assert seen["events"] == [
        ["remove", "tpmrm", "/dev/tpmrm0"],
        ["add", "tpmrm", "/dev/tpmrm0"],
    ]


def test_daemon_stops_on_removal_and_attests_at_once_on_return(
    tmp_path: Path, swtpm: Swtpm
) -> None:
    seen = _harness("daemon", str(_config(tmp_path, swtpm)))
    assert seen["started"] is True
    assert seen["present_at_start"] is True
    assert seen["gone_seen"] is True
    assert seen["problem"] == "/dev/tpmrm0 was removed"
    assert seen["back_seen"] is True
    assert seen["attempted_at_once"] is True


def test_daemon_without_its_device_says_so(tmp_path: Path, swtpm: Swtpm) -> None:
    seen = _harness("absent", str(_config(tmp_path, swtpm)))
    assert seen == {
        "present": False,
        "problem": "/dev/tpmrm0 is not present",
        "status": "TPM gone (/dev/tpmrm0 is not present): not attesting, waiting for it",
    }
