"""The one owner of the TPM: a dedicated thread holding the agent's TPM session.

ESAPI contexts are not thread safe and every TPM command blocks, so the daemon never touches
the TPM itself: it awaits :meth:`TpmWorker.call` with a function of the
:class:`~nodeagent.tpmsession.TpmSession`, which runs on the worker's single thread. The session
is opened lazily (first call) and again after :meth:`TpmWorker.reset` (the TPM went away and
came back). A TPM fault is the :class:`~nodeagent.errors.TpmError` the session raises.

The thread is a daemon thread: a TPM that hangs (a stopped swtpm, a wedged device) blocks only
the calls waiting on it, never the event loop and never process exit; :meth:`TpmWorker.close`
waits for it only a bounded time. What to ask the TPM is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from nodeagent.tpmsession import TpmSession

T = TypeVar("T")
log = logging.getLogger("trustplane.agent.tpm")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class TpmWorker:
    """Runs functions of one TpmSession on one thread. ``opener`` runs on that thread too."""

    def __init__(self, opener: Callable[[], TpmSession]) -> None:
        self._opener = opener
        self._session: TpmSession | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="tpm", daemon=True)
        self._started = False

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, loop, future = job
            try:
                result = fn()
            except BaseException as e:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, e)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    async def _submit(self, fn: Callable[[], T]) -> T:
        if not self._started:
            self._started = True
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return await future

    def _with_session(self, fn: Callable[[TpmSession], T]) -> T:
        if self._session is None:
            self._session = self._opener()
        return fn(self._session)

    async def call(self, fn: Callable[[TpmSession], T]) -> T:
        """Run ``fn(session)`` on the TPM thread (opening the session first if needed).

        Raises whatever ``fn`` or the opener raises (TpmError for TPM faults).
        """
        return await self._submit(lambda: self._with_session(fn))

    def _close_quietly(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception as e:  # a vanished TPM may fail in any way on close
                log.debug("closing the TPM session failed: %s", e)

    async def reset(self) -> None:
        """Close the session (ignoring errors of a TPM that is gone); the next call reopens."""
        await self._submit(self._close_quietly)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the session and end the thread, waiting at most ``timeout`` seconds for a
        TPM call in progress (a hung TPM is left to the daemon thread)."""
        if not self._started:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reset(), timeout)
        self._jobs.put(None)


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
