"""A history that cannot be opened at start-up: the writer starts without it, holds what comes in,
and opens it later with a backoff, writing everything in order (docs/RELIABILITY.md)."""

from __future__ import annotations

import threading
from pathlib import Path

from store_helpers import FakeWall, ended, ev, samples, started

from dermaguard.store import Store, StoreSink, open_readonly
from dermaguard.store.db import StoreUnavailable


class Opener:
    """Refuses ``failures`` times (as a full disk does), then opens the real store."""

    def __init__(self, path: Path, failures: int) -> None:
        self.path = path
        self.failures = failures
        self.attempts = 0
        self.opened = threading.Event()

    def __call__(self) -> Store:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreUnavailable(f"cannot open the history database {self.path}: disk full")
        store = Store.open(self.path, "dg-1")
        self.opened.set()
        return store


def test_a_sink_started_without_its_store_holds_everything_and_writes_it_once_open(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "history.db"
    opener = Opener(db_path, failures=2)
    reports: list[str | None] = []
    done = threading.Event()

    def on_fault(message: str | None) -> None:
        reports.append(message)
        if message is None:
            done.set()

    sink = StoreSink(
        None,
        FakeWall(),
        opener=opener,
        unavailable="cannot open the history database: disk full",
        on_fault=on_fault,
        retry_s=0.01,
    )
    sink(ev("daemon_started", 0.0))
    sink(started(1, 1.0))
    for s in samples(1.0, 3.0):
        sink(s)
    sink(ended(1, 1.0, 3.0))
    assert done.wait(10.0), reports
    assert opener.attempts == 3  # two refusals, then it opened
    assert sink._open_wait == 0.04  # each refusal doubled the wait: 0.01 -> 0.02 -> 0.04
    assert reports[0] == "cannot open the history database: disk full"
    assert reports[-1] is None
    assert sink.fault is None and sink.backlog == 0
    assert sink.close()
    with open_readonly(db_path) as db:
        assert [e["type"] for e in db.events()] == [
            "daemon_started",
            "session_started",
            "session_ended",
        ]
        assert len(db.trace(1)) > 0  # the trace held in memory reached the disk too
