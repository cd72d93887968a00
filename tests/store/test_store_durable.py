"""Durable before published, and sequence numbers never used twice, even after losing the tail.

A power cut is modelled by what survives on the card: a copy of the database files taken at
some earlier moment (the tail after it is lost), or the files as they are (nothing lost).
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from pytest_mock import MockerFixture
from store_helpers import WALL0, FakeWall, ended, ev, samples, started

from dermaguard.core.events import Event
from dermaguard.store import Store, StoredEvent, StoreSink, open_readonly, seqs


def copy_files(db_path: Path, to: Path) -> Path:
    """The database as a power cut at this moment would leave it on a card that kept every
    write made so far (the WAL with it; the shared-memory index is rebuilt on open)."""
    to.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = db_path.with_name(db_path.name + suffix)
        if src.exists():
            shutil.copyfile(src, to / (db_path.name + suffix))
    return to / db_path.name


def append(store: Store, n: int, t0: float = 0.0) -> list[int]:
    return [store.append_event(Event("command_result", t0 + i), WALL0 + i).seq for i in range(n)]


# -- durable before published ----------------------------------------------------------------


def test_a_burst_is_committed_once_and_published_after_its_fsynced_commit(db_path: Path) -> None:
    store = Store.open(db_path, "dg-1")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    gate, blocked = threading.Event(), threading.Event()
    at_publish: list[tuple[int, int, bool, int]] = []

    def on_stored(event: Event, stored: StoredEvent) -> None:
        # On the writer thread, as the bridge's hook runs: what holds when it is published.
        sync = store.conn.execute("PRAGMA synchronous").fetchone()[0]
        at_publish.append((stored.seq, len(statements), store.conn.in_transaction, sync))
        if event.data.get("first"):
            blocked.set()
            assert gate.wait(10.0)

    sink = StoreSink(store, FakeWall(), on_stored=on_stored)
    sink(ev("daemon_started", 0.0, first=True))
    assert blocked.wait(10.0)  # the writer waits in the hook: the burst queues up meanwhile
    before = len(statements)
    for i in range(20):
        sink(ev("over_pressure" if i % 2 == 0 else "over_pressure_cleared", 1.0 + i / 10, i=i))
    gate.set()
    assert sink.flush(10.0)
    burst = statements[before:]
    assert sink.close()

    assert [s for s in burst if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    commit = before + burst.index("COMMIT")
    published = at_publish[1:]
    assert [seq for seq, *_ in published] == list(range(2, 22))
    for seq, seen, in_tx, sync in published:
        assert seen > commit, f"event {seq} published before its transaction committed"
        assert not in_tx
        assert sync == 2, "published from a connection that does not fsync each commit (FULL)"
    with open_readonly(db_path) as db:  # and another connection sees all of them
        assert [e["seq"] for e in db.events()] == list(range(1, 22))


def test_a_failed_batch_publishes_nothing_and_is_written_whole_later(
    db_path: Path, mocker: MockerFixture
) -> None:
    store = Store.open(db_path, "dg-1")
    real = store.conn.execute
    fail_inserts = threading.Event()
    inserts = [0]

    def execute(sql: str, *args: object) -> sqlite3.Cursor:
        if sql.lstrip().startswith("INSERT INTO events") and fail_inserts.is_set():
            inserts[0] += 1
            if inserts[0] == 3:  # the third event of the burst: the card refuses
                raise sqlite3.OperationalError("disk I/O error")
        return real(sql, *args)

    mocker.patch.object(store.conn, "execute", side_effect=execute)
    published: list[int] = []
    gate, blocked = threading.Event(), threading.Event()

    def on_stored(event: Event, stored: StoredEvent) -> None:
        published.append(stored.seq)
        if event.data.get("first"):
            blocked.set()
            assert gate.wait(10.0)

    wall = FakeWall()
    sink = StoreSink(store, wall, on_stored=on_stored, retry_s=0.05)
    sink(ev("daemon_started", 0.0, first=True))
    assert blocked.wait(10.0)
    sink(started(1, 1.0))
    for s in samples(1.0, 3.0):
        sink(s)
    sink(ev("over_pressure", 2.0, force_n=5.0, limit_n=4.5))
    sink(ev("over_pressure_cleared", 2.5, duration_s=0.5, peak_n=5.1))
    sink(ended(1, 1.0, 3.0))
    fail_inserts.set()
    gate.set()
    assert sink.flush(10.0)  # the retry writes the whole batch again
    assert sink.close()
    assert inserts[0] >= 3
    with open_readonly(db_path) as db:
        events = db.events()
        assert [e["type"] for e in events] == [
            "daemon_started",
            "session_started",
            "over_pressure",
            "over_pressure_cleared",
            "session_ended",
        ]
        assert [e["seq"] for e in events] == published == [1, 2, 3, 4, 5]
        assert len(db.trace(1)) == 20  # the samples of the rolled-back batch too
        session = db.session(1)
        assert session is not None and session["status"] == "completed"


def test_a_rolled_back_batch_leaves_the_store_as_before(
    store: Store, mocker: MockerFixture
) -> None:
    store.append_event(started(1, 0.0).event, WALL0)
    for i in range(5):
        store.add_trace(i / 10, 1.0, "ok")
    real = store.conn.execute

    def execute(sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":  # the fsync of the commit fails
            raise sqlite3.OperationalError("disk I/O error")
        return real(sql, *args)

    mocker.patch.object(store.conn, "execute", side_effect=execute)
    with pytest.raises(sqlite3.OperationalError), store.batch():
        store.add_trace(0.5, 1.0, "ok")
        store.defer_delivered([1], WALL0 + 1)
        store.append_event(ended(1, 0.0, 1.0).event, WALL0 + 1)
    assert store.open_session == 1
    assert store.trace_buffered == 5
    assert store.marks_pending == 0
    mocker.stopall()
    assert [e["type"] for e in store.events()] == ["session_started"]
    store.append_event(ended(1, 0.0, 1.0).event, WALL0 + 1)
    assert len(store.trace(1)) == 5
    assert [e["seq"] for e in store.events()] == [1, 2]


# -- sequence numbers never used twice -------------------------------------------------------


@pytest.mark.parametrize("kept", [0, 1, 50, 51, 100])
def test_after_losing_the_tail_the_next_seq_is_above_every_seq_published(
    tmp_path: Path, kept: int
) -> None:
    """The card keeps the first ``kept`` events and loses the next ``RESERVE // 2`` (all of
    them published); after the reboot the numbering must not hand out any of theirs again."""
    db_path = tmp_path / "live" / "history.db"
    store = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    published = append(store, kept)
    survivor = copy_files(db_path, tmp_path / "card")
    published += append(store, seqs.RESERVE // 2, t0=kept)
    store.close()

    after = Store.open(survivor, "dg-1", boot=lambda: "boot-2")
    try:
        assert [e["seq"] for e in after.events(limit=10_000)] == published[:kept]
        new = append(after, 3, t0=1000.0)
        assert min(new) > max(published)
        assert new == sorted(new)
    finally:
        after.close()


def test_a_crash_in_the_same_boot_continues_without_a_gap(db_path: Path) -> None:
    first = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    assert append(first, 3) == [1, 2, 3]
    # The process dies here: no close. Its connection is simply abandoned.
    again = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    try:
        assert append(again, 2) == [4, 5]
    finally:
        again.close()
        first.conn.close()


def test_a_start_after_a_power_cut_skips_what_may_have_been_lost(db_path: Path) -> None:
    first = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    assert append(first, 3) == [1, 2, 3]
    first.conn.close()  # the power went: no clean close
    again = Store.open(db_path, "dg-1", boot=lambda: "boot-2")
    try:
        assert append(again, 1) == [seqs.RESERVE + 1]
    finally:
        again.close()


def test_a_clean_close_hands_the_reservation_back(db_path: Path) -> None:
    first = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    assert append(first, 3) == [1, 2, 3]
    first.close()
    again = Store.open(db_path, "dg-1", boot=lambda: "boot-2")  # a reboot after a shutdown
    try:
        assert append(again, 1) == [4]
    finally:
        again.close()


def test_an_unknown_boot_counts_as_a_new_one(db_path: Path) -> None:
    first = Store.open(db_path, "dg-1", boot=lambda: None)
    append(first, 2)
    first.conn.close()
    again = Store.open(db_path, "dg-1", boot=lambda: None)
    try:
        assert append(again, 1) == [seqs.RESERVE + 1]
    finally:
        again.close()


def test_the_reservation_is_committed_ahead_of_the_numbers_used(db_path: Path) -> None:
    store = Store.open(db_path, "dg-1", boot=lambda: "boot-1")
    db = open_readonly(db_path)  # what another connection, or the card, has after each commit
    try:
        for i in range(2 * seqs.RESERVE):
            seq = store.append_event(Event("command_result", float(i)), WALL0 + i).seq
            reserved = db.conn.execute("SELECT reserved FROM seq_reserve").fetchone()[0]
            assert reserved >= seq + seqs.RESERVE // 2
    finally:
        db.close()
        store.close()
