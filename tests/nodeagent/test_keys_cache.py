"""The TPM-sealed key cache on a real swtpm: hits, restarts, PCR changes, expiry, file modes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from nodeagent.config import TpmConfig
from nodeagent.errors import TpmError
from nodeagent.keys.cache import TPM_RC_POLICY_FAIL, CachedSecret, SealedKeyCache, is_policy_fail
from nodeagent.state import StateDir
from nodeagent.tpm import ObjectBlobs, TpmDevice
from nodeagent.tpm_worker import TpmWorker
from nodeagent.tpmsession import TpmSession
from trustcore.algorithms import TPM_ALG_SHA256
from trustplane.swtpm import Swtpm

SECRET = b'{"symkey":"c2VjcmV0LWxheWVyLWtleS0zMi1ieXRlcy0wMDA=","digest":"sha256:ab"}'
DIGEST = hashlib.sha256(b"annotation-1").digest()
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def worker(tmp_path: Path, swtpm: Swtpm) -> TpmWorker:
    """The TPM thread; each test closes it at its end (a daemon thread otherwise)."""
    state = StateDir(tmp_path / "state")
    state.ensure()
    return TpmWorker(lambda: TpmSession(TpmConfig(tcti=swtpm.tcti), state))


def extend_pcr(tpm: Swtpm, pcr: int) -> None:
    with TpmDevice(tpm.tcti) as device:
        device.pcr_extend(pcr, {TPM_ALG_SHA256: hashlib.sha256(b"a new kernel").digest()})


def test_hit_after_put_and_after_a_restart_without_any_hub(
    tmp_path: Path, worker: TpmWorker, swtpm: Swtpm
) -> None:
    root = tmp_path / "state" / "keycache"
    clock = Clock()

    async def scenario() -> tuple[bytes | None, bytes | None, bytes | None]:
        cache = SealedKeyCache(root, worker, clock=clock)
        await cache.put([CachedSecret(DIGEST, SECRET, NOW + 600)])
        first = await cache.get(DIGEST)
        # a new daemon process: nothing in memory, the TPM unseals the cache key
        again = await SealedKeyCache(root, worker, clock=clock).get(DIGEST)
        other = await cache.get(hashlib.sha256(b"another annotation").digest())
        await worker.close()
        return first, again, other

    assert asyncio.run(scenario()) == (SECRET, SECRET, None)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    files = sorted(p.name for p in root.iterdir())
    assert files == sorted([f"{DIGEST.hex()}.json", "sealed-key.json"])
    for path in root.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        raw = path.read_bytes()
        assert SECRET not in raw
        assert base64.b64encode(SECRET) not in raw


def test_pcr_change_after_sealing_no_unseal_and_the_cache_empties(
    tmp_path: Path, worker: TpmWorker, swtpm: Swtpm
) -> None:
    root = tmp_path / "state" / "keycache"
    clock = Clock()
    cache = SealedKeyCache(root, worker, clock=clock)

    async def seal() -> bytes | None:
        await cache.put([CachedSecret(DIGEST, SECRET, NOW + 600)])
        return await cache.get(DIGEST)

    assert asyncio.run(seal()) == SECRET
    sealed = json.loads((root / "sealed-key.json").read_text())
    blobs = ObjectBlobs(
        private=base64.b64decode(sealed["private"]), public=base64.b64decode(sealed["public"])
    )
    extend_pcr(swtpm, 7)

    # the TPM itself refuses: the sealed object's policy no longer matches the PCRs
    async def unseal_directly() -> None:
        await worker.call(lambda s: s.unseal(blobs))

    with pytest.raises(TpmError) as refused:
        asyncio.run(unseal_directly())
    assert refused.value.rc == TPM_RC_POLICY_FAIL
    assert is_policy_fail(refused.value.rc)

    async def after_change() -> tuple[bytes | None, bytes | None]:
        in_memory = await cache.get(DIGEST)  # the same process: PCRs read, key dropped
        await seal_again()
        fresh = await SealedKeyCache(root, worker, clock=clock).get(DIGEST)
        return in_memory, fresh

    async def seal_again() -> None:
        # a new process after the change: the TPM refuses the old sealed key
        restarted = SealedKeyCache(root, worker, clock=clock)
        assert await restarted.get(DIGEST) is None

    assert asyncio.run(after_change()) == (None, None)
    assert cache.invalidations == 1
    assert list(root.glob("*.json")) == []  # every entry and the sealed key are gone

    # a release after the change seals to the new values and hits again
    async def reseal() -> bytes | None:
        await cache.put([CachedSecret(DIGEST, SECRET, NOW + 600)])
        got = await SealedKeyCache(root, worker, clock=clock).get(DIGEST)
        await worker.close()
        return got

    assert asyncio.run(reseal()) == SECRET


def test_restarted_process_after_a_pcr_change_gets_the_tpm_refusal(
    tmp_path: Path, worker: TpmWorker, swtpm: Swtpm
) -> None:
    root = tmp_path / "state" / "keycache"
    clock = Clock()

    async def seal() -> None:
        await SealedKeyCache(root, worker, clock=clock).put(
            [CachedSecret(DIGEST, SECRET, NOW + 600)]
        )

    asyncio.run(seal())
    extend_pcr(swtpm, 0)

    async def lookup() -> tuple[bytes | None, int]:
        cache = SealedKeyCache(root, worker, clock=clock)
        got = await cache.get(DIGEST)
        await worker.close()
        return got, cache.invalidations

    assert asyncio.run(lookup()) == (None, 1)
    assert not (root / f"{DIGEST.hex()}.json").exists()


def test_expired_entries_are_never_served(tmp_path: Path, worker: TpmWorker) -> None:
    root = tmp_path / "state" / "keycache"
    clock = Clock()
    cache = SealedKeyCache(root, worker, clock=clock)
    soon = hashlib.sha256(b"soon").digest()

    async def scenario() -> tuple[bytes | None, bytes | None, bytes | None]:
        await cache.put(
            [CachedSecret(DIGEST, SECRET, NOW + 600), CachedSecret(soon, b"short", NOW + 10)]
        )
        before = await cache.get(soon)
        clock.now = NOW + 10
        after = await cache.get(soon)
        still = await cache.get(DIGEST)
        await worker.close()
        return before, after, still

    assert asyncio.run(scenario()) == (b"short", None, SECRET)
    assert not (root / f"{soon.hex()}.json").exists()


def test_a_tampered_entry_is_a_miss_and_removed(tmp_path: Path, worker: TpmWorker) -> None:
    root = tmp_path / "state" / "keycache"
    cache = SealedKeyCache(root, worker, clock=Clock())

    async def scenario() -> bytes | None:
        await cache.put([CachedSecret(DIGEST, SECRET, NOW + 600)])
        path = root / f"{DIGEST.hex()}.json"
        entry = json.loads(path.read_text())
        entry["expires_at"] = NOW + 10**6  # a longer life is not the cache's to give
        path.write_text(json.dumps(entry))
        os.chmod(path, 0o600)
        got = await cache.get(DIGEST)
        await worker.close()
        return got

    assert asyncio.run(scenario()) is None
    assert not (root / f"{DIGEST.hex()}.json").exists()
