"""bench._profile on py-spy raw stacks: categories, process-prefixed stacks (--subprocesses),
the store thread's idle wait left out, and the CPU per report split among the categories."""

from __future__ import annotations

from pathlib import Path

from bench._profile import split_ms, summarize

MAIN = "thread (11): MainThread;run (asyncio/runners.py:118)"
STORE = "thread (12): hub-store;Thread.run (threading.py:982)"
PROC = 'process 10:"python -m hub.cli run";process 13:"python -m hub.cli run";'
RAW = "\n".join(
    [
        f"{MAIN};SSLObject.do_handshake (ssl.py:979) 30",
        f"{PROC}{MAIN};sign_jws (hub/jws.py:40);sign (ec.py:10) 10",
        f"{MAIN};EpollSelector.select (selectors.py:468) 40",
        f"{PROC}{STORE};StoreBackend._work (hub/store/backend.py:162) 50",
        (
            f"{STORE};StoreBackend._work (hub/store/backend.py:180);"
            "ReportsStore.record_report.<locals>.run (hub/store/reports.py:90);"
            "SqliteConnection.execute (hub/store/sqlite.py:43) 8"
        ),
        (
            f"{STORE};StoreBackend._work (hub/store/backend.py:200);"
            "SqliteConnection.begin (hub/store/sqlite.py:57) 2"
        ),
    ]
)


def test_categories_and_the_split_per_report(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW + "\n")
    summary = summarize(raw)
    assert summary["samples"] == {"main": 80, "store": 60, "other": 0}
    assert summary["main_thread_pct"] == {
        "idle (waiting in epoll)": 50.0,
        "tls_handshake": 37.5,
        "jws.sign": 12.5,
    }
    assert summary["store_thread_pct"] == {
        "idle": 83.3,
        "ReportsStore.record_report": 13.3,
        "backend (BEGIN/COMMIT, group commit)": 3.3,
    }
    # busy: 30 handshake + 10 jws + 8 record_report + 2 backend = 50 samples for 1.0 ms
    assert split_ms(summary, 1.0) == {
        "tls_handshake": 0.6,
        "jws.sign": 0.2,
        "store thread: ReportsStore.record_report": 0.16,
        "store thread: backend (BEGIN/COMMIT, group commit)": 0.04,
    }
