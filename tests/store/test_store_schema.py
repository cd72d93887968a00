"""Schema creation, migrations and connection settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dermaguard.core.events import Event
from dermaguard.store import SCHEMA_VERSION, Store, StoreError, open_readonly, schema
from dermaguard.store.trace import pack

# The v1 schema exactly as it shipped: a migration must work from this, not from today's V1.
V1_DDL = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, device TEXT NOT NULL, type TEXT NOT NULL,
    ts TEXT NOT NULL, wall REAL NOT NULL, t_mono REAL, data TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE rollers (
    roller_id INTEGER PRIMARY KEY, installed_at TEXT, uses INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE cycles (
    cycle_id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT,
    outcome TEXT CHECK (outcome IN ('completed', 'aborted')), reason TEXT, duration_s REAL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE sessions (
    session_no INTEGER PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed', 'interrupted')),
    started_at TEXT NOT NULL, started_wall REAL NOT NULL, t0_mono REAL, start_seq INTEGER,
    ended_at TEXT, ended_wall REAL, duration_s REAL, contact_s REAL, peak_n REAL, mean_n REAL,
    over_episodes INTEGER, longest_over_s REAL, sterile_at_start INTEGER, cycle_id INTEGER,
    rest_interval_s REAL, too_soon INTEGER, roller_id INTEGER, roller_use INTEGER,
    end_reason TEXT, summary TEXT NOT NULL
);
CREATE TABLE trace (
    key INTEGER PRIMARY KEY,
    session_no INTEGER NOT NULL REFERENCES sessions (session_no) ON DELETE CASCADE,
    n INTEGER NOT NULL, samples BLOB NOT NULL
);
PRAGMA user_version = 1;
"""


def make_v1(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.executescript(
        """
        INSERT INTO events (seq, id, device, type, ts, wall, t_mono, data, delivered) VALUES
          (1, 'a1', 'dev', 'daemon_started', '2025-01-01T00:00:00.000Z', 1735689600, 0, '{}', 1),
          (2, 'a2', 'dev', 'session_started', '2025-01-01T00:00:10.000Z', 1735689610, 10,
           '{"session_no":1}', 0),
          (3, 'a3', 'dev', 'session_ended', '2025-01-01T00:01:10.000Z', 1735689670, 70,
           '{"session_no":1}', 0);
        INSERT INTO rollers VALUES (1, '2025-01-01T00:00:00.000Z', 1);
        INSERT INTO cycles VALUES
          (1, '2024-12-31T23:50:00.000Z', '2025-01-01T00:00:00.000Z', 'completed', NULL, 600,
           '{}');
        INSERT INTO sessions (session_no, status, started_at, started_wall, t0_mono, start_seq,
                              ended_at, ended_wall, duration_s, end_reason, summary)
          VALUES (1, 'completed', '2025-01-01T00:00:10.000Z', 1735689610, 10, 2,
                  '2025-01-01T00:01:10.000Z', 1735689670, 60, 'docked',
                  '{"session_no":1,"duration_s":60,"end_reason":"docked"}');
        """
    )
    conn.execute(
        "INSERT INTO trace VALUES (?, 1, 2, ?)",
        (1 << 20, pack([(0.0, 1.5, "ok"), (0.1, None, None)])),
    )
    conn.commit()
    conn.close()


def test_schema_from_an_empty_file(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()  # an empty file is a valid, empty SQLite database
    store = Store.open(db_path, "dev")
    try:
        assert store.schema_version == SCHEMA_VERSION == 3
        rows = store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {r[0] for r in rows}
        assert {"events", "sessions", "trace", "cycles", "rollers"} <= tables
        assert store.last_session_no() == 0
        assert store.last_cycle_id() == 0
        assert store.last_session() is None
        assert store.recent_sessions() == []
    finally:
        store.close()


def test_open_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "history.db"
    Store.open(path, "dev").close()
    assert path.exists()


def test_wal_mode_synchronous_full_and_foreign_keys(store: Store, db_path: Path) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # FULL: in WAL mode each commit fsyncs the WAL before it returns (events are published
    # after their commit, so never before they are on the card).
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    other = sqlite3.connect(db_path)  # WAL is a property of the file
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_trace_rows_need_a_session(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO trace VALUES (99, 0, 0, x'')")


def test_migration_from_v1_keeps_data(db_path: Path) -> None:
    make_v1(db_path)
    store = Store.open(db_path, "dev")
    try:
        assert store.schema_version == 3
        events = store.events()
        assert [(e["seq"], e["id"], e["type"]) for e in events] == [
            (1, "a1", "daemon_started"),
            (2, "a2", "session_started"),
            (3, "a3", "session_ended"),
        ]
        assert [e["delivered"] for e in events] == [True, False, False]
        assert all(e["delivered_at"] is None for e in events)
        session = store.session(1)
        assert session is not None
        assert session["status"] == "completed"
        assert session["duration_s"] == 60
        assert store.trace(1) == [(0.0, 1.5, "ok"), (0.1, None, None)]
        assert store.current_roller() == (1, 1)
        assert store.cycles()[0]["outcome"] == "completed"
        # The new column and the outbox index work on the migrated data.
        assert [e["seq"] for e in store.undelivered()] == [2, 3]
        assert store.mark_delivered([2], 1735689700.0) == 1
        assert [e["seq"] for e in store.undelivered()] == [3]
        assert store.events()[1]["delivered_at"] == "2025-01-01T00:01:40.000Z"
        # New events continue the sequence, whose reservation starts from the history's.
        assert store.conn.execute("SELECT floor FROM seq_reserve").fetchone()[0] == 3
        stored = store.append_event(Event("daemon_started", 0.0), 1735689800.0)
        assert stored.seq == 4
    finally:
        store.close()


def test_outbox_reads_along_the_primary_key(store: Store) -> None:
    for i in range(6):
        store.append_event(Event("command_result", float(i)), 1735689600.0 + i)
    store.mark_delivered([1, 2, 4], 1735689700.0)
    assert [e["seq"] for e in store.undelivered()] == [3, 5, 6]
    assert [e["seq"] for e in store.undelivered(after_seq=3, limit=1)] == [5]
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE seq > 3 AND delivered = 0 ORDER BY seq"
    ).fetchall()
    assert any("INTEGER PRIMARY KEY" in str(row[3]) for row in plan), plan


def test_delivery_marks_ride_along_with_the_next_commit(store: Store) -> None:
    store.append_event(Event("a", 0.0), 1735689600.0)
    store.defer_delivered([1], 1735689601.0)
    assert store.marks_pending == 1
    assert store.undelivered()[0]["seq"] == 1  # not written yet
    store.append_event(Event("b", 1.0), 1735689602.0)
    assert store.marks_pending == 0
    (first, second) = store.events()
    assert (first["delivered"], first["delivered_at"]) == (True, "2025-01-01T00:00:01.000Z")
    assert not second["delivered"]
    store.defer_delivered([2], 1735689603.0)
    assert store.flush() == 0  # no trace, but the mark is written
    assert store.undelivered() == []


def test_a_failing_migration_leaves_the_previous_version(db_path: Path) -> None:
    make_v1(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    broken = (*schema.MIGRATIONS, ("ALTER TABLE events ADD COLUMN x", "NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, broken)
    # Every real step committed, the broken last one rolled back.
    assert schema.version(conn) == len(schema.MIGRATIONS)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    assert "x" not in columns
    conn.close()


def test_a_newer_database_is_refused(db_path: Path) -> None:
    Store.open(db_path, "dev").close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(db_path, "dev")
    with pytest.raises(StoreError, match="newer"):
        open_readonly(db_path)


def test_open_readonly(db_path: Path) -> None:
    with pytest.raises(StoreError, match="no history"):
        open_readonly(db_path)
    store = Store.open(db_path, "dev")
    store.append_event(Event("daemon_started", 0.0), 1735689600.0)
    reader = open_readonly(db_path)  # while the writer has it open (WAL)
    try:
        assert [e["type"] for e in reader.events()] == ["daemon_started"]
        with pytest.raises(sqlite3.OperationalError):
            reader.conn.execute("DELETE FROM events")
    finally:
        reader.close()
        store.close()
    with open_readonly(db_path) as again:  # and after it closed
        assert len(again.events()) == 1


def test_a_file_that_is_not_a_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError):
        Store.open(db_path, "dev")


def test_migration_keeps_old_sessions_technique_unknown_and_stores_new_ones(
    db_path: Path,
) -> None:
    """A session from before passes were measured reads as unknown (None, never 0); a new one
    keeps its technique in the summary and in the trend columns."""
    make_v1(db_path)
    store = Store.open(db_path, "dev")
    try:
        old = store.session(1)
        assert old is not None and old["technique"] is None
        row = store.conn.execute("SELECT passes, steadiness_cv FROM sessions").fetchone()
        assert tuple(row) == (None, None)
        technique = {
            "passes": 12,
            "pass_force_n": 1.8,
            "steadiness_cv": 0.15,
            "zone_share": {"light": 0.1, "ok": 0.8, "high": 0.1, "over": 0.0},
            "passes_high": 2,
            "passes_over": 0,
            "longest_ok_s": 9.5,
        }
        summary = {"session_no": 2, "duration_s": 60.0, "technique": technique}
        store.append_event(Event("session_ended", 100.0, summary), 1735689900.0)
        new = store.session(2)
        assert new is not None and new["technique"] == technique
        row = store.conn.execute(
            "SELECT passes, pass_force_n, steadiness_cv FROM sessions WHERE session_no = 2"
        ).fetchone()
        assert tuple(row) == (12, 1.8, 0.15)
    finally:
        store.close()
