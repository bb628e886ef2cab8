"""Released layer secrets kept on disk, usable only while the TPM's PCRs hold the attested state.

Layout, under ``state_dir/keycache/`` (directory 0700, every file 0600, written atomically):

- ``sealed-key.json``: a random 32-byte cache key sealed by the TPM (a keyed-hash object under
  the owner SRK whose only authorisation is PolicyPCR over the agent's quoted PCRs at the values
  they held when it was sealed), and that policy digest;
- ``<sha256 of the annotation>.json``: one released secret, AES-256-GCM under the cache key with
  the annotation digest, the expiry and the cache key's id as associated data, and its expiry.

A lookup (:meth:`SealedKeyCache.get`) needs the cache key: the first one in a process unseals
it with the TPM, which refuses (TPM_RC_POLICY_FAIL) once any selected PCR changed; after that the
key is kept in the daemon's memory together with the policy digest it was unsealed under, and
each later lookup reads the PCRs (one TPM2_PCR_Read) and uses it only while their policy digest
is still that one. A PCR change therefore makes every entry unreadable: the cache drops them and
the caller asks the hub, which decides again whether this host may have the secret. Entries are
never served after their ``expires_at`` (the hub's, from the release). A secret is never logged.

What is not here: asking the hub, batching, the socket (``nodeagent.keys.service``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nodeagent.errors import TpmError
from nodeagent.state import StateError, write_atomic
from nodeagent.tpm import ObjectBlobs
from nodeagent.tpm_worker import TpmWorker

log = logging.getLogger("trustplane.agent.keys")

_SEALED_KEY: Final = "sealed-key.json"
_FORMAT: Final = 1
_AD_PREFIX: Final = b"trustplane-keycache-v1\0"
TPM_RC_POLICY_FAIL: Final = 0x99D
MAX_ENTRIES: Final = 4096
MAX_ENTRY_BYTES: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class CachedSecret:
    """What the cache stores for one annotation (the secret in clear only in memory)."""

    annotation_sha256: bytes
    secret: bytes
    expires_at: float


@dataclass(frozen=True, slots=True)
class _CacheKey:
    key: bytes
    policy: bytes
    key_id: str  # hex SHA-256 of the sealed object's public area, first 16 bytes


def is_policy_fail(rc: int) -> bool:
    """Whether a TPM response code is TPM_RC_POLICY_FAIL (for any session or handle index)."""
    return rc >> 16 == 0 and rc & 0x80 != 0 and rc & 0x3F == TPM_RC_POLICY_FAIL & 0x3F


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(value, validate=True)


def _associated(digest: bytes, expires_at: float, key_id: str) -> bytes:
    return _AD_PREFIX + digest + f"{expires_at!r}\0{key_id}".encode()


class SealedKeyCache:
    """The agent's TPM-sealed cache of released secrets. Methods raise :class:`StateError`
    when the directory cannot be written; TPM faults other than a policy failure propagate as
    :class:`TpmError` from :meth:`put` and become a miss in :meth:`get`."""

    def __init__(
        self, root: Path, tpm: TpmWorker, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self._tpm = tpm
        self._clock = clock
        self._key: _CacheKey | None = None
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    # --- files -------------------------------------------------------------------------------

    def _ensure(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
        except OSError as e:
            raise StateError(f"cannot create {self.root}: {e.strerror or e}") from None

    def _entry_path(self, digest: bytes) -> Path:
        return self.root / f"{digest.hex()}.json"

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read %s: %s", path, e.strerror or e)
            return None
        try:
            value = json.loads(raw) if len(raw) <= MAX_ENTRY_BYTES else None
        except ValueError:
            value = None
        if not isinstance(value, dict) or value.get("v") != _FORMAT:
            log.warning("%s is damaged: removing it", path)
            self._remove(path)
            return None
        return value

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove %s: %s", path, e.strerror or e)

    def _entries(self) -> list[Path]:
        try:
            return [p for p in self.root.glob("*.json") if p.name != _SEALED_KEY]
        except OSError:
            return []

    def clear(self) -> None:
        """Forget everything: the entries, the sealed key and the key in memory."""
        self._key = None
        for path in [*self._entries(), self.root / _SEALED_KEY]:
            self._remove(path)

    # --- the cache key -------------------------------------------------------------------------

    async def _current_policy(self) -> bytes:
        return await self._tpm.call(lambda s: s.pcr_policy())

    async def _usable_key(self) -> _CacheKey | None:
        """The cache key if the PCRs still hold the values it is sealed to, else None (and
        the cache is emptied when the TPM refuses to unseal it)."""
        if self._key is not None:
            if await self._current_policy() == self._key.policy:
                return self._key
            self.invalidate("the PCRs changed since the cache key was unsealed")
            return None
        raw = self._read_json(self.root / _SEALED_KEY)
        if raw is None:
            return None
        try:
            blobs = ObjectBlobs(private=_unb64(raw["private"]), public=_unb64(raw["public"]))
            policy = _unb64(raw["policy"])
        except (KeyError, ValueError, TypeError):
            log.warning("%s is damaged: starting a new cache", self.root / _SEALED_KEY)
            self.clear()
            return None
        try:
            key = await self._tpm.call(lambda s: s.unseal(blobs))
        except TpmError as e:
            if is_policy_fail(e.rc):
                self.invalidate("the TPM refuses to unseal the cache key: the PCRs changed")
            else:
                log.warning("cannot unseal the key cache: %s", e.describe())
            return None
        if len(key) != 32:
            self.clear()
            return None
        self._key = _CacheKey(key, policy, hashlib.sha256(blobs.public).hexdigest()[:32])
        return self._key

    def invalidate(self, why: str) -> None:
        """Empty the cache because what it holds may no longer be used (the PCRs changed, or
        the hub's verdict is no longer trusted); counted in :attr:`invalidations` when there
        was something to empty, whichever of those noticed first."""
        if self._key is None and not self._entries() and not (self.root / _SEALED_KEY).exists():
            return
        self.invalidations += 1
        log.info("key cache emptied: %s", why)
        self.clear()

    async def _key_for_sealing(self) -> _CacheKey:
        """The usable cache key, or a new one sealed to the current PCR values."""
        current = await self._usable_key()
        if current is not None:
            return current
        self.clear()
        self._ensure()
        key = secrets.token_bytes(32)
        blobs, policy = await self._tpm.call(lambda s: s.seal_to_current_pcrs(key))
        write_atomic(
            self.root / _SEALED_KEY,
            json.dumps(
                {
                    "v": _FORMAT,
                    "private": _b64(blobs.private),
                    "public": _b64(blobs.public),
                    "policy": _b64(policy),
                },
                sort_keys=True,
            ).encode(),
        )
        self._key = _CacheKey(key, policy, hashlib.sha256(blobs.public).hexdigest()[:32])
        return self._key

    # --- lookups and stores ----------------------------------------------------------------------

    async def get(self, digest: bytes) -> bytes | None:
        """The cached secret of the annotation whose SHA-256 is ``digest``, or None (absent,
        expired, or the PCRs changed since it was sealed)."""
        path = self._entry_path(digest)
        raw = self._read_json(path)
        if raw is None:
            self.misses += 1
            return None
        try:
            expires_at = float(raw["expires_at"])
            iv, ct, key_id = _unb64(raw["iv"]), _unb64(raw["ct"]), str(raw["key_id"])
        except (KeyError, ValueError, TypeError):
            self._remove(path)
            self.misses += 1
            return None
        if expires_at <= self._clock():
            self._remove(path)
            self.misses += 1
            return None
        key = await self._usable_key()
        if key is None or key.key_id != key_id:
            self._remove(path)
            self.misses += 1
            return None
        try:
            secret = AESGCM(key.key).decrypt(iv, ct, _associated(digest, expires_at, key_id))
        except InvalidTag:
            log.warning("cache entry %s does not decrypt: removing it", path.name)
            self._remove(path)
            self.misses += 1
            return None
        self.hits += 1
        return secret

    async def put(self, items: Iterable[CachedSecret]) -> None:
        """Store released secrets (sealing a new cache key first when needed); expired and
        surplus entries are pruned."""
        wanted = [i for i in items if i.expires_at > self._clock()]
        if not wanted:
            return
        key = await self._key_for_sealing()
        aead = AESGCM(key.key)
        for item in wanted:
            iv = secrets.token_bytes(12)
            ad = _associated(item.annotation_sha256, item.expires_at, key.key_id)
            entry = {
                "v": _FORMAT,
                "expires_at": item.expires_at,
                "key_id": key.key_id,
                "iv": _b64(iv),
                "ct": _b64(aead.encrypt(iv, item.secret, ad)),
            }
            write_atomic(
                self._entry_path(item.annotation_sha256),
                json.dumps(entry, sort_keys=True).encode(),
            )
        self.prune()

    def prune(self) -> int:
        """Remove expired entries, and the soonest-expiring ones past :data:`MAX_ENTRIES`."""
        now = self._clock()
        live: list[tuple[float, Path]] = []
        removed = 0
        for path in self._entries():
            raw = self._read_json(path)
            expires = raw.get("expires_at") if raw else None
            if not isinstance(expires, int | float) or expires <= now:
                self._remove(path)
                removed += 1
            else:
                live.append((float(expires), path))
        live.sort()
        for _, path in live[: max(0, len(live) - MAX_ENTRIES)]:
            self._remove(path)
            removed += 1
        return removed
