"""Where a process's time goes: py-spy's raw (collapsed) stacks summed into named categories.

:func:`record` starts ``py-spy record --format raw --threads`` on a process for a number of
seconds; :func:`summarize` reads that file and returns, per thread role, the share of samples
in each category. Categories are matched in order: first the specific work anywhere in the
stack (a TLS handshake, flavor evaluation, quote verification...), then, for what is left, the
module of the innermost frame (TLS record I/O, aiohttp, the event loop, ...). Which work a
category names is a property of the hub's code today; the rules below say exactly what matched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Final

__all__ = ["record", "split_ms", "summarize"]

# (category, substrings of a frame anywhere in the stack), first match wins
STACK_RULES: Final = (
    (
        "tls_handshake",
        ("do_handshake", "_on_handshake_complete", "_accept_connection", "SSLProtocol.__init__"),
    ),
    ("flavors.decode_documents", ("_decode (hub/flavors.py", "flavor_from_json")),
    ("flavors.event_descriptions", ("Event.description", "describe_event_data")),
    ("flavors.evidence_other", ("evidence_from_events",)),
    ("flavors.evaluate", ("trustcore/flavors/evaluation.py",)),
    ("eventlog.parse_replay", ("replay_log", "parse_eventlog", "replay_eventlog")),
    ("quote.verify", ("verify_quote",)),
    ("ak.decode", ("AttestationKey.from",)),
    ("jws.sign", ("sign_jws",)),
    ("report.decode (JSON, base64, wire)", ("Report.from_json", "Report.body", "json/decoder")),
    ("request.read_body", ("read_json", "Request.read", "Request.json")),
    ("response.encode (JSON)", ("json_response", "json/encoder", "to_json")),
    ("store.loop_side (executor hop)", ("Store.", "run_in_executor", "wrap_future")),
    ("auth.peer_certificate", ("peer_host_id", "getpeercert")),
)
# (category, substrings of the innermost frame) for the rest
LEAF_RULES: Final = (
    ("idle (waiting in epoll)", ("EpollSelector.select",)),
    ("socket send/recv", ("_SelectorSocketTransport.write", "_read_ready__get_buffer")),
    ("tls.record_io", ("ssl.py", "sslproto.py")),
    ("aiohttp (HTTP parse, routing, response)", ("aiohttp/",)),
    ("event_loop (asyncio, selectors)", ("asyncio/", "selectors.py")),
    ("hub.other", ("hub/",)),
    ("trustcore.other", ("trustcore/",)),
)
IDLE_LEAVES: Final = ("_worker (concurrent/futures/thread.py:81)", "wait (threading.py")
STORE_LOOP: Final = ("StoreBackend._work (", "SqliteBackend._work (")  # blocked in its queue
STORE_BACKEND_FILES: Final = ("backend.py", "sqlite.py", "connection.py", "postgres.py")


def record(
    pid: int, seconds: float, out: Path, *, rate: int = 100, subprocesses: bool = False
) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` (non-blocking sampling, every thread; with ``subprocesses``
    its child processes too, such as the hub's workers); raises ``OSError`` if py-spy is not
    installed beside this Python or on PATH."""
    exe = Path(sys.executable).with_name("py-spy")
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if found is None:
        raise OSError("py-spy not found (pip install py-spy)")
    return subprocess.Popen(
        [
            found, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
            "--rate", str(rate), "--format", "raw", "--threads", "--nonblocking",
            "--output", str(out), *(["--subprocesses"] if subprocesses else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _category(frames: list[str]) -> str:
    stack = ";".join(frames)
    for name, needles in STACK_RULES:
        if any(n in stack for n in needles):
            return name
    ours = [f for f in frames if "hub/" in f]
    if ours and "hub/metrics.py" in ours[-1]:
        return "metrics (middleware)"
    leaf = frames[-1] if frames else ""
    for name, needles in LEAF_RULES:
        if any(n in leaf for n in needles):
            return name
    return "other"


def _store_category(frames: list[str]) -> str:
    """The store thread: idle (blocked on its job queue: the innermost Python frame is the
    worker loop itself), waking the loop, else the innermost aggregate method (``Hosts...``,
    ``Reports...``), else the backend's own statements (BEGIN, COMMIT, group commit)."""
    leaf = frames[-1] if frames else ""
    if any(leaf.startswith(idle) for idle in IDLE_LEAVES) or leaf.startswith(STORE_LOOP):
        return "idle"
    if any("call_soon_threadsafe" in f or "_write_to_self" in f for f in frames):
        return "waking the event loop (call_soon_threadsafe)"
    for frame in reversed(frames):
        if "hub/store/" in frame and not any(b in frame for b in STORE_BACKEND_FILES):
            return frame.split(" (")[0].split(".<locals>")[0]
    if any("hub/store/" in f for f in frames[1:]):
        return "backend (BEGIN/COMMIT, group commit)"
    return "other"


def summarize(raw: Path) -> dict[str, object]:
    """Shares (percent of each thread's samples) per category; the main thread and the store
    thread separately, busiest categories first."""
    main: Counter[str] = Counter()
    store: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        # with --subprocesses each stack starts with its process chain ("process N:...")
        while len(parts) > 1 and parts[0].startswith("process "):
            parts = parts[1:]
        thread, *frames = parts
        n = int(count)
        if "MainThread" in thread:
            main[_category(frames)] += n
        elif "hub-store" in thread:
            store[_store_category(frames)] += n
        else:
            other[thread.split(":")[-1].strip()] += n

    def shares(c: Counter[str]) -> dict[str, float]:
        total = sum(c.values()) or 1
        return {k: round(100 * v / total, 1) for k, v in c.most_common()}

    return {
        "samples": {
            "main": sum(main.values()),
            "store": sum(store.values()),
            "other": sum(other.values()),
        },
        "main_thread_pct": shares(main),
        "store_thread_pct": shares(store),
    }


IDLE: Final = "idle (waiting in epoll)"


def split_ms(summary: dict[str, object], cpu_ms: float) -> dict[str, float]:
    """``cpu_ms`` (the hub's CPU time per report) divided among the categories of a
    :func:`summarize` result in proportion to their busy samples (the main threads' samples
    less the idle ones, plus the store threads'), the largest first. Sampled wall time stands
    in for CPU time: waiting for the GIL counts where it happens."""
    samples = summary["samples"]
    main = summary["main_thread_pct"]
    store = summary["store_thread_pct"]
    assert isinstance(samples, dict)
    assert isinstance(main, dict)
    assert isinstance(store, dict)
    counts: Counter[str] = Counter()
    for name, pct in main.items():
        if name != IDLE:
            counts[name] += samples["main"] * pct / 100
    for name, pct in store.items():
        if name != "idle":
            counts[f"store thread: {name}"] += samples["store"] * pct / 100
    busy = sum(counts.values()) or 1.0
    return {name: round(cpu_ms * n / busy, 3) for name, n in counts.most_common()}
