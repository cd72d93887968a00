"""The database layout and its migrations.

``PRAGMA user_version`` holds the schema version. ``MIGRATIONS[i]`` takes a database from version
``i`` to ``i + 1``; each step runs in one transaction together with the version bump, so a crash
or power cut during a migration leaves the old version intact and the step runs again at the
next start. A database made by a newer dermaguard is refused rather than guessed at.

Connection settings (:func:`configure`):

- ``journal_mode=WAL``: readers (the CLI, the MQTT outbox) never block the writer, and a commit
  appends to one file instead of rewriting pages in place.
- ``synchronous=FULL``: in WAL mode every commit fsyncs the WAL before it returns (and before
  other connections can see it), so a committed event is on the card when it is published and
  a power cut loses only a transaction still in progress. ``NORMAL`` would leave commits in the
  page cache until the next checkpoint, and a power cut would lose events the broker had
  already acknowledged. The cost is one fsync per transaction, so the writer commits whatever
  it finds queued in one transaction (:meth:`dermaguard.store.db.Store.batch`), and the trace
  and delivery marks ride along with events or go every 20 s and 60 s.
- ``foreign_keys=ON``: a trace chunk can only belong to a stored session.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: How long a writer waits for a lock held by another connection (e.g. a CLI write) before it
#: reports ``database is locked``; spent on the writer thread, never on the engine thread.
BUSY_TIMEOUT_MS = 5000

#: Bits of a trace row's key that number the chunks within a session (a million chunks).
TRACE_CHUNK_BITS = 20

#: Caps the WAL file left behind after a checkpoint (it is reused, not grown, otherwise).
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024

V1: tuple[str, ...] = (
    # seq is the rowid, handed out by dermaguard.store.seqs (never max(seq) + 1 alone: a card
    # that loses the last commits would make the next events repeat their numbers).
    """
    CREATE TABLE events (
        seq       INTEGER PRIMARY KEY,
        id        TEXT NOT NULL UNIQUE,
        device    TEXT NOT NULL,
        type      TEXT NOT NULL,
        ts        TEXT NOT NULL,
        wall      REAL NOT NULL,
        t_mono    REAL,
        data      TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE rollers (
        roller_id    INTEGER PRIMARY KEY,
        installed_at TEXT,
        uses         INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE cycles (
        cycle_id   INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        ended_at   TEXT,
        outcome    TEXT CHECK (outcome IN ('completed', 'aborted')),
        reason     TEXT,
        duration_s REAL,
        data       TEXT NOT NULL DEFAULT '{}'
    )
    """,
    """
    CREATE TABLE sessions (
        session_no       INTEGER PRIMARY KEY,
        status           TEXT NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'completed', 'interrupted')),
        started_at       TEXT NOT NULL,
        started_wall     REAL NOT NULL,
        t0_mono          REAL,
        start_seq        INTEGER,
        ended_at         TEXT,
        ended_wall       REAL,
        duration_s       REAL,
        contact_s        REAL,
        peak_n           REAL,
        mean_n           REAL,
        over_episodes    INTEGER,
        longest_over_s   REAL,
        sterile_at_start INTEGER,
        cycle_id         INTEGER,
        rest_interval_s  REAL,
        too_soon         INTEGER,
        roller_id        INTEGER,
        roller_use       INTEGER,
        end_reason       TEXT,
        summary          TEXT NOT NULL
    )
    """,
    # One row per chunk of ~20 s of the downsampled trace; the samples are packed columns
    # (see dermaguard.store.trace). The key is ``session_no << 20 | chunk``, so appending a
    # chunk is an append at the right end of the table's own b-tree and nothing else: no second
    # index to update, and SQLite's quick balance instead of a three-page rebalance.
    """
    CREATE TABLE trace (
        key        INTEGER PRIMARY KEY,
        session_no INTEGER NOT NULL REFERENCES sessions (session_no) ON DELETE CASCADE,
        n          INTEGER NOT NULL,
        samples    BLOB NOT NULL
    )
    """,
)

V2: tuple[str, ...] = (
    # The MQTT outbox: when the broker acknowledged each event (``delivered`` says only that
    # it did). Deliberately no index on ``delivered``: it would cost a page write for every
    # event stored and every event acknowledged; the outbox reads from its low-water mark along
    # the primary key instead (see StoreReader.undelivered).
    "ALTER TABLE events ADD COLUMN delivered_at TEXT",
)

V3: tuple[str, ...] = (
    # Sequence numbers reserved ahead of use (dermaguard.store.seqs): every seq ever handed out
    # is at most ``reserved``, which was committed before it was used; numbers above ``floor``
    # belong to the history's current opening; ``boot_id`` is the kernel boot that made the
    # reservation. One row. An existing history starts with nothing reserved beyond its events.
    """
    CREATE TABLE seq_reserve (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        floor    INTEGER NOT NULL,
        reserved INTEGER NOT NULL,
        boot_id  TEXT
    )
    """,
    """
    INSERT INTO seq_reserve (id, floor, reserved, boot_id)
    SELECT 1, COALESCE(MAX(seq), 0), COALESCE(MAX(seq), 0), NULL FROM events
    """,
    # Each event's kernel boot, and whether the wall clock that dated it was synchronised
    # (1), a guess (0: a Pi has no real-time clock) or not known (NULL: older rows, or before
    # the daemon's first report). Guesses of the current boot are dated again from t_mono once
    # the clock is synchronised (dermaguard.store.redate).
    "ALTER TABLE events ADD COLUMN boot_id TEXT",
    "ALTER TABLE events ADD COLUMN clock_synced INTEGER",
    # The technique of each session (core/passes.py) as columns, for trends over many sessions
    # without parsing every summary. Sessions stored before have NULL: unknown, never zero.
    "ALTER TABLE sessions ADD COLUMN passes INTEGER",
    "ALTER TABLE sessions ADD COLUMN pass_force_n REAL",
    "ALTER TABLE sessions ADD COLUMN steadiness_cv REAL",
)

MIGRATIONS: tuple[Sequence[str], ...] = (V1, V2, V3)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database cannot be used by this version of dermaguard."""


def configure(conn: sqlite3.Connection) -> None:
    """Per-connection settings, then WAL (which is stored in the file and persists)."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"cannot put the database in WAL mode (journal_mode is {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS
) -> tuple[int, int]:
    """Bring the schema up to ``len(migrations)``; returns (version before, version after).

    The connection must be in autocommit mode (``isolation_level=None``): each step is its own
    ``BEGIN IMMEDIATE`` … ``COMMIT``, with the version bump inside it.
    """
    target = len(migrations)
    before = version(conn)
    if before > target:
        raise SchemaError(
            f"the database is at schema version {before}, newer than this dermaguard "
            f"understands ({target}): upgrade dermaguard"
        )
    for step in range(before, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version(conn) != step:  # another process migrated it meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in migrations[step]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return before, version(conn)
