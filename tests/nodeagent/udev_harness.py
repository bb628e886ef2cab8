"""Run under ``umockdev-wrapper``: a umockdev testbed with TPM devices, driven from Python.

Not a test module itself: ``test_devices.py`` runs it in a subprocess with the umockdev preload
library, so pyudev (the real library, over the real libudev) sees the testbed's sysfs and its
uevents. The GObject introspection bindings come from the system's python3-gi (appended to the
path, after the virtualenv's packages). Prints one JSON object with what it observed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append("/usr/lib/python3/dist-packages")

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

from nodeagent.config import load_config  # noqa: E402
from nodeagent.daemon import Daemon  # noqa: E402
from nodeagent.devices import TpmDeviceWatcher, TpmNode, find_tpm_devices  # noqa: E402


def add_tpm(testbed: Any, subsystem: str, name: str, minor: int) -> str:
    return str(
        testbed.add_device(
            subsystem,
            name,
            None,
            ["dev", f"253:{minor}"],
            ["DEVNAME", name, "MAJOR", "253", "MINOR", str(minor)],
        )
    )


def remove(testbed: Any, syspath: str) -> None:
    testbed.uevent(syspath, "remove")
    testbed.remove_device(syspath)


async def until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def watcher_scenario(testbed: Any) -> dict[str, Any]:
    tpm0 = add_tpm(testbed, "tpm", "tpm0", 0)
    rm0 = add_tpm(testbed, "tpmrm", "tpmrm0", 65536)
    found = [n.device_node for n in find_tpm_devices()]
    events: list[list[str]] = []

    def record(action: str, node: TpmNode) -> None:
        events.append([action, node.subsystem, node.device_node])

    watcher = TpmDeviceWatcher(record)
    watcher.start(asyncio.get_running_loop())
    remove(testbed, rm0)
    await until(lambda: len(events) >= 1)
    after_remove = [n.device_node for n in find_tpm_devices()]
    add_tpm(testbed, "tpmrm", "tpmrm0", 65536)
    await until(lambda: len(events) >= 2)
    await asyncio.sleep(0.1)
    watcher.stop()
    del tpm0
    return {"found": found, "after_remove": after_remove, "events": events}


async def daemon_scenario(testbed: Any, config: Path) -> dict[str, Any]:
    rm0 = add_tpm(testbed, "tpmrm", "tpmrm0", 65536)
    daemon = Daemon(load_config(config), environ={})
    task = asyncio.create_task(daemon.run())
    out: dict[str, Any] = {}
    out["started"] = await until(lambda: daemon.steps >= 1)
    out["present_at_start"] = daemon.tpm_present
    remove(testbed, rm0)
    out["gone_seen"] = await until(lambda: not daemon.tpm_present)
    out["problem"] = daemon.tpm_problem
    out["status"] = daemon.notifier.last_status
    steps = daemon.steps
    add_tpm(testbed, "tpmrm", "tpmrm0", 65536)
    out["back_seen"] = await until(lambda: daemon.tpm_present)
    # the reappearance makes an attestation due at once: a new step begins although the
    # interval is an hour
    out["attempted_at_once"] = await until(lambda: daemon.steps > steps, timeout=5.0)
    daemon.stop()
    await task
    return out


async def absent_scenario(config: Path) -> dict[str, Any]:
    daemon = Daemon(load_config(config), environ={})
    task = asyncio.create_task(daemon.run())
    await until(lambda: daemon.steps >= 1)
    out = {"present": daemon.tpm_present, "problem": daemon.tpm_problem}
    out["status"] = daemon.notifier.last_status
    daemon.stop()
    await task
    return out


def main() -> None:
    testbed = UMockdev.Testbed.new()
    mode = sys.argv[1]
    if mode == "watcher":
        result = asyncio.run(watcher_scenario(testbed))
    elif mode == "daemon":
        result = asyncio.run(daemon_scenario(testbed, Path(sys.argv[2])))
    else:
        result = asyncio.run(absent_scenario(Path(sys.argv[2])))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
