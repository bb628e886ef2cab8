"""The key socket and the key provider process, with a releaser standing in for the hub.

The hub is not what these tests check: they check the socket's protocol and bounds, the batching
of concurrent unwraps into one release call, and what ``trustplane-keyprovider`` (run as a real
process, fed ocicrypt's recorded requests) prints. So the releaser here is a test double of the
contract's ``KeyReleaser`` that counts its calls; the tests with the real hub and swtpm are in
test_keys_hub.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from nodeagent.config import KeysConfig
from nodeagent.keys.release import KeyReleaseRefused, ReleasedSecret
from nodeagent.keys.service import KeyService, KeyServiceError
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "ocicrypt"
PROVIDER = Path(sys.executable).with_name("trustplane-keyprovider")
DENIED = "host untrusted (flavor.platform.pcr_mismatch: PCR 0)"
SECRET_PREFIX = b'{"symkey":"released-layer-key-'


def secret_for(annotation: bytes) -> bytes:
    return SECRET_PREFIX + hashlib.sha256(annotation).hexdigest()[:16].encode() + b'"}'


class CountingReleaser:
    """Stands in for KeyReleaser: releases every annotation not starting with b"deny"."""

    def __init__(self, delay: float = 0.05) -> None:
        self.calls: list[list[bytes]] = []
        self.delay = delay

    async def release(
        self, annotations: Sequence[bytes]
    ) -> list[ReleasedSecret | KeyReleaseRefused]:
        self.calls.append(list(annotations))
        await asyncio.sleep(self.delay)
        out: list[ReleasedSecret | KeyReleaseRefused] = []
        for a in annotations:
            if a.startswith(b"deny"):
                out.append(KeyReleaseRefused("release.host_untrusted", DENIED))
            else:
                out.append(
                    ReleasedSecret(hashlib.sha256(a).digest(), secret_for(a), 2_000_000_000.0)
                )
        return out


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tpkeys-"))  # short: sun_path has 108 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def service(sockdir: Path, releaser: CountingReleaser | None, **keys: object) -> KeyService:
    cfg = KeysConfig(socket=sockdir / "run" / "keys.sock", **keys)  # type: ignore[arg-type]
    return KeyService(cfg, lambda: releaser, None, lambda: {"verdict": "trusted"})


async def ask(path: Path, payload: bytes) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    line = await reader.read(1 << 20)
    writer.close()
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


def unwrap_line(annotation: bytes) -> bytes:
    b64 = base64.b64encode(annotation).decode()
    return json.dumps({"op": "unwrap", "annotation": b64}).encode() + b"\n"


def test_concurrent_unwraps_share_one_release_call(sockdir: Path) -> None:
    releaser = CountingReleaser(delay=0.2)
    svc = service(sockdir, releaser, batch_window=0.02)
    layers = [f"layer-{i}".encode() for i in range(6)]

    async def scenario() -> list[dict[str, object]]:
        await svc.start()
        try:
            first = [asyncio.create_task(ask(svc.path, unwrap_line(a))) for a in layers]
            await asyncio.sleep(0.1)  # the release of the six is in flight now
            late = [
                asyncio.create_task(ask(svc.path, unwrap_line(layers[0]))),  # joins it
                asyncio.create_task(ask(svc.path, unwrap_line(b"layer-6"))),
                asyncio.create_task(ask(svc.path, unwrap_line(b"layer-7"))),
            ]
            return list(await asyncio.gather(*first, *late))
        finally:
            await svc.close()

    replies = asyncio.run(scenario())
    wanted = [*layers, layers[0], b"layer-6", b"layer-7"]
    assert replies == [
        {"ok": True, "optsdata": base64.b64encode(secret_for(a)).decode()} for a in wanted
    ]
    assert releaser.calls == [layers, [b"layer-6", b"layer-7"]]
    assert (svc.stats.releases, svc.stats.released, svc.stats.unwraps) == (2, 8, 9)


def test_socket_is_0600_answers_status_and_refuses_garbage(sockdir: Path) -> None:
    svc = service(sockdir, CountingReleaser(delay=0))
    garbage = [
        b"not json\n",
        b"[1, 2]\n",
        b'{"op": "format-disk"}\n',
        b'{"op": "unwrap", "annotation": "***"}\n',
        b'{"op": "unwrap", "annotation": null}\n',
        b'{"op": "unwrap", "annotation": "' + b"A" * 8000 + b'"}\n',
        b'{"op": "unwrap", "annotation": "\xff\xfe"}\n',
        b'{"op": "unwrap", "annotation": 123456789012345678901234567890}\n',
        b"[" * 5000 + b"\n",
    ]

    async def scenario() -> tuple[int, dict[str, object], list[dict[str, object]], object]:
        await svc.start()
        try:
            mode = stat.S_IMODE(os.stat(svc.path).st_mode)
            status = await ask(svc.path, b'{"op": "status"}\n')
            refusals = [await ask(svc.path, g) for g in garbage]
            too_long = await ask(svc.path, b"x" * 20000 + b"\n")
            refusals.append(too_long)
            still = await ask(svc.path, unwrap_line(b"layer-1"))
            return mode, status, refusals, still["ok"]
        finally:
            await svc.close()

    mode, status, refusals, still_ok = asyncio.run(scenario())
    assert mode == 0o600
    assert status == {"ok": True, "verdict": "trusted"}
    assert [(r["ok"], r["reason"]) for r in refusals] == [(False, "keys.request_invalid")] * 10
    assert still_ok is True
    assert not (sockdir / "run" / "keys.sock").exists()  # removed on close


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(sockdir: Path) -> None:
    first = service(sockdir, None)
    second = service(sockdir, None)

    async def scenario() -> str:
        await first.start()
        try:
            with pytest.raises(KeyServiceError) as taken:
                await second.start()
        finally:
            await first.close()
        return taken.value.message

    assert asyncio.run(scenario()) == f"another agent already serves {first.path}"
    # a socket file left by a process that died is replaced
    import socket  # noqa: PLC0415

    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(first.path))
    dead.close()

    async def restart() -> dict[str, object]:
        await second.start()
        try:
            return await ask(second.path, unwrap_line(b"layer"))
        finally:
            await second.close()

    assert asyncio.run(restart()) == {
        "ok": False,
        "reason": "keys.not_enrolled",
        "message": "this host is not enrolled with the hub yet",
    }


# --- the provider as a real process ------------------------------------------------------------


async def provider(request: bytes, socket_path: Path, config_dir: Path) -> tuple[int, str, str]:
    config = config_dir / "keyprovider.toml"
    config.write_text(f'socket = "{socket_path}"\ntimeout = 10\n')
    proc = await asyncio.create_subprocess_exec(
        str(PROVIDER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"TRUSTPLANE_KEYPROVIDER_CONFIG": str(config), "PATH": os.environ["PATH"]},
    )
    out, err = await proc.communicate(request)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_provider_unwraps_the_recorded_requests_nulls_included(
    sockdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    releaser = CountingReleaser()
    svc = service(sockdir, releaser, batch_window=0.2)
    requests = [
        recorded("keyunwrap-request-layer1.json"),
        recorded("keyunwrap-request-layer2.json"),
    ]
    blobs = [base64.b64decode(json.loads(r)["keyunwrapparams"]["annotation"]) for r in requests]
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[tuple[int, str, str]]:
        await svc.start()
        try:
            return list(await asyncio.gather(*(provider(r, svc.path, sockdir) for r in requests)))
        finally:
            await svc.close()

    results = asyncio.run(scenario())
    assert [r[0] for r in results] == [0, 0]
    assert [r[2] for r in results] == ["", ""]
    assert [json.loads(r[1]) for r in results] == [
        {"keyunwrapresults": {"optsdata": base64.b64encode(secret_for(b)).decode()}} for b in blobs
    ]
    # two provider processes, one release (in the order they connected)
    assert [sorted(c) for c in releaser.calls] == [sorted(blobs)]
    for blob in blobs:  # the secrets are on stdout only: never in the agent's log
        assert secret_for(blob) not in caplog.text.encode()
        assert base64.b64encode(secret_for(blob)).decode() not in caplog.text


def test_provider_refusal_is_one_line_and_exit_1(
    sockdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = service(sockdir, CountingReleaser())
    request = json.loads(recorded("keyunwrap-request-layer1.json"))
    request["keyunwrapparams"]["annotation"] = base64.b64encode(b"deny-this-host").decode()
    # another provider's parameters and Go's nils are accepted
    request["keyunwrapparams"]["dc"]["Parameters"]["other-provider"] = ["eA=="]
    request["keywrapparams"] = None

    async def scenario() -> tuple[int, str, str]:
        await svc.start()
        try:
            return await provider(json.dumps(request).encode(), svc.path, sockdir)
        finally:
            await svc.close()

    assert asyncio.run(scenario()) == (1, "", f"trustplane: key release denied: {DENIED}\n")


def test_provider_without_the_agent_socket_says_so_in_one_line(sockdir: Path) -> None:
    missing = sockdir / "nowhere" / "keys.sock"
    code, out, err = asyncio.run(
        provider(recorded("keyunwrap-request-layer2.json"), missing, sockdir)
    )
    assert (code, out) == (1, "")
    assert err == (
        f"trustplane: cannot reach the trustplane agent: {missing} does not exist "
        "(is trustplane-agent running?)\n"
    )


@pytest.mark.parametrize(
    ("stdin", "line"),
    [
        (b"", "the request on stdin is not JSON"),
        (b"\xff\xfe{", "the request on stdin is not JSON"),
        (b'"keyunwrap"', "the request on stdin is not a JSON object"),
        (b'{"op": "keyrotate"}', "op must be keywrap or keyunwrap"),
        (b'{"op": null}', "op must be keywrap or keyunwrap"),
        (
            b'{"op": "keyunwrap", "keyunwrapparams": null}',
            "keyunwrapparams.annotation must be base64 of 1 to 4096 bytes",
        ),
        (
            b'{"op": "keyunwrap", "keyunwrapparams": {"annotation": "@@@@"}}',
            "keyunwrapparams.annotation is not base64",
        ),
        (b" " * 70000, "the request on stdin is longer than 65536 bytes"),
        (
            b'{"op": "keywrap", "keywrapparams": {"ec": null, "optsdata": null}}',
            "no key named: use --encryption-key provider:trustplane:policy=NAME (or key=ID)",
        ),
    ],
)
def test_provider_bad_requests_exit_2_with_one_line(sockdir: Path, stdin: bytes, line: str) -> None:
    code, out, err = asyncio.run(provider(stdin, sockdir / "keys.sock", sockdir))
    assert (code, out, err) == (2, "", f"trustplane: {line}\n")


def test_unwraps_arriving_spread_out_still_share_a_release(sockdir: Path) -> None:
    """Provider processes start at different times: each arrival inside the window keeps the
    batch open, up to batch_max_wait."""
    releaser = CountingReleaser(delay=0.01)
    svc = service(sockdir, releaser, batch_window=0.05, batch_max_wait=1.0)
    layers = [f"layer-{i}".encode() for i in range(6)]

    async def scenario() -> list[dict[str, object]]:
        await svc.start()
        try:
            tasks = []
            for a in layers:  # 30 ms apart: 150 ms in all, more than the window
                tasks.append(asyncio.create_task(ask(svc.path, unwrap_line(a))))
                await asyncio.sleep(0.03)
            first = await asyncio.gather(*tasks)
            # a lone unwrap later goes after one quiet window, in a release of its own
            alone = await ask(svc.path, unwrap_line(b"layer-6"))
            return [*first, alone]
        finally:
            await svc.close()

    replies = asyncio.run(scenario())
    assert [r["ok"] for r in replies] == [True] * 7
    assert releaser.calls == [layers, [b"layer-6"]]
