"""The daemon's key socket: unwraps for the ocicrypt key provider, batched into hub releases.

:class:`KeyService` listens on a unix stream socket (``[keys] socket``, mode 0600, owned by the
agent's user; only that user and root may talk to it, checked again with SO_PEERCRED). Each
connection carries one JSON line and gets one JSON line back (:mod:`nodeagent.keys.messages`).

An unwrap first asks the TPM-sealed cache (:class:`~nodeagent.keys.cache.SealedKeyCache`); a
miss joins a batch. One dispatcher task takes the waiting annotations once none has joined for
``batch_window`` seconds (at most ``batch_max_wait`` after the first) and asks the hub for all
of them in one :meth:`KeyReleaser.release` call; annotations
that arrive while that call is in flight wait for the next one, and a request for an annotation
already in flight waits for its answer. So ocicrypt's six concurrent provider processes for an
image cost one hub round trip. What the hub released is answered at once and then sealed into
the cache; a refusal is answered with its reason id and sentence. Secrets are never logged.

Turning a reply into an exit status and a stderr line is the provider's work
(:mod:`nodeagent.keys.provider`); asking the hub is the releaser's (:mod:`nodeagent.keys.release`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from nodeagent.config import KeysConfig
from nodeagent.errors import NodeAgentError, TpmError
from nodeagent.hubclient import HubRejected, HubUnavailable
from nodeagent.keys.cache import CachedSecret, SealedKeyCache
from nodeagent.keys.messages import (
    MAX_REQUEST_BYTES,
    MessageError,
    StatusRequest,
    encode,
    parse_request,
    refusal_reply,
    secret_reply,
)
from nodeagent.keys.release import KeyReleaseRefused, ReleasedSecret
from nodeagent.state import StateError

log = logging.getLogger("trustplane.agent.keys")

MAX_BATCH: Final = 64  # annotations in one release (the hub's limit)
READ_TIMEOUT: Final = 5.0  # seconds to receive the request line
_UCRED: Final = struct.Struct("3i")  # pid, uid, gid


class Releaser(Protocol):
    async def release(
        self, annotations: Sequence[bytes]
    ) -> list[ReleasedSecret | KeyReleaseRefused]: ...


class KeyServiceError(NodeAgentError):
    """The key socket cannot be served (path taken, directory not writable)."""

    reason = "keys.socket_unusable"


@dataclass(slots=True)
class _Waiting:
    annotation: bytes
    futures: list[asyncio.Future[bytes]] = field(default_factory=list)


@dataclass(slots=True)
class KeyStats:
    """Counters for status and metrics."""

    unwraps: int = 0
    cache_hits: int = 0
    releases: int = 0  # KeyReleaser.release calls (hub round trips)
    released: int = 0
    refused: int = 0
    failures: int = 0


def _reply_for(error: BaseException) -> bytes:
    """The refusal line for an unwrap that failed (never carrying a secret)."""
    if isinstance(error, KeyReleaseRefused):
        return refusal_reply(error.reason, error.message)
    if isinstance(error, HubUnavailable):
        return refusal_reply(
            "keys.hub_unreachable",
            f"the hub cannot be reached and no key is cached ({error.message})",
        )
    if isinstance(error, HubRejected):
        return refusal_reply("keys.hub_refused", f"the hub refused the release: {error.code}")
    if isinstance(error, TpmError):
        return refusal_reply("keys.tpm_error", error.message)
    if isinstance(error, NodeAgentError):
        return refusal_reply(error.reason, error.message)
    return refusal_reply("keys.internal_error", "internal error in the agent (see its log)")


class KeyService:
    """The key socket and the batching of unwraps. ``releaser`` returns the daemon's
    KeyReleaser, or None while the host is not enrolled; ``status`` the dict for
    ``{"op": "status"}``."""

    def __init__(
        self,
        cfg: KeysConfig,
        releaser: Callable[[], Releaser | None],
        cache: SealedKeyCache | None,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self._cfg = cfg
        self._releaser = releaser
        self.cache = cache
        self._status = status
        self._waiting: dict[bytes, _Waiting] = {}
        self._in_flight: dict[bytes, list[asyncio.Future[bytes]]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections = 0
        self._arrivals = 0
        self.stats = KeyStats()

    # --- the socket ------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._cfg.socket

    async def start(self) -> None:
        """Bind and listen. Raises :class:`KeyServiceError`."""
        sock = _bind(self.path)
        self._server = await asyncio.start_unix_server(
            self._handle, sock=sock, limit=MAX_REQUEST_BYTES + 1
        )
        log.info("key socket listening on %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        try:
            reply = await self._answer_connection(reader, writer)
            writer.write(reply)
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        if not _peer_allowed(writer):
            return refusal_reply("keys.peer_refused", "only root and the agent's user may ask")
        if self._connections > self._cfg.max_connections:
            return refusal_reply("keys.busy", "too many key requests at once; try again")
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
        except TimeoutError:
            return refusal_reply("keys.request_invalid", "no request received in time")
        except (ValueError, asyncio.LimitOverrunError):
            return refusal_reply("keys.request_invalid", "request too long")
        try:
            request = parse_request(line)
        except MessageError as e:
            return refusal_reply(e.reason, e.message)
        if isinstance(request, StatusRequest):
            return encode({"ok": True, **self._status()})
        try:
            secret = await asyncio.wait_for(
                self.unwrap(request.annotation), self._cfg.request_timeout
            )
        except TimeoutError:
            return refusal_reply("keys.timeout", "the key release took too long")
        except Exception as e:  # the request boundary: every failure becomes a refusal line
            if not isinstance(e, NodeAgentError):
                log.exception("unwrap failed unexpectedly")
            return _reply_for(e)
        return secret_reply(secret)

    # --- unwrapping --------------------------------------------------------------------------

    async def unwrap(self, annotation: bytes) -> bytes:
        """The layer secret for one key blob: from the cache, else from the hub (batched).

        Raises :class:`KeyReleaseRefused`, :class:`HubUnavailable`, :class:`HubRejected`,
        :class:`TpmError`, or :class:`NodeAgentError` (``keys.not_enrolled``).
        """
        self.stats.unwraps += 1
        digest = hashlib.sha256(annotation).digest()
        if self.cache is not None:
            cached = await self.cache.get(digest)
            if cached is not None:
                self.stats.cache_hits += 1
                return cached
        if self._releaser() is None:
            raise NodeAgentError(
                "this host is not enrolled with the hub yet", reason="keys.not_enrolled"
            )
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if digest in self._in_flight:
            self._in_flight[digest].append(future)
        else:
            self._waiting.setdefault(digest, _Waiting(annotation)).futures.append(future)
            self._arrivals += 1
            if self._dispatcher is None or self._dispatcher.done():
                self._dispatcher = asyncio.create_task(self._dispatch())
        return await future

    async def _settle(self) -> None:
        """Wait until no unwrap has joined for ``batch_window`` seconds (ocicrypt's provider
        processes for one image arrive spread by their start times), at most
        ``batch_max_wait`` seconds in all."""
        window = self._cfg.batch_window
        if window <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(window, self._cfg.batch_max_wait)
        seen = -1
        while self._arrivals != seen and loop.time() < deadline:
            seen = self._arrivals
            await asyncio.sleep(min(window, deadline - loop.time()))

    async def _dispatch(self) -> None:
        """Release the waiting annotations, one batch at a time, until none wait."""
        while self._waiting:
            await self._settle()
            batch: list[tuple[bytes, _Waiting]] = []
            for digest in list(self._waiting)[:MAX_BATCH]:
                waiting = self._waiting.pop(digest)
                self._in_flight[digest] = waiting.futures
                batch.append((digest, waiting))
            try:
                await self._release(batch)
            finally:
                for digest, _ in batch:
                    self._in_flight.pop(digest, None)

    def _fail_batch(self, batch: list[tuple[bytes, _Waiting]], error: BaseException) -> None:
        self.stats.failures += 1
        for digest, _ in batch:
            _fail(self._in_flight.get(digest, []), error)

    async def _release(self, batch: list[tuple[bytes, _Waiting]]) -> None:
        releaser = self._releaser()
        if releaser is None:
            error = NodeAgentError(
                "this host is not enrolled with the hub yet", reason="keys.not_enrolled"
            )
            self._fail_batch(batch, error)
            return
        self.stats.releases += 1
        try:
            results = await releaser.release([w.annotation for _, w in batch])
        except Exception as e:  # every waiter gets the failure
            if not isinstance(e, NodeAgentError):
                log.exception("key release failed unexpectedly")
            self._fail_batch(batch, e)
            return
        if len(results) != len(batch):
            error = NodeAgentError(
                f"the release answered {len(results)} of {len(batch)} annotations",
                reason="keys.release_invalid",
            )
            self._fail_batch(batch, error)
            return
        to_cache: list[CachedSecret] = []
        for (digest, _), result in zip(batch, results, strict=True):
            futures = self._in_flight.get(digest, [])
            if isinstance(result, KeyReleaseRefused):
                self.stats.refused += 1
                log.info("key release refused: %s", result.describe())
                _fail(futures, result)
            elif result.annotation_sha256 != digest:
                _fail(futures, NodeAgentError("the release answered another annotation"))
            else:
                self.stats.released += 1
                for f in futures:
                    if not f.done():
                        f.set_result(result.secret)
                to_cache.append(CachedSecret(digest, result.secret, result.expires_at))
        if to_cache and self.cache is not None:
            try:
                await self.cache.put(to_cache)
            except (TpmError, StateError) as e:
                log.warning("cannot cache released keys: %s", e.describe())


def _fail(futures: list[asyncio.Future[bytes]], error: BaseException) -> None:
    for f in futures:
        if not f.done():
            f.set_exception(error)
            f.exception()  # retrieved here: a waiter that left must not log it as lost


def _peer_allowed(writer: asyncio.StreamWriter) -> bool:
    """Root or the agent's own user (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        _, uid, _ = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except OSError:
        return False
    return uid in (0, os.getuid())


def _bind(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600 before it accepts anything."""
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as e:
        raise KeyServiceError(f"cannot create {path.parent}: {e.strerror or e}") from None
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # before listen(): nobody connects while it is looser
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise KeyServiceError(f"cannot listen on {path}: {e.strerror or e}") from None
    return sock


def _remove_stale(path: Path) -> None:
    """Remove a socket left by an agent that died; refuse one that still answers."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket() or path.is_symlink():
        raise KeyServiceError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise KeyServiceError(f"cannot check {path}: {e.strerror or e}") from None
    else:
        raise KeyServiceError(f"another agent already serves {path}")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
