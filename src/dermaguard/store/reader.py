"""The read side of the history: a connection, and the queries the CLI, the reports and the
MQTT outbox make.

:func:`open_readonly` opens a store for reading while the daemon may be writing to it (WAL);
:class:`StoreReader` is also the base of the writer, :class:`~dermaguard.store.db.Store`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from dermaguard.store import schema
from dermaguard.store.codec import loads
from dermaguard.store.trace import TraceSample, unpack_all

#: ``events.delivered`` of an event recorded while MQTT was off: kept in the history and never
#: published (0 waits in the outbox, 1 was acknowledged by the broker). A run without MQTT is a
#: choice, and its events published at a later start would reach Home Assistant's automations as
#: if they were happening then.
LOCAL_ONLY = 2


class StoreError(Exception):
    """The store cannot be opened or used; the message says why."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """Where an event landed: its sequence number, its uuid and its UTC timestamp."""

    seq: int
    id: str
    ts: str


class _Connection(sqlite3.Connection):
    """A plain connection whose methods can be replaced per instance (fault-injection tests)."""


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
    else:
        # check_same_thread=False: opened by the daemon's main thread, then handed to the
        # writer thread; it is never used by two threads at once.
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=_Connection
        )
    conn.row_factory = sqlite3.Row
    return conn


def _session_dict(row: sqlite3.Row) -> dict[str, Any]:
    """A session as the CLI and reports want it: the summary, plus status and wall times."""
    summary = loads(row["summary"])
    if row["status"] == "open":
        summary.setdefault("sterile_at_start", summary.get("sterile"))
    summary["session_no"] = row["session_no"]
    summary["status"] = row["status"]
    summary.setdefault("started_at", row["started_at"])
    summary["started_wall"] = row["started_wall"]
    summary["ended_wall"] = row["ended_wall"]
    # A session stored before passes were measured has no technique: unknown, never zero.
    summary.setdefault("technique", None)
    return summary


def _event_dict(row: sqlite3.Row) -> dict[str, Any]:
    keys = row.keys()
    return {
        "seq": row["seq"],
        "id": row["id"],
        "device": row["device"],
        "type": row["type"],
        "ts": row["ts"],
        "t_mono": row["t_mono"],
        "data": loads(row["data"]),
        "delivered": row["delivered"] == 1,
        "local_only": row["delivered"] == LOCAL_ONLY,
        "delivered_at": row["delivered_at"] if "delivered_at" in keys else None,
    }


def _cycle_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = loads(row["data"])
    for key in ("cycle_id", "started_at", "ended_at", "outcome", "reason", "duration_s"):
        out[key] = row[key]
    return out


class StoreReader:
    """Queries on a store; safe on a read-only connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    @property
    def schema_version(self) -> int:
        return schema.version(self.conn)

    # -- sessions ----------------------------------------------------------------------------

    def recent_sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first: each summary with ``status``, ``started_wall`` and ``ended_wall``."""
        rows = self.conn.execute(
            "SELECT * FROM sessions ORDER BY session_no DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_session_dict(r) for r in rows]

    def session(self, session_no: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM sessions WHERE session_no = ?", (session_no,)
        ).fetchone()
        return None if row is None else _session_dict(row)

    def last_session(self) -> dict[str, Any] | None:
        """The newest finished (completed or interrupted) session, for the rest-interval rule.

        ``ended_wall`` is its end in epoch seconds. Call :meth:`Store.close_interrupted` first,
        so a session cut short by a crash counts too.
        """
        row = self.conn.execute(
            "SELECT * FROM sessions WHERE status != 'open' ORDER BY session_no DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _session_dict(row)

    def last_event_wall(self) -> float | None:
        """When the newest event was stored (epoch seconds), ``None`` for an empty log."""
        row = self.conn.execute("SELECT MAX(wall) FROM events").fetchone()
        return None if row[0] is None else float(row[0])

    def start_seq(self, session_no: int) -> int | None:
        """The ``seq`` of the session's ``session_started`` event (its events follow it)."""
        row = self.conn.execute(
            "SELECT start_seq FROM sessions WHERE session_no = ?", (session_no,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def last_session_no(self) -> int:
        row = self.conn.execute("SELECT MAX(session_no) FROM sessions").fetchone()
        return int(row[0] or 0)

    def trace(self, session_no: int) -> list[TraceSample]:
        """The stored trace: (seconds since the session started, force or None, zone or None)."""
        first = session_no << schema.TRACE_CHUNK_BITS
        rows = self.conn.execute(
            "SELECT samples, n FROM trace WHERE key BETWEEN ? AND ? ORDER BY key",
            (first, first + (1 << schema.TRACE_CHUNK_BITS) - 1),
        ).fetchall()
        return unpack_all((bytes(r["samples"]), int(r["n"])) for r in rows)

    # -- events ------------------------------------------------------------------------------

    def events(self, since_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events with ``seq > since_seq``, oldest first."""
        rows = self.conn.execute(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (since_seq, limit)
        ).fetchall()
        return [_event_dict(r) for r in rows]

    def undelivered(self, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The MQTT outbox: events after ``after_seq`` not yet acknowledged, oldest first.

        Reads along the primary key from ``after_seq``: an outbox that passes its low-water
        mark (everything up to it delivered) scans only the recent events.
        """
        rows = self.conn.execute(
            "SELECT * FROM events WHERE seq > ? AND delivered = 0 ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [_event_dict(r) for r in rows]

    # -- cycles and rollers ------------------------------------------------------------------

    def cycles(self, limit: int = 20) -> list[dict[str, Any]]:
        """Sterilization cycles, newest first (``outcome`` is ``None`` while one runs)."""
        rows = self.conn.execute(
            "SELECT * FROM cycles ORDER BY cycle_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_cycle_dict(r) for r in rows]

    def last_cycle_id(self) -> int:
        row = self.conn.execute("SELECT MAX(cycle_id) FROM cycles").fetchone()
        return int(row[0] or 0)

    def rollers(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM rollers ORDER BY roller_id").fetchall()
        return [dict(r) for r in rows]


def open_readonly(path: Path) -> StoreReader:
    """Open a store for reading (the CLI); the daemon may be writing to it meanwhile."""
    if not path.exists():
        raise StoreError(f"no history yet: {path} does not exist")
    try:
        conn = connect(path, readonly=True)
        conn.execute("PRAGMA query_only = ON")
        version = schema.version(conn)
    except sqlite3.OperationalError as exc:
        conn, version = _open_immutable(path, exc)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if version > schema.SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"{path} has schema version {version}, newer than this dermaguard understands"
        )
    if version == 0:
        conn.close()
        raise StoreError(f"{path} is not a dermaguard history (no schema)")
    return StoreReader(conn, path)


def _open_immutable(path: Path, first: sqlite3.Error) -> tuple[sqlite3.Connection, int]:
    """A full or read-only disk cannot take the shared-memory file a WAL reader needs, while
    the file itself still reads: read it as immutable. Nobody can be writing it then (a writer
    needs that same file), so nothing changes under the reader."""
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro&immutable=1",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        conn.row_factory = sqlite3.Row
        return conn, schema.version(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {first}; read as immutable: {exc}") from exc
