"""What a connection may cost the hub (hub.connections): the header deadline, the caps per
address and in total, the TLS read buffer and the memory handed back after a burst."""

from __future__ import annotations

import asyncio.sslproto
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from hub import connections
from hub.config import ConfigError, load_config
from tests.hub.harness import FakeClock, HubProcess, make_state

REQUEST = b"GET /health HTTP/1.1\r\nHost: hub.test\r\n\r\n"


def tls_context(hub: HubProcess) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    ctx.check_hostname = False
    return ctx


def tls_connect(hub: HubProcess) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    return tls_context(hub).wrap_socket(raw)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the hub closes ``sock`` within ``seconds`` (reads until EOF or a reset)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except (ssl.SSLError, ConnectionError):
        return True
    return True


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    config = make_state(
        tmp_path,
        server={
            "header_timeout": 0.5,
            "keepalive_timeout": 30,
            "max_connections_per_address": 3,
        },
    )
    process = HubProcess(config, FakeClock())
    try:
        yield process
    finally:
        process.stop()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_deadline(
    hub: HubProcess,
) -> None:
    with tls_connect(hub) as tls:
        assert closed_within(tls, 10)  # long before keepalive_timeout (30 s)


def test_half_a_header_is_closed_after_the_deadline(hub: HubProcess) -> None:
    with tls_connect(hub) as tls:
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: hub.test\r\n")  # no final CRLF
        assert closed_within(tls, 10)


def test_a_tcp_connection_without_a_tls_handshake_is_closed(hub: HubProcess) -> None:
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as raw:
        assert closed_within(raw, 10)


def test_a_connection_that_sent_a_request_stays_open_past_the_deadline(hub: HubProcess) -> None:
    with tls_connect(hub) as tls:
        tls.sendall(REQUEST)
        assert tls.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # twice the header deadline: keepalive_timeout (30 s) governs now
        tls.sendall(REQUEST)
        assert tls.recv(4096).startswith(b"HTTP/1.1 200")


def test_the_cap_per_address_refuses_the_fourth_and_logs_once(
    hub: HubProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trustplane.hub.connections")
    with ExitStack() as stack:
        kept = []
        for _ in range(3):
            tls = stack.enter_context(tls_connect(hub))
            tls.sendall(REQUEST)
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
            kept.append(tls)
        for _ in range(4):  # refused after the handshake, every time
            extra = stack.enter_context(tls_connect(hub))
            assert closed_within(extra, 10)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1
        assert "connection limit reached" in lines[0]
        assert "server.max_connections_per_address = 3" in lines[0]
        kept.pop().close()  # one closes: a new connection is accepted again
        deadline = time.monotonic() + 10
        while True:
            with tls_connect(hub) as again:
                again.sendall(REQUEST)
                try:
                    if again.recv(4096).startswith(b"HTTP/1.1 200"):
                        break
                except (ssl.SSLError, ConnectionError):
                    pass
            assert time.monotonic() < deadline, "no connection accepted after one closed"
            time.sleep(0.1)


def test_the_total_cap(tmp_path: Path) -> None:
    config = make_state(tmp_path, server={"max_connections": 2})
    hub = HubProcess(config, FakeClock())
    try:
        with tls_connect(hub) as one, tls_connect(hub) as two:
            for tls in (one, two):
                tls.sendall(REQUEST)
                assert tls.recv(4096).startswith(b"HTTP/1.1 200")
            with tls_connect(hub) as third:
                assert closed_within(third, 10)
        server = hub.running.runner.server
        assert isinstance(server, connections.GuardedServer)
        assert server.max_connections == 2
    finally:
        hub.stop()


def test_the_tls_read_buffer_is_the_configured_size(hub: HubProcess) -> None:
    assert asyncio.sslproto.SSLProtocol.max_size == 17408
    # a body four TLS records long (16 KiB of data per record at most) arrives whole: the
    # enrollment route reads all of it and then finds it is not JSON
    body = b"{" + b"x" * (60 * 1024)
    with tls_connect(hub) as tls:
        tls.sendall(
            b"POST /v1/enroll HTTP/1.1\r\nHost: hub.test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_burst_of_closed_connections_hands_memory_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "_TRIM_AFTER_CLOSED", 20)
    monkeypatch.setattr(connections, "_TRIM_QUIET", 0.2)
    hub = HubProcess(make_state(tmp_path), FakeClock())
    try:
        server = hub.running.runner.server
        assert isinstance(server, connections.GuardedServer)
        for _ in range(25):
            with tls_connect(hub) as tls:
                tls.sendall(REQUEST)
                assert tls.recv(4096).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while server.trims == 0:
            assert time.monotonic() < deadline, "no trim after 25 closed connections"
            time.sleep(0.05)
        assert server.closed_since_trim < 20
    finally:
        hub.stop()


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("header_timeout", 0, "greater than 0"),
        ("max_connections", 0, "greater than 0"),
        ("max_connections_per_address", -1, "0 or more"),
        ("tls_read_buffer", 4096, "between 17408"),
        ("tls_read_buffer", True, "expected an integer"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, key: str, value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(tmp_path / "absent.toml", overrides={"server": {key: value}})


def test_defaults(tmp_path: Path) -> None:
    server = load_config(tmp_path / "absent.toml").server
    assert (
        server.header_timeout,
        server.max_connections,
        server.max_connections_per_address,
        server.tls_read_buffer,
    ) == (10.0, 20000, 512, 17408)
