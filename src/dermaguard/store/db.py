"""The SQLite store: an append-only event log and the records derived from it.

Every domain event is appended to ``events`` with a per-device sequence number and committed at
once, before anyone announces it. Sessions, sterilization cycles and rollers are projections of
those events, written in the same transaction as the event that changes them; if a projection
cannot be applied (a malformed event, a duplicate number) the event is still stored and the
problem logged — the log is the record, the tables are views of it.

The force trace is buffered in memory and written in chunks (every ``trace_flush_s`` of samples,
and with the event that ends the session), so an SD card sees a page every twenty seconds rather
than a write per sample.

A :class:`Store` holds one connection and is used by one thread at a time: the caller's until
the :class:`~dermaguard.store.writer.StoreSink` takes it over, then the writer thread only.
Readers on other threads (the CLI, the MQTT outbox) use their own :func:`open_readonly`.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from dermaguard.common.timefmt import iso_utc, utc_epoch
from dermaguard.core.events import Event, Zone
from dermaguard.store import schema
from dermaguard.store.codec import dumps, loads
from dermaguard.store.recover import LoggedEvent, interrupted_summary
from dermaguard.store.trace import TraceSample, pack, unpack_all

log = logging.getLogger(__name__)

#: Trace samples per stored chunk: 20 s at 10 Hz, 1.8 kB, stored inline in a table page.
TRACE_CHUNK_MAX = 200
#: Seconds of samples after which the trace buffer is written even if the chunk is not full.
#: It bounds what a crash loses of a trace, and sets the write rate while rolling: about one
#: 4 kB page per chunk (see bench/storage.py).
TRACE_FLUSH_S = 20.0
#: Samples kept in memory when the trace cannot be written; older ones are dropped past this.
TRACE_BUFFER_MAX = 36_000
#: Without ``t_start`` in ``session_started``, the session's start is found from ``started_at``
#: if it lies at most this long before the event; otherwise the event's own time is used.
MAX_START_LEAD_S = 3600.0
#: ``events.delivered`` of an event recorded while MQTT was off: kept in the history and never
#: published (0 waits in the outbox, 1 was acknowledged by the broker). A run without MQTT is a
#: choice, and its events published at a later start would reach Home Assistant's automations as
#: if they were happening then.
LOCAL_ONLY = 2
#: Events that close the stretch of the log belonging to a session left open.
SESSION_BOUNDARIES = frozenset({"session_started", "session_ended", "daemon_started"})

_PROJECTION_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    KeyError,
    TypeError,
    ValueError,
)


class StoreError(Exception):
    """The store cannot be opened or used; the message says why."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """Where an event landed: its sequence number, its uuid and its UTC timestamp."""

    seq: int
    id: str
    ts: str


@dataclass(slots=True)
class _OpenSession:
    session_no: int
    t0: float
    next_chunk: int = 0


class _Connection(sqlite3.Connection):
    """A plain connection whose methods can be replaced per instance (fault-injection tests)."""


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
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


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


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
        conn = _connect(path, readonly=True)
        conn.execute("PRAGMA query_only = ON")
        version = schema.version(conn)
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


class Store(StoreReader):
    """The writer's view: appends events, projects them, and buffers the force trace."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        device_id: str,
        *,
        trace_flush_s: float = TRACE_FLUSH_S,
        trace_chunk_max: int = TRACE_CHUNK_MAX,
        publish: bool = True,
    ) -> None:
        super().__init__(conn, path)
        self.device_id = device_id
        self.publish = publish  # False: events are stored LOCAL_ONLY, never for the outbox
        self.trace_flush_s = trace_flush_s
        self.trace_chunk_max = trace_chunk_max
        self.trace_dropped = 0
        self._session: _OpenSession | None = None
        self._buf: list[TraceSample] = []
        self._marks: dict[int, str] = {}  # seq -> delivered_at, written with the next commit

    @classmethod
    def open(
        cls,
        path: Path,
        device_id: str,
        *,
        trace_flush_s: float = TRACE_FLUSH_S,
        trace_chunk_max: int = TRACE_CHUNK_MAX,
        publish: bool = True,
    ) -> Store:
        """Open (creating it and its directory if needed), migrate, and switch to WAL.

        ``publish=False`` (MQTT off) stores every event of this store as :data:`LOCAL_ONLY`.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(path, readonly=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the history database {path}: {exc}") from exc
        try:
            schema.configure(conn)
            before, after = schema.migrate(conn)
        except (sqlite3.Error, schema.SchemaError) as exc:
            conn.close()
            raise StoreError(f"cannot prepare the history database {path}: {exc}") from exc
        if before != after:
            log.info("history database %s: schema %d -> %d", path, before, after)
        return cls(
            conn,
            path,
            device_id,
            trace_flush_s=trace_flush_s,
            trace_chunk_max=trace_chunk_max,
            publish=publish,
        )

    @property
    def open_session(self) -> int | None:
        """The session this process is recording a trace for, if any."""
        return None if self._session is None else self._session.session_no

    @property
    def trace_buffered(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        """Write the buffered trace if the disk allows, then close the connection."""
        try:
            self.flush()
        except sqlite3.Error as exc:
            log.warning("trace not written at close: %s", exc)
        finally:
            self.conn.close()

    # -- transactions ------------------------------------------------------------------------

    def _rollback_quietly(self) -> None:
        # Raises if no transaction is active (SQLite may have rolled back by itself).
        with suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction; deferred delivery marks ride along with it."""
        if self.conn.in_transaction:  # left over from a failure we could not roll back
            self._rollback_quietly()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            marks = self._marks
            for seq, when in marks.items():
                self.conn.execute(
                    "UPDATE events SET delivered = 1, delivered_at = ? "
                    "WHERE seq = ? AND delivered = 0",
                    (when, seq),
                )
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback_quietly()
            raise
        if marks:
            self._marks = {}

    @contextmanager
    def _projection(self, what: str) -> Iterator[None]:
        """A savepoint: a projection that cannot be applied is undone and logged, while the
        event itself is still committed. Storage faults propagate and fail the whole event."""
        self.conn.execute("SAVEPOINT projection")
        try:
            yield
        except _PROJECTION_ERRORS as exc:
            self.conn.execute("ROLLBACK TO projection")
            self.conn.execute("RELEASE projection")
            log.warning("stored %s without updating the records: %r", what, exc)
        else:
            self.conn.execute("RELEASE projection")

    # -- events ------------------------------------------------------------------------------

    def _insert_event(
        self, etype: str, t: float | None, data: Mapping[str, Any], wall: float
    ) -> StoredEvent:
        event_id = str(uuid.uuid4())
        ts = iso_utc(wall)
        cur = self.conn.execute(
            "INSERT INTO events (id, device, type, ts, wall, t_mono, data, delivered) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                self.device_id,
                etype,
                ts,
                wall,
                t,
                dumps(data),
                0 if self.publish else LOCAL_ONLY,
            ),
        )
        seq = cur.lastrowid
        assert seq is not None
        return StoredEvent(seq, event_id, ts)

    def append_event(self, event: Event, wall: float) -> StoredEvent:
        """Append and commit one event, with the records it changes, in one transaction.

        ``wall`` (epoch seconds) stamps it. On a storage error nothing is written, the store's
        state is unchanged and the exception propagates, so the same call can be retried. A
        session's buffered trace is written in the transaction that starts or ends a session.
        """
        data = dict(event.data)
        changes_session = event.type in ("session_started", "session_ended")
        new_session: _OpenSession | None = None
        with self._tx():
            stored = self._insert_event(event.type, event.t, data, wall)
            if changes_session:
                with self._projection(f"the trace before {event.type}"):
                    self._write_trace()
            if event.type == "session_started":
                new_session = self._start_session(data, stored, event, wall)
            elif event.type == "session_ended":
                self._end_session(data, stored, wall)
            else:
                self._project(event.type, data, stored, wall)
        if changes_session:
            self._session = new_session
            self._buf = []
        return stored

    def _start_session(
        self, data: Mapping[str, Any], stored: StoredEvent, event: Event, wall: float
    ) -> _OpenSession | None:
        t0 = self._session_t0(data, event.t, wall)
        no: int | None = None
        with self._projection(event.type):
            no = int(data["session_no"])
            started_at = str(data.get("started_at") or stored.ts)
            started_wall = utc_epoch(started_at)
            self._touch_roller(data, stored.ts)
            self.conn.execute(
                "INSERT INTO sessions (session_no, status, started_at, started_wall, t0_mono, "
                "start_seq, sterile_at_start, cycle_id, rest_interval_s, too_soon, roller_id, "
                "roller_use, summary) VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    no,
                    started_at,
                    wall if started_wall is None else started_wall,
                    t0,
                    stored.seq,
                    _opt_bool(data.get("sterile")),
                    _opt_int(data.get("cycle_id")),
                    _opt_float(data.get("rest_interval_s")),
                    _opt_bool(data.get("too_soon")),
                    _opt_int(data.get("roller_id")),
                    _opt_int(data.get("roller_use")),
                    dumps(data),
                ),
            )
            return _OpenSession(no, t0)
        return None  # the session row could not be made: no trace for it

    @staticmethod
    def _session_t0(data: Mapping[str, Any], t: float, wall: float) -> float:
        """The session's start on the monotonic clock, which trace times are relative to.

        The core dates a session from leaving the dock, before the first contact that emits
        ``session_started``: ``t_start`` says when, or else ``started_at`` against ``wall``.
        """
        t_start = _opt_float(data.get("t_start"))
        if t_start is not None:
            return t_start
        started_wall = utc_epoch(str(data.get("started_at", "")))
        if started_wall is not None and 0.0 <= wall - started_wall <= MAX_START_LEAD_S:
            return t - (wall - started_wall)
        return t

    def _end_session(self, data: Mapping[str, Any], stored: StoredEvent, wall: float) -> None:
        with self._projection("session_ended"):
            no = int(data["session_no"])
            ended_at = str(data.get("ended_at") or stored.ts)
            ended_wall = utc_epoch(ended_at)
            ended_wall = wall if ended_wall is None else ended_wall
            duration = _opt_float(data.get("duration_s"))
            started_at = str(data.get("started_at") or iso_utc(ended_wall - (duration or 0.0)))
            started_wall = utc_epoch(started_at)
            self._touch_roller(data, stored.ts)
            self.conn.execute(
                "INSERT INTO sessions (session_no, status, started_at, started_wall, ended_at, "
                "ended_wall, duration_s, contact_s, peak_n, mean_n, over_episodes, "
                "longest_over_s, sterile_at_start, cycle_id, rest_interval_s, too_soon, "
                "roller_id, roller_use, end_reason, summary) "
                "VALUES (?, 'completed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_no) DO UPDATE SET status = 'completed', "
                "ended_at = excluded.ended_at, ended_wall = excluded.ended_wall, "
                "duration_s = excluded.duration_s, contact_s = excluded.contact_s, "
                "peak_n = excluded.peak_n, mean_n = excluded.mean_n, "
                "over_episodes = excluded.over_episodes, "
                "longest_over_s = excluded.longest_over_s, "
                "sterile_at_start = excluded.sterile_at_start, cycle_id = excluded.cycle_id, "
                "rest_interval_s = excluded.rest_interval_s, too_soon = excluded.too_soon, "
                "roller_id = excluded.roller_id, roller_use = excluded.roller_use, "
                "end_reason = excluded.end_reason, summary = excluded.summary",
                (
                    no,
                    started_at,
                    ended_wall - (duration or 0.0) if started_wall is None else started_wall,
                    ended_at,
                    ended_wall,
                    duration,
                    _opt_float(data.get("contact_s")),
                    _opt_float(data.get("peak_n")),
                    _opt_float(data.get("mean_n")),
                    _opt_int(data.get("over_episodes")),
                    _opt_float(data.get("longest_over_s")),
                    _opt_bool(data.get("sterile_at_start")),
                    _opt_int(data.get("cycle_id")),
                    _opt_float(data.get("rest_interval_s")),
                    _opt_bool(data.get("too_soon")),
                    _opt_int(data.get("roller_id")),
                    _opt_int(data.get("roller_use")),
                    None if data.get("end_reason") is None else str(data["end_reason"]),
                    dumps(data),
                ),
            )

    def _touch_roller(self, data: Mapping[str, Any], ts: str) -> None:
        roller_id = _opt_int(data.get("roller_id"))
        if roller_id is None:
            return
        # The WHERE keeps an unchanged roller's page out of the transaction (no write).
        self.conn.execute(
            "INSERT INTO rollers (roller_id, installed_at, uses) VALUES (?, ?, ?) "
            "ON CONFLICT (roller_id) DO UPDATE SET uses = excluded.uses "
            "WHERE excluded.uses > uses",
            (roller_id, ts, _opt_int(data.get("roller_use")) or 0),
        )

    def _project(
        self, etype: str, data: Mapping[str, Any], stored: StoredEvent, wall: float
    ) -> None:
        handler = self._PROJECTIONS.get(etype)
        if handler is None:
            return
        with self._projection(etype):
            handler(self, data, stored, wall)

    def _cycle_started(self, data: Mapping[str, Any], stored: StoredEvent, _wall: float) -> None:
        self.conn.execute(
            "INSERT INTO cycles (cycle_id, started_at, data) VALUES (?, ?, ?)",
            (int(data["cycle_id"]), stored.ts, dumps(data)),
        )

    def _cycle_ended(self, data: Mapping[str, Any], stored: StoredEvent, wall: float) -> None:
        cycle_id = int(data["cycle_id"])
        completed = "reason" not in data
        duration = _opt_float(data.get("duration_s" if completed else "after_s"))
        row = self.conn.execute(
            "SELECT data FROM cycles WHERE cycle_id = ?", (cycle_id,)
        ).fetchone()
        merged = {**(loads(row["data"]) if row is not None else {}), **data}
        if row is None:  # its start was not recorded: date it from its length
            self.conn.execute(
                "INSERT INTO cycles (cycle_id, started_at) VALUES (?, ?)",
                (cycle_id, iso_utc(wall - (duration or 0.0))),
            )
        self.conn.execute(
            "UPDATE cycles SET ended_at = ?, outcome = ?, reason = ?, duration_s = ?, data = ? "
            "WHERE cycle_id = ?",
            (
                stored.ts,
                "completed" if completed else "aborted",
                None if completed else str(data["reason"]),
                duration,
                dumps(merged),
                cycle_id,
            ),
        )

    def _roller_added(self, data: Mapping[str, Any], stored: StoredEvent, _wall: float) -> None:
        self.conn.execute(
            "INSERT INTO rollers (roller_id, installed_at, uses) VALUES (?, ?, 0) "
            "ON CONFLICT (roller_id) DO NOTHING",
            (int(data["roller_id"]), stored.ts),
        )

    _PROJECTIONS: Mapping[str, Callable[[Store, Mapping[str, Any], StoredEvent, float], None]] = {
        "sterilization_started": _cycle_started,
        "sterilization_completed": _cycle_ended,
        "sterilization_aborted": _cycle_ended,
        "new_roller": _roller_added,
    }

    # -- trace -------------------------------------------------------------------------------

    def add_trace(self, t: float, force_n: float | None, zone: Zone | None) -> bool:
        """Buffer one (already downsampled) sample of the open session; ``False`` if none is.

        The buffer is written when it holds a full chunk or ``trace_flush_s`` of samples. The
        sample is buffered even if that write fails (the exception propagates and the next
        flush retries), so a caller never re-adds it.
        """
        s = self._session
        if s is None:
            return False
        self._buf.append((max(0.0, t - s.t0), force_n, zone))
        if len(self._buf) > TRACE_BUFFER_MAX:
            del self._buf[0]
            self.trace_dropped += 1
        if (
            len(self._buf) >= self.trace_chunk_max
            or self._buf[-1][0] - self._buf[0][0] >= self.trace_flush_s
        ):
            self.flush()
        return True

    def flush(self) -> int:
        """Write the buffered trace and deferred delivery marks now; returns samples written."""
        if not self._buf and not self._marks:
            return 0
        with self._tx():
            chunks = self._write_trace()
        written = len(self._buf)
        if self._session is not None:
            self._session.next_chunk += chunks
        self._buf = []
        return written

    def _write_trace(self) -> int:
        """Insert the buffer as chunks, inside the caller's transaction; returns the chunks.

        Nothing changes in memory here: after the commit the caller clears the buffer and
        advances the chunk counter, so a rolled-back attempt is retried with the same keys.
        """
        s = self._session
        if s is None or not self._buf:
            return 0
        step = self.trace_chunk_max
        chunks = 0
        for i in range(0, len(self._buf), step):
            part = self._buf[i : i + step]
            chunk = s.next_chunk + chunks
            if chunk >> schema.TRACE_CHUNK_BITS:  # months of rolling: keep what fits
                log.warning("session %d: trace full, samples not stored", s.session_no)
                break
            self.conn.execute(
                "INSERT INTO trace (key, session_no, n, samples) VALUES (?, ?, ?, ?)",
                (
                    s.session_no << schema.TRACE_CHUNK_BITS | chunk,
                    s.session_no,
                    len(part),
                    pack(part),
                ),
            )
            chunks += 1
        return chunks

    def trace(self, session_no: int) -> list[TraceSample]:
        """The stored trace, plus what is still buffered if it is the session being recorded."""
        out = super().trace(session_no)
        if self._session is not None and self._session.session_no == session_no:
            out.extend(self._buf)
        return out

    # -- rollers -----------------------------------------------------------------------------

    def current_roller(self, wall: float | None = None) -> tuple[int, int]:
        """(roller_id, uses) of the newest roller; roller 1 is created on first use."""
        row = self.conn.execute(
            "SELECT roller_id, uses FROM rollers ORDER BY roller_id DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            return int(row["roller_id"]), int(row["uses"])
        with self._tx():
            self.conn.execute(
                "INSERT INTO rollers (roller_id, installed_at, uses) VALUES (1, ?, 0)",
                (None if wall is None else iso_utc(wall),),
            )
        return 1, 0

    def new_roller(self, wall: float) -> int:
        """Record a fresh roller (no uses yet) and return its id."""
        with self._tx():
            row = self.conn.execute("SELECT MAX(roller_id) FROM rollers").fetchone()
            roller_id = int(row[0] or 0) + 1
            self.conn.execute(
                "INSERT INTO rollers (roller_id, installed_at, uses) VALUES (?, ?, 0)",
                (roller_id, iso_utc(wall)),
            )
        return roller_id

    # -- outbox ------------------------------------------------------------------------------

    @property
    def marks_pending(self) -> int:
        """Delivery marks deferred to the next commit."""
        return len(self._marks)

    def defer_delivered(self, seqs: Iterable[int], wall: float) -> None:
        """Mark events as acknowledged with the next commit, whatever it is (no write now).

        An acknowledgement is not worth a commit of its own: it would cost the SD card a page
        for every event, and a mark lost to a crash only means the event is published again,
        which consumers de-duplicate by ``id``.
        """
        when = iso_utc(wall)
        for seq in seqs:
            self._marks.setdefault(int(seq), when)

    def mark_delivered(self, seqs: Iterable[int], wall: float) -> int:
        """Mark events as acknowledged by the broker now; returns how many changed."""
        wanted = sorted(set(seqs))
        if not wanted:
            return 0
        changed = 0
        with self._tx():
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                marks = ",".join("?" * len(part))
                cur = self.conn.execute(
                    f"UPDATE events SET delivered = 1, delivered_at = ? "
                    f"WHERE delivered = 0 AND seq IN ({marks})",
                    (iso_utc(wall), *part),
                )
                changed += cur.rowcount
        return changed

    # -- recovery ----------------------------------------------------------------------------

    def close_interrupted(self, wall: float, t: float | None = None) -> list[int]:
        """Close sessions a crash or power cut left open; returns their numbers.

        Each becomes ``interrupted`` with a summary computed from what was stored (see
        :mod:`dermaguard.store.recover`), and a ``session_ended`` event with that summary and
        ``end_reason: "interrupted"`` is logged (stamped ``wall``, monotonic ``t`` if given),
        so the history and MQTT consumers learn of it like any other end. Sterilization cycles
        left running are closed as aborted (``reason: "interrupted"``) the same way. Call it at
        start-up, before the runtime; the session this process records is never touched.
        """
        current = self.open_session
        last_alive = self.conn.execute("SELECT MAX(wall) FROM events").fetchone()[0]
        rows = self.conn.execute(
            "SELECT * FROM sessions WHERE status = 'open' ORDER BY session_no"
        ).fetchall()
        closed: list[int] = []
        for row in rows:
            no = int(row["session_no"])
            if no == current:
                continue
            summary = interrupted_summary(
                loads(row["summary"]),
                started_at=str(row["started_at"]),
                started_wall=float(row["started_wall"]),
                trace=super().trace(no),
                events=self._events_of_session(row["start_seq"]),
                t0_mono=row["t0_mono"],
            )
            summary["session_no"] = no
            ended_wall = utc_epoch(str(summary["ended_at"]))
            with self._tx():
                self._insert_event("session_ended", t, summary, wall)
                self.conn.execute(
                    "UPDATE sessions SET status = 'interrupted', ended_at = ?, ended_wall = ?, "
                    "duration_s = ?, contact_s = ?, peak_n = ?, mean_n = ?, over_episodes = ?, "
                    "longest_over_s = ?, end_reason = 'interrupted', summary = ? "
                    "WHERE session_no = ?",
                    (
                        summary["ended_at"],
                        ended_wall,
                        summary["duration_s"],
                        summary["contact_s"],
                        summary["peak_n"],
                        summary["mean_n"],
                        summary["over_episodes"],
                        summary["longest_over_s"],
                        dumps(summary),
                        no,
                    ),
                )
            closed.append(no)
        self._close_interrupted_cycles(wall, t, last_alive)
        return closed

    def _events_of_session(self, start_seq: int | None) -> list[LoggedEvent]:
        if start_seq is None:
            return []
        out: list[LoggedEvent] = []
        cursor = self.conn.execute(
            "SELECT type, t_mono, data FROM events WHERE seq > ? ORDER BY seq", (start_seq,)
        )
        for row in cursor:
            if row["type"] in SESSION_BOUNDARIES:
                break
            out.append(LoggedEvent(str(row["type"]), row["t_mono"], loads(row["data"])))
        cursor.close()
        return out

    def _close_interrupted_cycles(
        self, wall: float, t: float | None, last_alive: float | None
    ) -> None:
        """A cycle's real end is unknown: it ends at the last sign of life of the process that
        ran it (its newest stored event, never before the cycle's start), not at this start,
        which may be days later or, after a simulation's clock, earlier than the cycle."""
        rows = self.conn.execute(
            "SELECT cycle_id, started_at FROM cycles WHERE outcome IS NULL ORDER BY cycle_id"
        ).fetchall()
        for row in rows:
            started = utc_epoch(str(row["started_at"]))
            known = [x for x in (last_alive, started) if x is not None]
            end = max(known) if known else wall
            after = round(end - started, 3) if started is not None else None
            data = {"cycle_id": int(row["cycle_id"]), "reason": "interrupted", "after_s": after}
            with self._tx():
                stored = self._insert_event("sterilization_aborted", t, data, wall)
                self._cycle_ended(data, StoredEvent(stored.seq, stored.id, iso_utc(end)), wall)
