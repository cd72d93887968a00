"""``dermaguard watch``: a read-only live view of one device's MQTT topics, in the terminal.

Three parts, so that what a person sees can be tested without a broker or a terminal:

* :class:`WatchModel` ingests ``(topic, payload, now)`` and keeps what the view needs. It never
  raises on what arrives over the network: a payload that does not fit the contract is ignored
  and counted, and events are de-duplicated by ``id`` (QoS 1 may deliver one twice).
* :func:`render` turns the model into a rich renderable for a given ``now``; it is pure, so the
  sterilization countdown and the over-pressure flashing are a function of time alone.
* :func:`watch` is the thin shell: a subscriber that never publishes (no will, no birth, its own
  random client id so it can never take the device's session over), a ``rich.live.Live`` loop,
  and ``--once`` for scripts.

``now`` is ``time.monotonic()`` throughout: every duration shown is measured on this machine
between receipts, and every time of day comes from the device's own timestamps, so a laptop
whose clock disagrees with the Pi's (or a simulation on an accelerated clock) shows nothing
contradictory.
"""

from __future__ import annotations

import math
import queue
import secrets
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dermaguard.common.timefmt import format_span
from dermaguard.config.load import ZonesConfig
from dermaguard.core.words import case_word
from dermaguard.mqtt.client import RECONNECT_MAX_S, connection_client
from dermaguard.mqtt.decode import (
    MAX_PAYLOAD,
    Decoded,
    EventLine,
    LastSession,
    Malformed,
    Reading,
    Snapshot,
    decode,
    event_summary,
    topic_names,
)
from dermaguard.mqtt.link import LinkState
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import OFFLINE, ONLINE, Topics

#: Events kept for the "recent events" list.
RECENT_EVENTS: Final = 10
#: Event ids remembered for de-duplication (far more than a reconnect replays).
SEEN_IDS: Final = 4096
#: The gauge runs from 0 to the over-pressure threshold times this.
GAUGE_HEADROOM: Final = 1.3
#: Frames per second in live mode; 4 gives the 2 Hz over-pressure flash of the device LED.
FRAMES_PER_S: Final = 4
#: After the state arrives in ``--once`` mode, wait this long for the other retained topics.
ONCE_GRACE_S: Final = 0.3

LinkStatus = Literal["connecting", "connected", "lost", "refused"]

# The device LED's colours (hw/indicators.py): light blue, ok green, high yellow, over red
# flashing at 2 Hz; an unknown force is yellow like a sensor fault.
ZONE_STYLE: Final[Mapping[str, str]] = {
    "none": "dim",
    "light": "blue",
    "ok": "green",
    "high": "yellow",
    "over": "bold red",
}
UNKNOWN_STYLE: Final = "bold yellow"
_FLASH_STYLE: Final = "bold white on red"

_ALARM_TEXT: Final[Mapping[str, str]] = {
    "over_pressure": "OVER-PRESSURE",
    "sensor_fault": "SENSOR FAULT (force unknown)",
    "unsterile_use": "USED WITHOUT DISINFECTION",
    "sterilization_aborted": "UV-C CYCLE ABORTED",
}
_EVENT_STYLE: Final[Mapping[str, str]] = {
    "over_pressure": "bold red",
    "unsterile_use": "bold red",
    "sensor_fault": "bold red",
    "sterilization_aborted": "bold red",
    "too_soon": "yellow",
    "roller_replace_due": "yellow",
    "over_pressure_cleared": "green",
    "sensor_recovered": "green",
    "sterilization_completed": "green",
}
#: Kept importable from here: the decoder moved to :mod:`dermaguard.mqtt.decode`.
__all__ = [
    "MAX_PAYLOAD",
    "EventLine",
    "LastSession",
    "Reading",
    "Snapshot",
    "WatchError",
    "WatchModel",
    "event_summary",
    "render",
    "watch",
]


# --- the model ------------------------------------------------------------------------------


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


# --- the view -------------------------------------------------------------------------------


def _flash(now: float) -> bool:
    """On a quarter second, off a quarter second: the 2 Hz flash of the device LED's alarm."""
    return int(now * FRAMES_PER_S) % 2 == 0


def _newtons(value: float) -> str:
    return f"{round(value, 2) + 0.0:.2f} N"  # + 0.0: never "-0.00 N" for a resting roller


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(math.ceil(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _time_of_day(moment: datetime, tz: tzinfo | None) -> str:
    try:
        return moment.astimezone(tz).strftime("%H:%M:%S")
    except (OverflowError, ValueError, OSError):  # a far-off year from a confused device
        return moment.strftime("%H:%M:%SZ")


class ForceGauge:
    """A horizontal bar from 0 to ``over_n * 1.3`` in the zone colours, sized to the width.

    The filled part is the force; the rest shows the zone bands faintly, and a scale line
    under it marks each threshold. An unknown force fills nothing and says so.
    """

    def __init__(self, force_n: float | None, zones: ZonesConfig, *, known: bool) -> None:
        self.force_n = force_n
        self.zones = zones
        self.known = known

    def _bands(self) -> list[tuple[float, str]]:
        z = self.zones
        return [(z.contact_n, "light"), (z.ok_n, "ok"), (z.high_n, "high"), (z.over_n, "over")]

    def _zone_at(self, force: float) -> str:
        zone = "none"
        for start, name in self._bands():
            if force >= start:
                zone = name
        return zone

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(10, min(options.max_width, 72))
        top = self.zones.over_n * GAUGE_HEADROOM
        filled = 0
        if self.known and self.force_n is not None:
            filled = max(0, min(width, round(self.force_n / top * width)))
        bar = Text()
        for i in range(width):
            zone = self._zone_at((i + 0.5) / width * top)
            style = ZONE_STYLE[zone] if zone != "none" else "white"
            if i < filled:
                bar.append("█", style=style)
            elif not self.known:
                bar.append("╌", style="dim yellow")
            else:
                bar.append("░" if zone != "none" else "·", style=f"dim {style}")
        if self.known and self.force_n is not None and self.force_n > top:
            bar.append("▶", style="bold red")
        yield bar
        scale = [" "] * (width + 8)
        marks = [(0.0, "0"), *((start, _tick(start)) for start, _ in self._bands())]
        marks.append((top, f"{_tick(top)} N"))
        free_from = 0
        for value, label in marks:
            pos = min(round(value / top * width), width + 8 - len(label))
            if value == top:
                pos = max(pos - len(label) + 1, free_from)
            if pos < free_from:
                continue
            scale[pos : pos + len(label)] = label
            free_from = pos + len(label) + 1
        yield Text("".join(scale).rstrip(), style="dim")


def _tick(value: float) -> str:
    """A threshold as a person writes it: 0.3, 1.0, 4.5, 5.85."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def _force_lines(model: WatchModel, now: float) -> list[RenderableType]:
    reading = model.reading
    offline = model.availability == OFFLINE
    head = Text("Force  ", style="bold")
    if reading is None:
        head.append("no data yet", style="dim")
        return [head, ForceGauge(None, model.zones, known=True)]
    if reading.force_n is None:
        head.append("UNKNOWN", style=UNKNOWN_STYLE if _flash(now) or offline else "yellow")
        head.append("  the force sensor gives no valid reading (not 0 N)", style="yellow")
    else:
        zone = reading.zone or "?"
        style = ZONE_STYLE.get(zone, "")
        if zone == "over" and not offline:
            style = _FLASH_STYLE if _flash(now) else "bold red"
        head.append(_newtons(reading.force_n), style=f"bold {style}".strip())
        head.append("  ")
        label = {"over": "OVER", "none": "none (no contact)"}.get(zone, zone)
        head.append(label, style=style)
    if offline:
        head.append("  (device offline: last known)", style="dim")
    return [head, ForceGauge(reading.force_n, model.zones, known=reading.force_n is not None)]


def _alarm_line(model: WatchModel, now: float) -> Text:
    line = Text("Alarm  ", style="bold")
    snap = model.snapshot
    if snap is None:
        line.append("no data yet", style="dim")
        return line
    if snap.alarm is None:
        line.append("none", style="green")
    else:
        text = _ALARM_TEXT.get(snap.alarm, snap.alarm)
        style = "bold red" if snap.alarm == "over_pressure" else "bold yellow"
        if snap.alarm == "over_pressure" and _flash(now):
            style = _FLASH_STYLE
        line.append(text, style=style)
    if snap.fault is not None:
        line.append(f"  fault: {snap.fault}", style="bold yellow")
    if snap.silenced:
        line.append("  buzzer silenced (the light still shows the alarm)", style="yellow")
    return line


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    return grid


def _case_panel(model: WatchModel, now: float, tz: tzinfo | None) -> Panel:
    grid = _grid()
    snap = model.snapshot
    if snap is None:
        grid.add_row("State", Text("no data yet", style="dim"))
        return Panel(grid, title="Case", title_align="left", box=box.ROUNDED)
    case_style = {"sterilizing": "bold magenta", "sterile": "green", "aborted": "bold red"}
    grid.add_row("State", Text(case_word(snap.case), style=case_style.get(snap.case, "")))
    grid.add_row("UV-C", Text("ON", style="bold magenta") if snap.uv_on else Text("off"))
    lid = "closed" if snap.lid_closed else "open"
    dock = "docked" if snap.docked else "out of the dock"
    grid.add_row("Lid", f"{lid}, roller {dock}")
    remaining = model.remaining_s(now)
    if snap.case == "sterilizing":
        if model.availability == OFFLINE:
            grid.add_row("Cycle", Text("device offline: countdown stopped", style="dim"))
        elif remaining is not None:
            grid.add_row("Cycle", Text(f"{_clock(remaining)} left", style="bold magenta"))
        else:
            grid.add_row("Cycle", "running (ends on the UV dose)")
    if snap.sterile:
        # "until …" alone, not "yes, until …": the longer label must not wrap a half-width panel.
        if snap.sterile_until is not None:
            # Short enough for half of an 80-column terminal: minutes, not seconds.
            until = _time_of_day(snap.sterile_until, tz)[:5]
            disinfected = Text(f"until {until}", style="bold green")
            left = model.sterile_left_s(now)
            if left is not None:
                disinfected.append(f" ({format_span(left)})" if left > 0 else " (expired)")
        else:
            disinfected = Text("yes", style="bold green")
            if snap.docked:
                disinfected.append(", while in the closed case")
    else:
        disinfected = Text("no", style="yellow" if snap.state == "in_use" else "")
    grid.add_row("Disinfected", disinfected)
    return Panel(grid, title="Case", title_align="left", box=box.ROUNDED)


def _session_panel(model: WatchModel, tz: tzinfo | None) -> Panel:
    grid = _grid()
    snap = model.snapshot
    if snap is None:
        grid.add_row("Now", Text("no data yet", style="dim"))
    elif snap.state == "in_use":
        number = f"session {snap.session_no}" if snap.session_no is not None else "session"
        grid.add_row("Now", Text(f"IN USE: {number}", style="bold"))
    else:
        grid.add_row("Now", f"not in use ({snap.state})")
    if snap is not None:
        grid.add_row("Roller", f"{snap.roller_id}, {snap.roller_uses} use(s)")
    last = model.last_session
    if last is None:
        grid.add_row("Last", Text("no session yet", style="dim"))
    else:
        ended = _time_of_day(last.ended_at, tz)
        grid.add_row("Last", f"#{last.session_no}, {ended}, {last.end_reason}")
        grid.add_row(
            "Length", f"{_duration(last.duration_s)}, {_duration(last.contact_s)} in contact"
        )
        peak = _newtons(last.peak_n) if last.peak_n is not None else "unknown"
        mean = f", mean {_newtons(last.mean_n)}" if last.mean_n is not None else ""
        grid.add_row("Force", f"peak {peak}{mean}")
        over = Text(f"{last.over_episodes} episode(s)")
        if last.over_episodes:
            over.stylize("bold red")
            if last.longest_over_s is not None:
                over.append(f", longest {_duration(last.longest_over_s)}")
        grid.add_row("Over", over)
        # One note a row: together they would wrap in half of an 80-column terminal.
        if last.sterile_at_start is False:
            grid.add_row("Note", Text("not disinfected at start", style="yellow"))
        if last.too_soon:
            grid.add_row("Note", Text("too soon after the one before", style="yellow"))
    return Panel(grid, title="Session", title_align="left", box=box.ROUNDED)


def _events_panel(model: WatchModel, tz: tzinfo | None, once: bool) -> Panel:
    events = model.events
    if not events and once:
        # Events are not retained: a one-off look can only show those sent while it waited.
        body: RenderableType = Text(
            "none while --once waited: the broker keeps no past events", style="dim"
        )
    elif not events:
        body = Text("none since watching began", style="dim")
    else:
        # Time and type keep their width; the summary gets what is left, cut with an ellipsis.
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(no_wrap=True, style="dim", width=8)
        table.add_column(no_wrap=True, width=max(len(e.type) for e in events))
        table.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
        for e in events:
            style = _EVENT_STYLE.get(e.type, "")
            table.add_row(_time_of_day(e.ts, tz), Text(e.type, style=style), e.summary)
        body = table
    return Panel(body, title="Recent events", title_align="left", box=box.ROUNDED)


def _header(model: WatchModel, tz: tzinfo | None) -> Text:
    head = Text(model.topics.base, style="bold cyan")
    head.append("  ")
    address = model.address or "broker"
    if model.link == "connected":
        head.append(f"{address} connected", style="green")
    elif model.link == "refused":
        head.append(f"{address} refused the connection", style="bold red")
    elif model.link == "lost":
        head.append(f"connection to {address} lost, reconnecting…", style="bold yellow")
    else:
        head.append(f"connecting to {address}…", style="yellow")
    if model.link_detail and model.link != "connected":
        head.append(f" ({model.link_detail})", style="dim")
    head.append("  device ")
    if model.availability == ONLINE:
        head.append("online", style="bold green")
    elif model.availability == OFFLINE:
        head.append("OFFLINE", style="bold red")
    else:
        head.append("no data yet", style="dim")
    if model.snapshot is not None:
        # The device's own time: a retained state may be much older than its arrival here.
        head.append(f"  state of {_time_of_day(model.snapshot.ts, tz)}", style="dim")
    return head


def render(
    model: WatchModel, now: float, *, tz: tzinfo | None = None, once: bool = False
) -> RenderableType:
    """One frame of the view at ``now`` (monotonic); ``tz`` for times of day (None: local);
    ``once`` for the single frame of ``--once``."""
    parts: list[RenderableType] = [_header(model, tz)]
    parts.append(
        Panel(
            Group(*_force_lines(model, now), _alarm_line(model, now)),
            title="Pressure",
            title_align="left",
            box=box.ROUNDED,
        )
    )
    pair = Table.grid(expand=True, padding=(0, 0))
    pair.add_column(ratio=1)
    pair.add_column(ratio=1)
    pair.add_row(_case_panel(model, now, tz), _session_panel(model, tz))
    parts.append(pair)
    parts.append(_events_panel(model, tz, once))
    if model.malformed:
        parts.append(
            Text(
                f"{model.malformed} malformed message(s) ignored (last: {model.last_malformed})",
                style="yellow",
            )
        )
    return Group(*parts)


# --- the MQTT shell -------------------------------------------------------------------------


class WatchError(Exception):
    """The watch cannot go on (broker unreachable or refusing, in ``--once`` mode)."""


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    t: float


@dataclass(frozen=True, slots=True)
class _Link:
    status: LinkStatus
    detail: str | None = None


_Inbox = queue.SimpleQueue[_Message | _Link]


def watch_topics(topics: Topics) -> list[tuple[str, int]]:
    """The subscriptions, the state last: a broker sends retained messages in the order of
    the filters, so by the time the state arrives the other retained topics have too."""
    return [
        (topics.availability, 1),
        (topics.session_last, 1),
        (topics.event, 1),
        (topics.force, 0),
        (topics.state, 1),
    ]


def subscriber_client(settings: MqttSettings, client_id: str | None = None) -> mqtt.Client:
    """A paho client with the device's credentials and TLS but none of its identity.

    Unlike :func:`dermaguard.mqtt.client.make_client` it sets no last will (the watcher must
    never write the device's availability), uses a random client id (the device's id would
    disconnect the device) and a clean session that ends with the connection.
    """
    return connection_client(settings, client_id or f"dermaguard-watch-{secrets.token_hex(4)}")


class _Subscriber:
    """Connects (retrying, with the reason of each failure), subscribes, forwards to a queue.

    The first connection is made here rather than by paho's loop, because paho's retry loop
    does not say *why* a connection failed and a person needs to see "connection refused" or
    "name not known". Once connected, paho's loop reconnects by itself.
    """

    def __init__(self, settings: MqttSettings, inbox: _Inbox, connect_timeout: float) -> None:
        self.settings = settings
        self.inbox = inbox
        self.client = subscriber_client(settings)
        self.client.connect_timeout = connect_timeout
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._looping = False
        # paho calls back on one thread: the CONNACK, then the broker closing the socket.
        self._link = LinkState()
        self._thread = threading.Thread(target=self._connect, name="watch-connect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _connect(self) -> None:
        s = self.settings
        delay = 0.5
        while not self._stopping.is_set():
            try:
                if s.version == "5":
                    self.client.connect(s.host, s.port, s.keepalive_s, clean_start=True)
                else:
                    self.client.connect(s.host, s.port, s.keepalive_s)
            except (OSError, ValueError) as exc:
                self.inbox.put(_Link("connecting", _os_reason(exc)))
                self._stopping.wait(delay)
                delay = min(delay * 2, float(RECONNECT_MAX_S))
                continue
            with self._lock:
                if not self._stopping.is_set():
                    self.client.loop_start()
                    self._looping = True
            return

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            looping = self._looping
        if looping:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        status, detail = self._link.connected(reason_code)
        if status == "connected":
            client.subscribe(watch_topics(self.settings.topics))
        self.inbox.put(_Link(status, detail))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        change = self._link.disconnected(reason_code)
        if change is not None and not self._stopping.is_set():
            self.inbox.put(_Link(*change))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(_Message(msg.topic, bytes(msg.payload), time.monotonic()))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


def _drain(inbox: _Inbox, model: WatchModel, wait_s: float) -> None:
    """Apply everything queued, waiting up to ``wait_s`` for the first item."""
    items: list[_Message | _Link] = []
    try:
        items.append(inbox.get(timeout=max(0.0, wait_s)))
        while True:
            items.append(inbox.get_nowait())
    except queue.Empty:
        pass
    for item in items:
        if isinstance(item, _Message):
            model.ingest(item.topic, item.payload, item.t)
        else:
            model.set_link(item.status, item.detail)


def watch(
    settings: MqttSettings,
    zones: ZonesConfig,
    *,
    once: bool = False,
    timeout: float = 5.0,
    console: Console | None = None,
) -> int:
    """Run the view until Ctrl-C (0), or with ``once`` print one frame and return.

    ``once``: 0 when the state arrived, 1 when connected but no state arrived in ``timeout``;
    :class:`WatchError` when the broker could not be reached or refused the connection.
    """
    console = console or Console()
    inbox: _Inbox = queue.SimpleQueue()
    model = WatchModel(settings.topics, zones=zones, address=settings.address)
    sub = _Subscriber(settings, inbox, connect_timeout=min(5.0, max(1.0, timeout)))
    # SIGTERM ends the view like Ctrl-C, so the terminal gets its cursor back.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    sub.start()
    try:
        if once:
            return _once(model, inbox, timeout, console)
        _live(model, inbox, console)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        sub.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _once(model: WatchModel, inbox: _Inbox, timeout: float, console: Console) -> int:
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    while True:
        now = time.monotonic()
        if model.link == "refused":
            raise WatchError(
                f"the MQTT broker at {model.address} refused the connection: {model.link_detail}"
            )
        if done_at is None and model.snapshot is not None:
            done_at = now + ONCE_GRACE_S
        end = done_at if done_at is not None else deadline
        if now >= end:
            break
        _drain(inbox, model, min(end - now, 0.1))
    if not model.ever_connected:
        reason = f": {model.link_detail}" if model.link_detail else ""
        raise WatchError(
            f"cannot reach the MQTT broker at {model.address} within {timeout:g} s{reason}"
        )
    console.print(render(model, time.monotonic(), once=True))
    if model.snapshot is None:
        print(
            f"dermaguard: no state on {model.topics.state} within {timeout:g} s "
            "(is the device running, and is --device right?)",
            file=sys.stderr,
        )
        return 1
    return 0


def _live(model: WatchModel, inbox: _Inbox, console: Console) -> None:
    period = 1.0 / FRAMES_PER_S
    with Live(
        _with_hint(render(model, time.monotonic())),
        console=console,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as live:
        next_frame = time.monotonic()
        while True:
            _drain(inbox, model, next_frame - time.monotonic())
            now = time.monotonic()
            if now >= next_frame:
                live.update(_with_hint(render(model, now)), refresh=True)
                next_frame = now + period


def _with_hint(frame: RenderableType) -> RenderableType:
    return Group(frame, Text("read-only view · Ctrl-C to quit", style="dim"))
