"""A full or failing disk: the writer holds events in memory, reports, and catches up in order."""

from __future__ import annotations

import errno
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_mock import MockerFixture
from store_helpers import WALL0, FakeWall, ended, ev, samples, started

from dermaguard.core.events import Event
from dermaguard.store import Store, StoreSink, is_storage_fault, open_readonly


class FaultLog:
    """Collects on_fault reports and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.reports: list[str | None] = []
        self._cond = threading.Condition()

    def __call__(self, message: str | None) -> None:
        with self._cond:
            self.reports.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.reports) >= count, timeout)
            return list(self.reports)


class Disk:
    """Makes the store connection's writes fail while ``full`` is set."""

    def __init__(self, store: Store, mocker: MockerFixture, error: Exception) -> None:
        self.full = threading.Event()
        self.failures = 0
        self._cond = threading.Condition()
        self._real = store.conn.execute
        self._error = error
        mocker.patch.object(store.conn, "execute", side_effect=self._execute)

    def _execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.full.is_set() and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            with self._cond:
                self.failures += 1
                self._cond.notify_all()
            raise self._error
        return self._real(sql, *args)

    def wait_failures(self, count: int, timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.failures >= count, timeout)


DISK_ERRORS = [
    sqlite3.OperationalError("database or disk is full"),
    OSError(errno.ENOSPC, "No space left on device"),
]


@pytest.mark.parametrize("error", DISK_ERRORS, ids=["sqlite-full", "enospc"])
def test_disk_full_then_recovery_writes_the_backlog_in_order(
    db_path: Path, mocker: MockerFixture, error: Exception
) -> None:
    store = Store.open(db_path, "dg-1")
    disk = Disk(store, mocker, error)
    faults, wall = FaultLog(), FakeWall()
    sink = StoreSink(store, wall, on_fault=faults, retry_s=0.05)

    def emit(effect: Any) -> None:
        wall.at(effect.event.t)
        sink(effect)

    emit(started(1, 0.0))
    for s in samples(0.0, 4.0):
        sink(s)
    emit(ended(1, 0.0, 4.0))
    assert sink.flush(10.0)

    disk.full.set()
    emit(started(2, 10.0))
    for s in samples(10.0, 25.0):  # more than a chunk: its write fails too
        sink(s)
    for i in range(20):
        emit(ev("over_pressure" if i % 2 == 0 else "over_pressure_cleared", 12.0 + i / 2, i=i))
    emit(ended(2, 10.0, 25.0))
    emit(ev("sterilization_started", 30.0, cycle_id=1))
    reports = faults.wait_for(1)
    assert reports[0] is not None and "full" in reports[0]
    assert not sink.flush(0.2)  # still full: nothing more reached the disk
    assert sink.backlog > 0
    assert sink.fault == reports[0]
    with open_readonly(db_path) as db:
        assert [e["type"] for e in db.events()] == ["session_started", "session_ended"]
        assert db.session(2) is None
    disk.wait_failures(disk.failures + 2)  # it keeps retrying on its own
    assert faults.reports == reports  # reported once, not at every retry
    disk.full.clear()
    assert sink.flush(10.0)
    assert faults.wait_for(2)[1:] == [None]
    assert sink.backlog == 0 and sink.fault is None
    assert sink.close()

    with open_readonly(db_path) as db:
        events = db.events()
        assert [e["type"] for e in events] == [
            "session_started",
            "session_ended",
            "session_started",
            *["over_pressure", "over_pressure_cleared"] * 10,
            "session_ended",
            "sterilization_started",
        ]
        assert [e["data"].get("i") for e in events[3:23]] == list(range(20))
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(events) + 1))
        assert len({e["id"] for e in events}) == len(events)
        # Stamped when emitted, not when written.
        assert events[3]["ts"] == "2025-11-25T18:50:35.000Z"
        session = db.session(2)
        assert session is not None and session["status"] == "completed"
        assert len(db.trace(2)) == 150  # the whole trace, held through the fault
        assert len(db.trace(1)) == 40
        assert db.cycles()[0]["cycle_id"] == 1
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_recovery_by_the_retry_timer_alone(db_path: Path, mocker: MockerFixture) -> None:
    store = Store.open(db_path, "dg-1")
    disk = Disk(store, mocker, DISK_ERRORS[0])
    faults = FaultLog()
    sink = StoreSink(store, FakeWall(), on_fault=faults, retry_s=0.05)
    disk.full.set()
    sink(ev("daemon_started", 0.0))
    faults.wait_for(1)
    disk.full.clear()
    assert faults.wait_for(2)[1] is None  # no flush() asked for it
    assert sink.close()
    with open_readonly(db_path) as db:
        assert [e["type"] for e in db.events()] == ["daemon_started"]


def test_backlog_is_bounded_and_losses_are_reported(db_path: Path, mocker: MockerFixture) -> None:
    store = Store.open(db_path, "dg-1")
    disk = Disk(store, mocker, DISK_ERRORS[0])
    faults = FaultLog()
    sink = StoreSink(
        store,
        FakeWall(),
        on_fault=faults,
        retry_s=0.05,
        backlog_events=5,
        backlog_samples=10,
    )
    disk.full.set()
    sink(started(1, 0.0))
    for s in samples(0.0, 5.0):  # 50 kept samples; 10 are held
        sink(s)
    for i in range(10):
        sink(ev("command_result", 10.0 + i, i=i))
    reports = faults.wait_for(2)
    assert reports[1] is not None and "lost" in reports[1]
    disk.full.clear()
    assert sink.flush(10.0)
    assert faults.wait_for(3)[2] is None
    assert sink.lost_events == 6  # 5 held: the session start and the first 4 results
    assert sink.dropped_samples == 40
    assert sink.close()
    with open_readonly(db_path) as db:
        assert [e["data"].get("i") for e in db.events()] == [None, 0, 1, 2, 3]
        assert len(db.trace(1)) == 10


def test_close_during_a_fault_reports_what_is_lost(
    db_path: Path, mocker: MockerFixture, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(db_path, "dg-1")
    disk = Disk(store, mocker, DISK_ERRORS[0])
    faults = FaultLog()
    sink = StoreSink(store, FakeWall(), on_fault=faults, retry_s=60.0)
    disk.full.set()
    sink(ev("daemon_stopping", 0.0))
    faults.wait_for(1)
    assert not sink.close()
    assert "not written" in caplog.text


def test_a_real_sqlite_full_error_is_a_storage_fault(store: Store) -> None:
    """SQLite's own SQLITE_FULL (a page limit standing in for a full card), not a mock."""
    store.append_event(started(1, 0.0).event, WALL0)
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    written = 0
    with pytest.raises(sqlite3.OperationalError, match="full") as info:
        for i in range(100):
            store.append_event(Event("command_result", float(i), {"pad": "x" * 3000}), WALL0)
            written += 1
    assert is_storage_fault(info.value)
    assert len(store.events(limit=1000)) == 1 + written  # the failed one left nothing behind
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    again = store.append_event(Event("command_result", 99.0, {}), WALL0)
    assert again.seq == 2 + written
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_trace_write_failure_keeps_the_samples(store: Store, mocker: MockerFixture) -> None:
    store.trace_chunk_max = 100
    store.append_event(started(1, 0.0).event, WALL0)
    disk = Disk(store, mocker, DISK_ERRORS[0])
    disk.full.set()
    for i in range(99):
        store.add_trace(i / 10, 1.0, "ok")
    with pytest.raises(sqlite3.OperationalError):
        store.add_trace(9.9, 1.0, "ok")  # the 100th sample fills the chunk
    assert store.trace_buffered == 100
    disk.full.clear()
    assert store.flush() == 100
    assert len(store.trace(1)) == 100


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.DatabaseError("database disk image is malformed"), True),
        (OSError(errno.EIO, "I/O error"), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
        (sqlite3.ProgrammingError("closed"), False),
        (ValueError("bad"), False),
    ],
)
def test_is_storage_fault(error: Exception, fault: bool) -> None:
    assert is_storage_fault(error) is fault


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("event"), st.integers(1, 3)),
            st.tuples(st.just("samples"), st.integers(1, 200)),
            st.tuples(st.just("session"), st.booleans()),
            st.tuples(st.just("disk_full"), st.booleans()),
            st.tuples(st.just("flush"), st.just(0)),
        ),
        max_size=25,
    )
)
def test_whatever_the_disk_does_events_arrive_complete_and_in_order(
    steps: list[tuple[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.db"
        store = Store.open(path, "dg-1")
        full = threading.Event()
        real = store.conn.execute

        def execute(sql: str, *args: Any) -> sqlite3.Cursor:
            if full.is_set() and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
                raise sqlite3.OperationalError("database or disk is full")
            return real(sql, *args)

        emitted: list[str] = []
        t, session = 0.0, 0
        with mock.patch.object(store.conn, "execute", side_effect=execute):
            sink = StoreSink(store, FakeWall(), retry_s=0.01)
            for kind, arg in steps:
                if kind == "event":
                    for _ in range(arg):
                        emitted.append(f"e{len(emitted)}")
                        sink(ev("command_result", t, name=emitted[-1]))
                elif kind == "samples":
                    for s in samples(t, t + arg / 80):
                        sink(s)
                    t += arg / 80
                elif kind == "session":
                    if arg and not session:
                        session = len(emitted) + 1
                        sink(started(session, t))
                        emitted.append("session_started")
                    elif session:
                        sink(ended(session, 0.0, t))
                        emitted.append("session_ended")
                        session = 0
                elif kind == "disk_full" and arg:
                    full.set()
                elif kind == "disk_full":
                    full.clear()
                else:
                    sink.flush(0.0 if full.is_set() else 10.0)
                t += 0.5
            full.clear()
            assert sink.flush(10.0)
            assert sink.close()
        with open_readonly(path) as db:
            events = db.events(limit=10_000)
            names = [e["data"].get("name", e["type"]) for e in events]
            assert names == emitted
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            sessions = {e["data"]["session_no"] for e in events if "session_no" in e["data"]}
            for no in sessions:  # each trace in order, no sample twice, whatever was replayed
                times = [sample[0] for sample in db.trace(no)]
                assert times == sorted(set(times))
