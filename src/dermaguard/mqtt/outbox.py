"""The durable outbox: every stored event published at QoS 1, in order, until acknowledged.

The SQLite event log *is* the outbox (``events.delivered``): an event is committed before it
is published, and marked delivered only when the broker's PUBACK says it took it (under MQTT 5
a PUBACK with a failure reason code, e.g. refused by an ACL, does not count). This class holds
only bounded working state, driven by one thread:

* ``cursor`` — the highest sequence number handed to the client. Nothing at or below it is
  handed over again in this process: after a reconnect, paho re-sends its own unacknowledged
  QoS 1 messages (with DUP set), so re-publishing them here would double-send them.
* ``inflight`` — message id → event for what the client holds, at most ``window`` of them, so
  a long outage keeps at most ``window`` events in memory, and a page read ahead; the rest
  wait on disk.
* ``fresh`` — events just committed (from the store's writer thread), published straight from
  memory so a live event does not wait for a database read. When it overflows, or at start-up,
  the outbox reads pages of undelivered events from the database instead ("backlog mode")
  until it has caught up: whole pages, handed over as the window makes room (a PUBACK at a
  time makes room for one event; a query per event halved the rate of a backlog's drain).
* refused events are retried after ``retry_refused_s``; they stay undelivered on disk whatever
  happens, so a restart replays them too.

Consumers de-duplicate by the event ``id``: a crash between a PUBACK and its delivery mark
reaching the disk re-publishes the event after a restart.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dermaguard.core.events import EventType
from dermaguard.mqtt.payloads import event_envelope

log = logging.getLogger(__name__)

#: Events handed to the client and not yet acknowledged, at most.
WINDOW = 200
#: Events read from the database at a time in backlog mode.
PAGE = 500
#: Freshly committed events held in memory before falling back to database reads.
FRESH_MAX = 2000
#: Refused events held for a retry; past this they wait on disk for the next start.
REFUSED_MAX = 1000
#: Seconds before a refused event is offered to the broker again.
RETRY_REFUSED_S = 60.0


@dataclass(frozen=True, slots=True)
class OutEvent:
    """One event ready to publish: its envelope, and the summary of a ``session_ended``."""

    seq: int
    etype: str
    payload: bytes
    data: dict[str, Any] | None = None  # kept only where a retained topic needs it

    @classmethod
    def build(
        cls, *, seq: int, event_id: str, device: str, etype: str, ts: str, data: dict[str, Any]
    ) -> OutEvent:
        payload = event_envelope(
            seq=seq, event_id=event_id, device=device, etype=etype, ts=ts, data=data
        )
        return cls(seq, etype, payload, data if etype == EventType.SESSION_ENDED else None)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutEvent:
        return cls.build(
            seq=int(row["seq"]),
            event_id=str(row["id"]),
            device=str(row["device"]),
            etype=str(row["type"]),
            ts=str(row["ts"]),
            data=dict(row["data"]),
        )


class StoredRef(Protocol):
    """Where the store put a committed event (the store's ``StoredEvent`` is one)."""

    @property
    def seq(self) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> str: ...


class EventLog(Protocol):
    """The read side of the event log the outbox pages through (the store's ``StoreReader`` is
    one). The daemon's assembly hands the bridge a way to open it, so mqtt never imports the
    store (docs/ARCHITECTURE.md, "Layers")."""

    def undelivered(self, after_seq: int, limit: int, /) -> list[dict[str, Any]]:
        """Rows of undelivered events with ``seq > after_seq``, oldest first."""
        ...

    def close(self) -> None: ...


#: Hands one event to the client; returns its message id, or ``None`` if it was not taken.
Publish = Callable[[OutEvent], int | None]
#: Reads undelivered events with ``seq > after``, oldest first, at most ``limit``.
ReadPage = Callable[[int, int], list[OutEvent]]


class Outbox:
    """Bounded working state of the outbox; one thread calls every method but :meth:`offer`
    (the caller guards :meth:`offer` with its own lock if it comes from another thread)."""

    def __init__(
        self,
        read_page: ReadPage,
        *,
        window: int = WINDOW,
        page: int = PAGE,
        fresh_max: int = FRESH_MAX,
        retry_refused_s: float = RETRY_REFUSED_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_page = read_page
        self.window = window
        self.page = page
        self.fresh_max = fresh_max
        self.retry_refused_s = retry_refused_s
        self._monotonic = monotonic
        self.cursor = 0
        self.inflight: dict[int, OutEvent] = {}
        self.fresh: deque[OutEvent] = deque()
        self.backlog_mode = True  # start-up: whatever a previous run left undelivered
        #: Backlog read ahead of the cursor, and the highest sequence number read so far.
        self._ahead: deque[OutEvent] = deque()
        self._read_to = 0
        self.refused: deque[tuple[float, OutEvent]] = deque()
        self.published = 0
        self.delivered = 0
        self.refusals = 0
        self._refused_reasons: set[str] = set()

    # -- input -------------------------------------------------------------------------------

    def offer(self, event: OutEvent) -> None:
        """A newly committed event (in sequence order)."""
        if len(self.fresh) >= self.fresh_max:
            self.fresh.clear()  # they are on disk: read them from there once caught up
            self.backlog_mode = True
        self.fresh.append(event)

    # -- publishing --------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing known to be waiting (refused events aside)."""
        return not self.inflight and not self.backlog_mode and not self._pending_fresh()

    @property
    def has_next(self) -> bool:
        """Events wait to be handed to the client (refused ones aside: see next_retry_in)."""
        return self.backlog_mode or self._pending_fresh()

    def _pending_fresh(self) -> bool:
        while self.fresh and self.fresh[0].seq <= self.cursor:
            self.fresh.popleft()
        return bool(self.fresh)

    def fill(self, publish: Publish) -> int:
        """Hand events to the client until the window is full; returns how many. An event the
        client does not take stays first in line for the next call."""
        handed = self._retry_refused(publish)
        while len(self.inflight) < self.window and (line := self._next_line()) is not None:
            event = line[0]
            if not self._hand(publish, event):
                break
            line.popleft()
            self.cursor = max(self.cursor, event.seq)
            handed += 1
        return handed

    def _next_line(self) -> deque[OutEvent] | None:
        """Where the next event comes from: the backlog read ahead (a page at a time), else the
        fresh events; ``None`` when neither holds one."""
        if self.backlog_mode:
            if not self._ahead:
                self._ahead.extend(self._read_page(max(self.cursor, self._read_to), self.page))
                if self._ahead:
                    self._read_to = self._ahead[-1].seq
            if self._ahead:
                return self._ahead
            self.backlog_mode = False  # caught up: from now on every new event is in `fresh`
        return self.fresh if self._pending_fresh() else None

    def _hand(self, publish: Publish, event: OutEvent) -> bool:
        mid = publish(event)
        if mid is None:
            return False
        self.inflight[mid] = event
        self.published += 1
        return True

    def _retry_refused(self, publish: Publish) -> int:
        now = self._monotonic()
        handed = 0
        while self.refused and self.refused[0][0] <= now and len(self.inflight) < self.window:
            _, event = self.refused.popleft()
            if not self._hand(publish, event):
                break
            handed += 1
        return handed

    # -- acknowledgements --------------------------------------------------------------------

    def acked(self, mid: int, ok: bool, reason: str = "") -> OutEvent | None:
        """The broker answered message ``mid``; returns the event when it counts as delivered."""
        event = self.inflight.pop(mid, None)
        if event is None:
            return None  # not an event (state, discovery…) or already settled
        if ok:
            self.delivered += 1
            return event
        self.refusals += 1
        if reason not in self._refused_reasons:
            self._refused_reasons.add(reason)
            log.error(
                "the broker refused event %d (%s): check the broker's access rules for this "
                "client; it stays in the outbox and is retried every %g s",
                event.seq,
                reason,
                self.retry_refused_s,
            )
        if len(self.refused) < REFUSED_MAX:
            self.refused.append((self._monotonic() + self.retry_refused_s, event))
        return None

    def next_retry_in(self) -> float | None:
        """Seconds until a refused event is due again (``None``: none waits)."""
        if not self.refused:
            return None
        return max(0.0, self.refused[0][0] - self._monotonic())
