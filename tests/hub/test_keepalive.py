"""server.keepalive_timeout: an idle connection stays open until it, then the hub closes it."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config
from tests.hub.harness import FakeClock, HubProcess, make_state

REQUEST = b"GET /health HTTP/1.1\r\nHost: hub.test\r\n\r\n"


def _idle_lifetime(hub: HubProcess, wait: float) -> tuple[bytes, bytes]:
    """The first answer on a keep-alive connection, and what reading gives after ``wait`` s
    idle (b"" once the hub closed it)."""
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    ctx.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", hub.port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(REQUEST)
        first = tls.recv(4096)
        time.sleep(wait)
        tls.settimeout(0.2)
        try:
            later = tls.recv(4096)
        except TimeoutError:
            later = b"still open"
        except (ssl.SSLError, ConnectionError):
            later = b""
    return first, later


def test_an_idle_connection_closes_after_the_timeout(tmp_path: Path) -> None:
    hub = HubProcess(make_state(tmp_path, server={"keepalive_timeout": 0.5}), FakeClock())
    try:
        first, later = _idle_lifetime(hub, 1.5)
        assert first.startswith(b"HTTP/1.1 200")
        assert later == b""
        first, later = _idle_lifetime(hub, 0.1)
        assert first.startswith(b"HTTP/1.1 200")
        assert later == b"still open"
    finally:
        hub.stop()


def test_keepalive_timeout_default_and_refusal(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml").server.keepalive_timeout == 75.0
    with pytest.raises(ConfigError, match="keepalive_timeout"):
        load_config(tmp_path / "absent.toml", overrides={"server": {"keepalive_timeout": 0}})
