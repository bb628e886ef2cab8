"""TPM character devices through udev: which exist now, and when they come and go.

:func:`find_tpm_devices` lists TPM device nodes, resource-manager nodes (``/dev/tpmrm*``)
first since the kernel's resource manager lets the agent share the TPM. :class:`TpmDeviceWatcher`
follows udev ``add``/``remove`` events for the ``tpm`` and ``tpmrm`` subsystems on the event
loop (a netlink monitor's file descriptor registered with ``add_reader``) and calls back with
the action and device node. What to do when the TPM goes or comes back is the daemon's business.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("trustplane.agent.devices")

_SUBSYSTEMS = ("tpmrm", "tpm")


@dataclass(frozen=True, slots=True)
class TpmNode:
    """One TPM device node as udev knows it."""

    subsystem: str
    sys_name: str
    device_node: str


def _node(device: Any) -> TpmNode | None:  # noqa: ANN401 - pyudev.Device is untyped
    node = device.device_node or f"/dev/{device.sys_name}"
    subsystem = device.subsystem
    if subsystem not in _SUBSYSTEMS:
        return None
    return TpmNode(subsystem=str(subsystem), sys_name=str(device.sys_name), device_node=str(node))


def find_tpm_devices() -> list[TpmNode]:
    """TPM nodes present now, ``tpmrm*`` before ``tpm*``, each group sorted by name."""
    import pyudev  # noqa: PLC0415 - only when device TCTIs are used

    context = pyudev.Context()
    found: list[TpmNode] = []
    for subsystem in _SUBSYSTEMS:
        nodes = [_node(d) for d in context.list_devices(subsystem=subsystem)]
        found.extend(sorted((n for n in nodes if n is not None), key=lambda n: n.sys_name))
    return found


DeviceCallback = Callable[[str, TpmNode], None]


class TpmDeviceWatcher:
    """Calls ``callback(action, node)`` for every TPM udev event (``add``, ``remove``...)."""

    def __init__(self, callback: DeviceCallback) -> None:
        self._callback = callback
        self._monitor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        import pyudev  # noqa: PLC0415

        monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        for subsystem in _SUBSYSTEMS:
            monitor.filter_by(subsystem)
        monitor.start()
        self._monitor = monitor
        self._loop = loop
        loop.add_reader(monitor.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            device = self._monitor.poll(timeout=0)
            if device is None:
                return
            node = _node(device)
            if node is None:
                continue
            log.info("udev: %s %s", device.action, node.device_node)
            self._callback(str(device.action), node)

    def stop(self) -> None:
        if self._monitor is not None and self._loop is not None:
            self._loop.remove_reader(self._monitor.fileno())
        self._monitor = None
