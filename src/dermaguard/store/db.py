"""The SQLite store's writer: an append-only event log, the records derived from it, the trace.

Every domain event is appended to ``events`` with a per-device sequence number that is never used
twice (:mod:`dermaguard.store.seqs`) and committed — on the card, ``synchronous=FULL`` — before
anyone announces it. The writer thread commits a burst of events in one transaction
(:meth:`Store.batch`), so a burst costs one fsync. Sessions, sterilization cycles and rollers are
projections of those events (:mod:`dermaguard.store.projections`), written in the same transaction
as the event that changes them; if a projection cannot be applied (a malformed event, a duplicate
number) the event is still stored and the problem logged — the log is the record, the tables are
views of it.

The force trace is buffered in memory and written in chunks (every ``trace_flush_s`` of samples,
and with the event that ends the session), so an SD card sees a page every twenty seconds rather
than a write per sample.

A :class:`Store` holds one connection and is used by one thread at a time: the caller's until
the :class:`~dermaguard.store.writer.StoreSink` takes it over, then the writer thread only.
Readers on other threads (the CLI, the MQTT outbox) use their own
:func:`~dermaguard.store.reader.open_readonly`.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from dermaguard.common.boot import boot_id
from dermaguard.common.timefmt import iso_utc, utc_epoch
from dermaguard.core.events import Event, EventType, Zone
from dermaguard.store import projections, schema, seqs
from dermaguard.store.codec import dumps, loads
from dermaguard.store.reader import LOCAL_ONLY, StoredEvent, StoreError, StoreReader, connect
from dermaguard.store.recover import LoggedEvent, interrupted_summary
from dermaguard.store.redate import redate_boot
from dermaguard.store.trace import TraceSample, pack

log = logging.getLogger(__name__)

#: Trace samples per stored chunk: 20 s at 10 Hz, 1.8 kB, stored inline in a table page.
TRACE_CHUNK_MAX = 200
#: Seconds of samples after which the trace buffer is written even if the chunk is not full.
#: It bounds what a crash loses of a trace, and sets the write rate while rolling: about one
#: 4 kB page per chunk (see bench/storage.py).
TRACE_FLUSH_S = 20.0
#: Samples kept in memory when the trace cannot be written; older ones are dropped past this.
TRACE_BUFFER_MAX = 36_000
#: Events that close the stretch of the log belonging to a session left open.
SESSION_BOUNDARIES = frozenset(
    {EventType.SESSION_STARTED, EventType.SESSION_ENDED, EventType.DAEMON_STARTED}
)


class StoreUnavailable(StoreError):
    """The storage refuses the history for now (full, read-only, an I/O error): it may clear
    by itself, so the daemon runs without it and tries again (docs/RELIABILITY.md)."""


class StoreCorrupt(StoreError):
    """The file is not a usable SQLite database (damaged, or something else entirely)."""


#: SQLite's words for a file it cannot read as a database, whatever the disk does.
_CORRUPT_WORDS = ("file is not a database", "malformed", "file is encrypted")


def classify(exc: BaseException, what: str) -> StoreError:
    """The :class:`StoreError` for a failure to open or read the history: corrupt, or the
    storage refusing (retry later); ``what`` opens the message."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and any(w in text for w in _CORRUPT_WORDS):
        return StoreCorrupt(f"{what}: {text}")
    return StoreUnavailable(f"{what}: {text}")


def _writable(path: Path) -> None:
    """Raise if the database (or, for a new one, its directory) cannot be written: SQLite then
    opens it read-only without a word, and that connection stays read-only after the disk is
    writable again, so it must not be the one the daemon keeps."""
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        code = errno.EROFS if _read_only_fs(target) else errno.EACCES
        raise OSError(code, f"{os.strerror(code)}: {target} cannot be written")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def set_aside(path: Path, wall: float) -> Path:
    """Rename a corrupt database (and its WAL and shared-memory files) out of the way, never
    deleting it: ``dermaguard.db`` becomes ``dermaguard.db.corrupt-20261206T031500Z``, which
    can still be inspected or salvaged (``sqlite3 … .recover``). Returns the new name; an
    OSError (a read-only disk) leaves everything where it was."""
    stamp = iso_utc(wall).replace("-", "").replace(":", "").split(".")[0] + "Z"
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


@dataclass(slots=True)
class _OpenSession:
    session_no: int
    t0: float
    next_chunk: int = 0


class _Snapshot(NamedTuple):
    """The store's memory before a batch: what a rolled-back batch puts back."""

    session: _OpenSession | None
    buf: list[TraceSample]
    marks: dict[int, str]
    trace_dropped: int
    clock_synced: bool | None


def _reserve_seqs(conn: sqlite3.Connection, boot: str | None) -> None:
    """Commit this opening's sequence numbers before any event uses one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seqs.open_run(conn, boot)
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


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
        boot_id: str | None = None,
    ) -> None:
        super().__init__(conn, path)
        self.device_id = device_id
        self.boot_id = boot_id  # the kernel boot this store records in (None: unknown)
        #: Whether the wall clock stamping events is synchronised, as the event stream's
        #: ``clock_sync`` says (``None``: not said yet in this run).
        self.clock_synced: bool | None = None
        self.publish = publish  # False: events are stored LOCAL_ONLY, never for the outbox
        self.trace_flush_s = trace_flush_s
        self.trace_chunk_max = trace_chunk_max
        self.trace_dropped = 0
        self._session: _OpenSession | None = None
        self._buf: list[TraceSample] = []
        self._marks: dict[int, str] = {}  # seq -> delivered_at, written with the next commit
        self._batch: _Snapshot | None = None  # what to restore if the open batch rolls back
        self._batch_begun = False  # the open batch has begun its transaction

    @classmethod
    def open(
        cls,
        path: Path,
        device_id: str,
        *,
        trace_flush_s: float = TRACE_FLUSH_S,
        trace_chunk_max: int = TRACE_CHUNK_MAX,
        publish: bool = True,
        boot: Callable[[], str | None] = boot_id,
    ) -> Store:
        """Open (creating it and its directory if needed), migrate, switch to WAL, and reserve
        sequence numbers for this opening (:func:`dermaguard.store.seqs.open_run`).

        ``publish=False`` (MQTT off) stores every event of this store as :data:`LOCAL_ONLY`.
        ``boot`` tells the machine's boot id (a test stands in for a reboot with another one).
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _writable(path)
            conn = connect(path, readonly=False)
        except (OSError, sqlite3.Error) as exc:
            raise classify(exc, f"cannot open the history database {path}") from exc
        try:
            schema.configure(conn)
            before, after = schema.migrate(conn)
            boot_now = boot()
            _reserve_seqs(conn, boot_now)
        except (OSError, sqlite3.Error) as exc:
            conn.close()
            raise classify(exc, f"cannot prepare the history database {path}") from exc
        except schema.SchemaError as exc:
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
            boot_id=boot_now,
        )

    @property
    def open_session(self) -> int | None:
        """The session this process is recording a trace for, if any."""
        return None if self._session is None else self._session.session_no

    @property
    def trace_buffered(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        """Write the buffered trace and hand back unused sequence numbers if the disk allows,
        then close the connection."""
        try:
            self.flush()
            with self._tx():
                seqs.release(self.conn)
        except sqlite3.Error as exc:
            log.warning("trace or sequence numbers not written at close: %s", exc)
        finally:
            self.conn.close()

    # -- transactions ------------------------------------------------------------------------

    def _rollback_quietly(self) -> None:
        # Raises if no transaction is active (SQLite may have rolled back by itself).
        with suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write inside one transaction, committed (and fsynced) once at the end.

        The writer thread wraps each burst it takes from its queue in one batch and publishes
        the burst's events only after it commits: one fsync for the burst instead of one per
        event. Inside, each write is a savepoint, so a write that fails on its own (a bug, a
        constraint) is undone alone and the others still commit. If the batch cannot commit,
        everything in it is rolled back, the store's memory (open session, trace buffer,
        delivery marks) is put back as it was before the batch, and the exception propagates:
        the caller can write the same items again later. A batch that wrote nothing does not
        touch the database.
        """
        if self._batch is not None:
            raise RuntimeError("batches do not nest")
        snapshot = self._batch = _Snapshot(
            None if self._session is None else replace(self._session),
            list(self._buf),
            dict(self._marks),
            self.trace_dropped,
            self.clock_synced,
        )
        try:
            yield
            if self._batch_begun:
                self._check_batch_open()
                self.conn.execute("COMMIT")
        except BaseException:
            if self._batch_begun:
                self._rollback_quietly()
            (self._session, self._buf, self._marks, self.trace_dropped, self.clock_synced) = (
                snapshot
            )
            raise
        finally:
            self._batch = None
            self._batch_begun = False

    def _check_batch_open(self) -> None:
        """SQLite rolls a transaction back by itself on some errors (a full disk, an I/O
        error); a batch must not go on in autocommit mode then, committing piece by piece."""
        if not self.conn.in_transaction:
            raise sqlite3.OperationalError("the batch's transaction was rolled back by SQLite")

    def _begin(self) -> None:
        if self.conn.in_transaction:  # left over from a failure we could not roll back
            self._rollback_quietly()
        self.conn.execute("BEGIN IMMEDIATE")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction (a savepoint inside a batch); deferred delivery marks ride
        along with it."""
        if self._batch is not None:
            if not self._batch_begun:
                self._begin()
                self._batch_begun = True
            self._check_batch_open()
            self.conn.execute("SAVEPOINT tx")
            try:
                yield
                self._write_marks()
                self.conn.execute("RELEASE tx")
            except BaseException:
                with suppress(sqlite3.Error):  # SQLite may have rolled back the whole batch
                    self.conn.execute("ROLLBACK TO tx")
                    self.conn.execute("RELEASE tx")
                raise
            self._marks = {}  # the batch's snapshot has them if it rolls back
            return
        self._begin()
        try:
            yield
            marks = self._write_marks()
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback_quietly()
            raise
        if marks:
            self._marks = {}

    def _write_marks(self) -> int:
        marks = self._marks
        for seq, when in marks.items():
            self.conn.execute(
                "UPDATE events SET delivered = 1, delivered_at = ? WHERE seq = ? AND delivered = 0",
                (when, seq),
            )
        return len(marks)

    @contextmanager
    def _projection(self, what: str) -> Iterator[None]:
        """A savepoint: a projection that cannot be applied is undone and logged, while the
        event itself is still committed. Storage faults propagate and fail the whole event."""
        self.conn.execute("SAVEPOINT projection")
        try:
            yield
        except projections.PROJECTION_ERRORS as exc:
            self.conn.execute("ROLLBACK TO projection")
            self.conn.execute("RELEASE projection")
            log.warning("stored %s without updating the records: %r", what, exc)
        else:
            self.conn.execute("RELEASE projection")

    # -- events ------------------------------------------------------------------------------

    def _insert_event(
        self,
        etype: str,
        t: float | None,
        data: Mapping[str, Any],
        wall: float,
        synced: bool | None,
    ) -> StoredEvent:
        """``synced``: whether the clock that gave ``wall`` was synchronised (``None``: not
        known)."""
        event_id = str(uuid.uuid4())
        ts = iso_utc(wall)
        seq = seqs.take(self.conn)
        self.conn.execute(
            "INSERT INTO events (seq, id, device, type, ts, wall, t_mono, data, delivered, "
            "boot_id, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                event_id,
                self.device_id,
                etype,
                ts,
                wall,
                t,
                dumps(data),
                0 if self.publish else LOCAL_ONLY,
                self.boot_id,
                None if synced is None else int(synced),
            ),
        )
        return StoredEvent(seq, event_id, ts)

    def append_event(self, event: Event, wall: float) -> StoredEvent:
        """Append and commit one event, with the records it changes, in one transaction.

        ``wall`` (epoch seconds) stamps it. On a storage error nothing is written, the store's
        state is unchanged and the exception propagates, so the same call can be retried. A
        session's buffered trace is written in the transaction that starts or ends a session.
        """
        data = dict(event.data)
        changes_session = event.type in (EventType.SESSION_STARTED, EventType.SESSION_ENDED)
        new_session: _OpenSession | None = None
        synced = self.clock_synced
        if event.type == EventType.CLOCK_SYNC:
            synced = data.get("synced") is True
        with self._tx():
            stored = self._insert_event(event.type, event.t, data, wall, synced)
            if synced and self.clock_synced is False:
                self._redate(event.t, wall)
            if changes_session:
                with self._projection(f"the trace before {event.type}"):
                    self._write_trace()
            if event.type == EventType.SESSION_STARTED:
                new_session = self._start_session(data, stored, event, wall)
            elif event.type == EventType.SESSION_ENDED:
                self._end_session(data, stored, wall)
            else:
                self._project(event.type, data, stored, wall)
        self.clock_synced = synced
        if changes_session:
            self._session = new_session
            self._buf = []
        return stored

    def _redate(self, t: float | None, wall: float) -> None:
        """The clock is synchronised now: date again this boot's guesses (store/redate.py)."""
        if self.boot_id is None or t is None:
            return
        with self._projection("re-dating the records made before the clock was synchronised"):
            n = redate_boot(self.conn, self.boot_id, wall - t)
            if n:
                log.info("clock synchronised: %d events of this boot dated again", n)

    def _start_session(
        self, data: Mapping[str, Any], stored: StoredEvent, event: Event, wall: float
    ) -> _OpenSession | None:
        t0 = projections.session_t0(data, event.t, wall)
        with self._projection(event.type):
            return _OpenSession(projections.session_started(self.conn, data, stored, t0, wall), t0)
        return None  # the session row could not be made: no trace for it

    def _end_session(self, data: Mapping[str, Any], stored: StoredEvent, wall: float) -> None:
        with self._projection(EventType.SESSION_ENDED):
            projections.session_ended(self.conn, data, stored, wall)

    def _project(
        self, etype: str, data: Mapping[str, Any], stored: StoredEvent, wall: float
    ) -> None:
        handler = projections.BY_TYPE.get(etype)
        if handler is None:
            return
        with self._projection(etype):
            handler(self.conn, data, stored, wall)

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
                self._insert_event(EventType.SESSION_ENDED, t, summary, wall, self.clock_synced)
                projections.session_interrupted(self.conn, no, summary, ended_wall)
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
                stored = self._insert_event(
                    EventType.STERILIZATION_ABORTED, t, data, wall, self.clock_synced
                )
                ended = StoredEvent(stored.seq, stored.id, iso_utc(end))
                projections.cycle_ended(self.conn, data, ended, wall)
