"""The one owner of the TPM: a dedicated thread holding the agent's TPM session.

ESAPI contexts are not thread safe and every TPM command blocks, so the daemon never touches
the device itself: it awaits :meth:`TpmWorker.call` with a function of the device, which runs
on the worker's single thread. The device is opened lazily (first call) and again after
:meth:`TpmWorker.reset` (the TPM went away and came back). A TPM fault is the
:class:`~nodeagent.errors.TpmError` the device raises; the worker only adds "not open".

What to ask the TPM (quote, activate...) is the caller's business.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from nodeagent.tpmsession import TpmSession

T = TypeVar("T")


class TpmWorker:
    """Runs functions of one TpmSession on one thread. ``opener`` runs on that thread too."""

    def __init__(self, opener: Callable[[], TpmSession]) -> None:
        self._opener = opener
        self._device: TpmSession | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tpm"
        )

    def _run(self, fn: Callable[[TpmSession], T]) -> T:
        if self._device is None:
            self._device = self._opener()
        return fn(self._device)

    def _close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()

    async def call(self, fn: Callable[[TpmSession], T]) -> T:
        """Run ``fn(device)`` on the TPM thread (opening the device first if needed).

        Raises whatever ``fn`` or the opener raises (TpmError for TPM faults).
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, fn)

    async def reset(self) -> None:
        """Close the device (ignoring errors of a TPM that is gone); the next call reopens it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_quietly)

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception:  # a vanished TPM may fail in any way on close
            self._device = None

    async def close(self) -> None:
        """Close the device and stop the thread."""
        await self.reset()
        self._executor.shutdown(wait=True)
