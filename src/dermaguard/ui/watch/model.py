"""What ``dermaguard watch`` (and the dashboard) knows about one device: state built from the
decoded MQTT messages. Pure and single-threaded: no I/O, no clock of its own (``now`` is given).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Final, Literal

from dermaguard.config.load import ZonesConfig
from dermaguard.mqtt.decode import (
    Decoded,
    EventLine,
    LastSession,
    Malformed,
    Reading,
    Snapshot,
    decode,
    topic_names,
)
from dermaguard.mqtt.topics import Topics

#: Events kept for the "recent events" list.
RECENT_EVENTS: Final = 10
#: Event ids remembered for de-duplication (far more than a reconnect replays).
SEEN_IDS: Final = 4096

#: The connection to the broker, as the subscriber reports it.
LinkStatus = Literal["connecting", "connected", "lost", "refused"]


class WatchModel:
    """What the watcher knows about one device, from what arrived and when (``now``).

    Single-threaded and pure: the shell feeds it from one thread; nothing here does I/O.
    """

    def __init__(
        self,
        topics: Topics,
        *,
        zones: ZonesConfig | None = None,
        address: str = "",
        max_events: int = RECENT_EVENTS,
    ) -> None:
        self.topics = topics
        self.zones = zones if zones is not None else ZonesConfig()
        self.address = address
        self._names = topic_names(topics)
        self.snapshot: Snapshot | None = None
        self.snapshot_at: float | None = None
        self.reading: Reading | None = None
        self.availability: str | None = None
        self.last_session: LastSession | None = None
        self._events: deque[EventLine] = deque(maxlen=max_events)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.messages = 0
        self.duplicates = 0
        self.malformed = 0
        self.last_malformed: str | None = None
        self.link: LinkStatus = "connecting"
        self.link_detail: str | None = None
        self.ever_connected = False

    @property
    def events(self) -> list[EventLine]:
        """The recent events, newest first."""
        return list(reversed(self._events))

    def set_link(self, status: LinkStatus, detail: str | None = None) -> None:
        """The connection to the broker changed (the shell tells; nothing is inferred)."""
        self.link = status
        self.link_detail = detail
        if status == "connected":
            self.ever_connected = True

    def ingest(self, topic: str, payload: bytes, now: float) -> bool:
        """Take one message; False when it was ignored (malformed, duplicate, other topic)."""
        name = self._names.get(topic)
        if name is None:
            return False
        self.messages += 1
        try:
            decoded = decode(name, bytes(payload), now)
        except Malformed as exc:
            self.malformed += 1
            self.last_malformed = f"{name}: {exc}"
            return False
        return self.apply(decoded, now)

    def apply(self, decoded: Decoded, now: float) -> bool:
        """Take one decoded message; False for an event already seen."""
        value = decoded.value
        if decoded.name == "availability":
            assert value is None or isinstance(value, str)
            self.availability = value
        elif decoded.name == "state":
            assert value is None or isinstance(value, Snapshot)
            self.snapshot = value
            self.snapshot_at = None if value is None else now
            if value is not None:
                self.reading = Reading(value.force_n, value.zone, now)
        elif decoded.name == "force":
            assert isinstance(value, Reading)
            self.reading = value
        elif decoded.name == "session/last":
            assert value is None or isinstance(value, LastSession)
            self.last_session = value
        else:
            assert isinstance(value, EventLine)
            if value.id in self._seen:
                self.duplicates += 1
                return False
            self._seen[value.id] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            self._events.append(value)
        return True

    def remaining_s(self, now: float) -> float | None:
        """The sterilization time left, counted down here between state updates."""
        snap = self.snapshot
        if snap is None or snap.case != "sterilizing" or snap.remaining_s is None:
            return None
        assert self.snapshot_at is not None
        return max(0.0, snap.remaining_s - (now - self.snapshot_at))

    def sterile_left_s(self, now: float) -> float | None:
        """Sterility left, measured on the device's clock when it sent the state, then here."""
        snap = self.snapshot
        if snap is None or not snap.sterile or snap.sterile_until is None:
            return None
        assert self.snapshot_at is not None
        left = (snap.sterile_until - snap.ts).total_seconds() - (now - self.snapshot_at)
        return max(0.0, left)
