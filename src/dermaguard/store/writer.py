"""The writer thread: effects in from the engine, rows out to SQLite, never the other way round.

The engine thread calls :class:`StoreSink` as an effect sink; the call only appends to an
in-memory queue (a lock held for an append, never disk), so a slow SD card cannot delay the
alarm path. The queue's force samples are bounded — when it is full, new samples are dropped
and counted — while events are never dropped there.

When the disk fails (full, read-only, I/O error), the writer degrades instead of losing data:
events and the session trace are held in memory in their order (up to 10,000 events and an hour
of trace; past that new ones are dropped and counted), ``on_fault`` reports
the problem once, a retry runs every ``retry_s``, and when the disk accepts writes again the
backlog is written in order and ``on_fault(None)`` says so. Nothing already committed is touched.

The same holds from the start: a sink made without a store (the history could not be opened
at start-up: a full or read-only disk, an I/O error) begins in that fault, holds what comes in
the same way, and calls ``opener`` to open the history, first after ``retry_s`` and then with
a doubling backoff up to ``OPEN_RETRY_MAX_S``; once it opens, the backlog is written as above.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dermaguard.core.events import Effect, EmitEvent, Event, EventType, ForceSample
from dermaguard.store.db import Store
from dermaguard.store.reader import StoredEvent, StoreError

log = logging.getLogger(__name__)

#: Force samples the queue holds before new ones are dropped: 100 s at 80 samples/s.
QUEUE_SAMPLES = 8000
#: Events held in memory while the disk fails; past this, new events are lost (and counted).
BACKLOG_EVENTS = 10_000
#: Downsampled trace samples held in memory while the disk fails: an hour at 10 Hz.
BACKLOG_SAMPLES = 36_000
#: Seconds between attempts to write again after a storage fault.
RETRY_S = 5.0
#: Longest wait between attempts to open a history that could not be opened at start-up.
OPEN_RETRY_MAX_S = 60.0
#: The writer wakes at least this often to see whether samples are waiting (samples alone do
#: not wake it: they only fill a memory buffer, so there is no hurry).
IDLE_WAKE_S = 0.5
#: Longest a delivery mark waits for another commit to ride along with before it gets its own.
MARKS_FLUSH_S = 60.0
#: Backlog items written per transaction when the disk works again.
RETRY_BATCH = 500
#: Slack when downsampling, for sample times that are multiples of the period in theory only.
_EPSILON_S = 1e-6


def is_storage_fault(exc: BaseException) -> bool:
    """A failure of the storage, worth retrying, rather than of the data or of our code."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return True
    # A bare DatabaseError is e.g. "database disk image is malformed"; its subclasses other
    # than OperationalError (integrity, programming, data errors) are about what was written.
    return type(exc) is sqlite3.DatabaseError


def describe_fault(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "storage full: no space left on device"
    text = str(exc) or type(exc).__name__
    if "disk is full" in text:
        return "storage full: database or disk is full"
    return f"storage error: {text}"


@dataclass(frozen=True, slots=True)
class _Ev:
    event: Event
    wall: float


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Delivered:
    seqs: tuple[int, ...]
    wall: float


_Item = ForceSample | _Ev | _Flush | _Delivered
_Persistable = ForceSample | _Ev | _Delivered


class Downsampler:
    """Keeps a sample when at least ``1 / hz`` seconds passed since the last kept one."""

    def __init__(self, hz: float) -> None:
        if hz <= 0:
            raise ValueError(f"trace rate must be > 0, got {hz}")
        self.period = 1.0 / hz
        self._last: float | None = None

    def reset(self) -> None:
        self._last = None

    def keep(self, t: float) -> bool:
        if self._last is not None and t - self._last < self.period - _EPSILON_S:
            return False
        self._last = t
        return True


class StoreSink:
    """An effect sink that persists events and the session trace on its own thread.

    Construct it (it starts its thread) before the runtime starts; it owns ``store`` from then
    on, so nothing else may use that object until :meth:`close` returns. ``wall`` stamps each
    event when it is emitted (not when it reaches the disk, which may be much later during a
    fault). ``on_stored(event, stored)`` runs on the writer thread for each event once the
    transaction holding it is committed and on the disk — the hook for publishing it. The writer
    commits what it finds queued in one transaction (a burst of events costs one fsync), then
    calls ``on_stored`` for each of its events in order. ``on_fault(message)`` runs there too
    when writes start failing, and ``on_fault(None)`` when they work again.

    ``store=None`` starts without a history: ``unavailable`` says why (reported through
    ``on_fault`` as the thread starts) and ``opener`` is retried with a backoff until it
    returns the store.
    """

    #: The effects it acts on (the runtime offers it no others).
    effect_types = (ForceSample, EmitEvent)

    def __init__(
        self,
        store: Store | None,
        wall: Callable[[], float],
        *,
        opener: Callable[[], Store] | None = None,
        unavailable: str | None = None,
        on_fault: Callable[[str | None], None] | None = None,
        on_stored: Callable[[Event, StoredEvent], None] | None = None,
        trace_hz: float = 10.0,
        queue_samples: int = QUEUE_SAMPLES,
        backlog_events: int = BACKLOG_EVENTS,
        backlog_samples: int = BACKLOG_SAMPLES,
        retry_s: float = RETRY_S,
    ) -> None:
        if store is None and opener is None:
            raise ValueError("a sink without a store needs an opener")
        self.store = store
        self._opener = opener
        self._wall = wall
        self._on_fault = on_fault
        self._on_stored = on_stored
        self._downsampler = Downsampler(trace_hz)
        self._queue_samples = queue_samples
        self._backlog_events_max = backlog_events
        self._backlog_samples_max = backlog_samples
        self.retry_s = retry_s
        self._dropped_queue = 0  # guarded by _cond
        self._dropped_backlog = 0  # writer thread only
        #: Events lost because the backlog was full during a long storage fault.
        self.lost_events = 0
        #: The current storage fault, ``None`` when writes work.
        self.fault: str | None = None
        self._cond = threading.Condition()
        self._items: deque[_Item] = deque()
        self._queued_samples = 0
        self._closing = False
        self._kick = False
        # Writer-thread state.
        self._recording = False
        self._backlog: deque[_Persistable] = deque()
        self._backlog_events = 0
        self._backlog_samples = 0
        self._waiting: list[_Flush] = []
        self._next_retry = 0.0
        self._marks_since: float | None = None
        self._open_wait = retry_s
        self._unavailable = (unavailable or "history unavailable") if store is None else None
        if self._unavailable is not None:
            self._next_retry = time.monotonic() + retry_s
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------------

    def __call__(self, effect: Effect) -> None:
        """Queue an effect for storage; returns at once (never touches the disk)."""
        if isinstance(effect, ForceSample):
            with self._cond:
                if self._closing or self._queued_samples >= self._queue_samples:
                    self._dropped_queue += 1
                    return
                self._items.append(effect)
                self._queued_samples += 1
        elif isinstance(effect, EmitEvent):
            item = _Ev(effect.event, self._wall())
            with self._cond:
                if self._closing:
                    log.error("event %s after the store closed: not stored", effect.event.type)
                    return
                self._items.append(item)
                self._cond.notify()

    def mark_delivered(self, seqs: Iterable[int]) -> None:
        """Queue marking events as delivered (the broker acknowledged them).

        The marks are written with the next commit, or after ``MARKS_FLUSH_S`` at the latest,
        or by :meth:`flush` (see :meth:`Store.defer_delivered`).
        """
        item = _Delivered(tuple(seqs), self._wall())
        with self._cond:
            if not self._closing:
                self._items.append(item)
                self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call, buffered trace included, is committed.

        During a storage fault this also asks for an immediate retry. ``False`` on timeout
        (e.g. the disk is still full) or if the writer has stopped.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() from the writer's own callbacks would wait for itself")
        marker = _Flush()
        with self._cond:
            if self._closing or not self._thread.is_alive():
                return False
            self._items.append(marker)
            self._kick = True
            self._cond.notify()
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Write everything queued, close the store and stop the thread.

        ``False`` if the writer did not finish in time or the disk still refused the backlog
        (what it held is then lost, and logged).
        """
        with self._cond:
            self._closing = True
            self._kick = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive() and not self._backlog

    @property
    def dropped_samples(self) -> int:
        """Force samples dropped: the queue was full, or the backlog was during a fault."""
        return self._dropped_queue + self._dropped_backlog

    @property
    def backlog(self) -> int:
        """Events and samples held in memory because the disk refused them."""
        return len(self._backlog)

    @property
    def writer_alive(self) -> bool:
        """Whether the writer thread runs (the daemon's supervisor restarts it when not)."""
        return self._thread.is_alive()

    def restart_writer(self) -> None:
        """Start the writer thread again after it died; what is queued is still queued."""
        with self._cond:
            if self._thread.is_alive() or self._closing:
                return
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        if self._unavailable is not None:
            log.error(
                "%s: holding events in memory, trying to open it again in %g s",
                self._unavailable,
                self.retry_s,
            )
            self._report(self._unavailable)
        while True:
            with self._cond:
                while not self._items and not self._closing and not self._kick:
                    timeout = IDLE_WAKE_S
                    if self.fault is not None:
                        timeout = max(0.0, min(timeout, self._next_retry - time.monotonic()))
                        if timeout == 0.0:
                            break
                    self._cond.wait(timeout)
                batch, self._items = self._items, deque()
                self._queued_samples = 0
                closing, kick = self._closing, self._kick
                self._kick = False
            try:
                self._take(batch)
            except Exception:  # a bug must not stop the writer; the batch is skipped
                log.exception("store writer: cannot handle a batch of %d items", len(batch))
            if self.fault is not None and (kick or time.monotonic() >= self._next_retry):
                self._retry()
            self._flush_marks_when_due()
            if closing:
                with self._cond:
                    if self._items:
                        continue
                self._finish()
                return

    def _take(self, batch: Iterable[_Item]) -> None:
        """Admit what the queue held, in stream order, and write it in one transaction."""
        items: list[_Persistable] = []
        flush = False
        for item in batch:
            if isinstance(item, _Flush):
                self._waiting.append(item)
                flush = True
            elif (admitted := self._admit(item)) is not None:
                items.append(admitted)
        if self.fault is not None or self.store is None:
            for admitted in items:
                self._hold(admitted)
        elif items or flush:
            error = self._write(self.store, items, flush=flush)
            if error is not None:
                self._enter_fault(error)
                for admitted in items:  # all of them: the batch was rolled back
                    self._hold(admitted)
        self._release_waiters()

    def _admit(self, item: _Persistable) -> _Persistable | None:
        """Decisions made in stream order, once: which samples belong to a session's trace."""
        if isinstance(item, ForceSample):
            if not self._recording or not self._downsampler.keep(item.t):
                return None
        elif isinstance(item, _Ev):
            if item.event.type == EventType.SESSION_STARTED:
                self._recording = True
                self._downsampler.reset()
            elif item.event.type == EventType.SESSION_ENDED:
                self._recording = False
        return item

    def _write(
        self, store: Store, items: Iterable[_Persistable], *, flush: bool = False
    ) -> Exception | None:
        """Write ``items`` (and the buffered trace, with ``flush``) in one transaction, then
        hand its events to ``on_stored``: nothing is published before the commit holding it is
        on the disk. Returns the storage fault that rolled the whole batch back, so that the
        caller keeps every item for later; ``None`` once written.
        """
        stored: list[tuple[Event, StoredEvent]] = []
        try:
            with store.batch():
                for item in items:
                    self._skip_bugs(self._persist, store, item, stored)
                if flush:
                    self._skip_bugs(store.flush)
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            return exc
        if self._on_stored is not None:
            for event, where in stored:
                try:
                    self._on_stored(event, where)
                except Exception:
                    log.exception("on_stored failed for event %d", where.seq)
        return None

    @staticmethod
    def _skip_bugs(action: Callable[..., object], *args: object) -> None:
        """Run one write of a batch: a storage fault fails the batch, anything else is a bug
        that skips this write alone (its savepoint is rolled back) and is logged."""
        try:
            action(*args)
        except Exception as exc:
            if is_storage_fault(exc):
                raise
            log.exception("store writer: %s skipped", getattr(action, "__name__", "a write"))

    def _persist(
        self, store: Store, item: _Persistable, stored: list[tuple[Event, StoredEvent]]
    ) -> None:
        if isinstance(item, ForceSample):
            store.add_trace(item.t, item.force_n, item.zone)
        elif isinstance(item, _Ev):
            stored.append((item.event, store.append_event(item.event, item.wall)))
        else:
            store.defer_delivered(item.seqs, item.wall)
            if self._marks_since is None:
                self._marks_since = time.monotonic()

    def _flush_marks_when_due(self) -> None:
        store = self.store
        if store is None or not store.marks_pending:
            self._marks_since = None
        elif (
            self.fault is None
            and self._marks_since is not None
            and time.monotonic() - self._marks_since >= MARKS_FLUSH_S
        ):
            self._guarded(store.flush)

    def _guarded(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            self._enter_fault(exc)
            return False
        return True

    def _hold(self, item: _Persistable) -> None:
        """Keep an item for later, in order; past the bounds new ones are dropped."""
        if isinstance(item, ForceSample):
            if self._backlog_samples >= self._backlog_samples_max:
                self._dropped_backlog += 1
                return
            self._backlog_samples += 1
        else:
            if self._backlog_events >= self._backlog_events_max:
                self.lost_events += 1
                if self.lost_events == 1:
                    self._report(f"{self.fault}; events are being lost")
                log.error("storage fault: event lost (%d so far)", self.lost_events)
                return
            self._backlog_events += 1
        self._backlog.append(item)

    def _enter_fault(self, exc: BaseException) -> None:
        self._next_retry = time.monotonic() + self.retry_s
        if self.fault is None:
            message = describe_fault(exc)
            log.error("%s: holding events in memory, retrying every %g s", message, self.retry_s)
            self._report(message)

    def _open(self) -> Store | None:
        """Try the opener once; on failure, wait twice as long before the next try."""
        assert self._opener is not None
        try:
            self.store = self._opener()
        except Exception as exc:
            if not isinstance(exc, StoreError) and not is_storage_fault(exc):
                log.exception("store writer: opening the history failed")
            self._open_wait = min(self._open_wait * 2, max(OPEN_RETRY_MAX_S, self.retry_s))
            self._next_retry = time.monotonic() + self._open_wait
            log.info("history still unavailable (%s): next try in %g s", exc, self._open_wait)
            return None
        log.warning("history database opened: writing what was held in memory")
        return self.store

    def _retry(self) -> None:
        """Write what the store buffered, then the backlog in order, ``RETRY_BATCH`` items a
        transaction; stop at the first fault."""
        store = self.store if self.store is not None else self._open()
        if store is None:
            return
        if not self._retry_step(store.flush):
            return
        while self._backlog:
            chunk = [self._backlog.popleft() for _ in range(min(RETRY_BATCH, len(self._backlog)))]
            try:
                error = self._write(store, chunk)
            except Exception:
                log.exception("store writer: %d backlog items skipped", len(chunk))
                error = None
            if error is not None:
                self._backlog.extendleft(reversed(chunk))
                self._next_retry = time.monotonic() + self.retry_s
                return
            samples = sum(isinstance(item, ForceSample) for item in chunk)
            self._backlog_samples -= samples
            self._backlog_events -= len(chunk) - samples
        if not self._retry_step(store.flush):
            return
        log.warning("storage works again: backlog written")
        self._report(None)
        self._release_waiters()

    def _retry_step(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except Exception as exc:
            if not is_storage_fault(exc):
                log.exception("store writer: flush failed")
            self._next_retry = time.monotonic() + self.retry_s
            return False
        return True

    def _release_waiters(self) -> None:
        if self.fault is None and not self._backlog:
            for marker in self._waiting:
                marker.done.set()
            self._waiting.clear()

    def _report(self, message: str | None) -> None:
        self.fault = message
        if self._on_fault is not None:
            try:
                self._on_fault(message)
            except Exception:
                log.exception("on_fault failed")

    def _finish(self) -> None:
        if self.fault is not None:
            self._retry()
        if self._backlog:
            log.error(
                "store closed with %d items not written (storage fault: %s)",
                len(self._backlog),
                self.fault,
            )
        try:
            if self.store is not None:
                self.store.close()
        except sqlite3.Error as exc:
            log.error("closing the store: %s", exc)
        self._release_waiters()
        self._waiting.clear()  # still faulted: their flush() calls report the timeout
