"""What an idle keep-alive TLS connection costs the hub, and whether the memory comes back.

    python -m bench.idle_connections --json [--connections 2000]

Starts a hub (``trustplane-hub run`` as a child process, as bench.hub does), opens N TLS
connections to it, sends one ``GET /health`` on each (an agent's connection between two
reports: handshake done, one request answered, kept alive), and measures the hub's resident set
before, with the N connections open and idle, and after they are closed. Prints
``idle_tls_conn_kb`` (RSS growth per idle connection), ``rss_mb_before`` / ``_open`` /
``_closed`` and ``rss_returned`` (after/before; the goal is within 20%), plus the baseline of the
same run: the growth per connection with asyncio's own 256 KiB SSL read buffer
(``server.tls_read_buffer = 262144``, what the hub used before), and the ratio.
bench.hub reports ``idle_tls_conn_kb`` through :func:`measure_idle_tls`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._httpconn import HttpConnection
from bench.hub import SERVER_NAME, HubProcess, client_context, start_hub


async def _open_idle(hub: HubProcess, count: int) -> list[HttpConnection]:
    ctx = client_context(hub.ca_pem)
    conns: list[HttpConnection] = []
    batch = 100
    for start in range(0, count, batch):
        opened = await asyncio.gather(
            *(
                HttpConnection.open("127.0.0.1", hub.port, ctx, SERVER_NAME)
                for _ in range(min(batch, count - start))
            )
        )
        for conn in opened:
            status, _ = await conn.request("GET", "/health", b"")
            if status != 200:
                raise RuntimeError(f"/health answered {status}")
        conns.extend(opened)
    return conns


def _settled_rss(hub: HubProcess, seconds: float = 2.0) -> float:
    time.sleep(seconds)
    return hub.rss_mb()


async def _measure(hub: HubProcess, count: int) -> dict[str, float]:
    before = await asyncio.to_thread(_settled_rss, hub)
    conns = await _open_idle(hub, count)
    opened = await asyncio.to_thread(_settled_rss, hub)
    for conn in conns:
        await conn.close()
    closed = await asyncio.to_thread(_settled_rss, hub, 8.0)  # the hub trims after 5 s quiet
    return {
        "idle_tls_conn_kb": round((opened - before) * 1024 / count, 1),
        "rss_mb_before": before,
        "rss_mb_open": opened,
        "rss_mb_closed": closed,
        "rss_returned": round(closed / before, 3),
    }


def measure_idle_tls(count: int, *, server_extra: str = "") -> dict[str, float]:
    """Start a hub, measure N idle TLS connections, stop it (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="trustplane-idle-") as tmp:
        server = (
            f"max_connections = {count + 100}\n"
            f"max_connections_per_address = {count + 100}\n{server_extra}"
        )
        hub = start_hub(Path(tmp), history=5, require_flavor=False, server_extra=server)
        try:
            return asyncio.run(_measure(hub, count))
        finally:
            hub.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_connections", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args(argv)
    ours = measure_idle_tls(args.connections)
    baseline = measure_idle_tls(args.connections, server_extra="tls_read_buffer = 262144\n")
    out: dict[str, Any] = {
        "connections": args.connections,
        **ours,
        "baseline": "asyncio's 256 KiB SSL read buffer (server.tls_read_buffer = 262144)",
        "baseline_idle_tls_conn_kb": baseline["idle_tls_conn_kb"],
        "baseline_rss_returned": baseline["rss_returned"],
        "ratio_vs_baseline": round(ours["idle_tls_conn_kb"] / baseline["idle_tls_conn_kb"], 3),
    }
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        for key, value in out.items():
            sys.stdout.write(f"{key}: {value}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
