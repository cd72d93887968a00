"""The text view of ``dermaguard watch``: one rich frame from a :class:`WatchModel` and ``now``.

Pure, so the sterilization countdown and the over-pressure flashing are a function of time
alone, and a frame can be tested without a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Final

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dermaguard.common.timefmt import format_span
from dermaguard.config.load import ZonesConfig
from dermaguard.core.events import EventType
from dermaguard.core.words import case_word
from dermaguard.mqtt.topics import OFFLINE, ONLINE
from dermaguard.ui.watch.model import WatchModel

#: The gauge runs from 0 to the over-pressure threshold times this.
GAUGE_HEADROOM: Final = 1.3
#: Frames per second in live mode; 4 gives the 2 Hz over-pressure flash of the device LED.
FRAMES_PER_S: Final = 4

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

# An alarm is named by the event that raised it (mqtt/schemas/state.json, "alarm").
_ALARM_TEXT: Final[Mapping[str, str]] = {
    EventType.OVER_PRESSURE: "OVER-PRESSURE",
    EventType.SENSOR_FAULT: "SENSOR FAULT (force unknown)",
    EventType.CASE_FAULT: "UV-C CASE FAULT (UV off)",
    EventType.UNSTERILE_USE: "USED WITHOUT DISINFECTION",
    EventType.STERILIZATION_ABORTED: "UV-C CYCLE ABORTED",
}
_EVENT_STYLE: Final[Mapping[str, str]] = {
    EventType.OVER_PRESSURE: "bold red",
    EventType.UNSTERILE_USE: "bold red",
    EventType.SENSOR_FAULT: "bold red",
    EventType.CASE_FAULT: "bold red",
    EventType.STERILIZATION_ABORTED: "bold red",
    EventType.THREAD_FAILED: "bold red",
    EventType.TOO_SOON: "yellow",
    EventType.ROLLER_REPLACE_DUE: "yellow",
    EventType.OVER_PRESSURE_CLEARED: "green",
    EventType.SENSOR_RECOVERED: "green",
    EventType.STERILIZATION_COMPLETED: "green",
}


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
        style = "bold red" if snap.alarm == EventType.OVER_PRESSURE else "bold yellow"
        if snap.alarm == EventType.OVER_PRESSURE and _flash(now):
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
        if snap.passes is not None:
            grid.add_row("Passes", _passes_now(snap.passes, snap.pass_force_n))
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
        grid.add_row("Passes", _passes_last(last.passes, last.pass_force_n, last.steadiness_cv))
        # One note a row: together they would wrap in half of an 80-column terminal.
        if last.sterile_at_start is False:
            grid.add_row("Note", Text("not disinfected at start", style="yellow"))
        if last.too_soon:
            grid.add_row("Note", Text("too soon after the one before", style="yellow"))
    return Panel(grid, title="Session", title_align="left", box=box.ROUNDED)


def _passes_now(passes: int, force_n: float | None) -> str:
    """The open session's passes and the force of the latest pass (running or just over)."""
    force = "" if force_n is None else f", latest pass {_newtons(force_n)}"
    return f"{passes}{force}"


def _passes_last(passes: int | None, force_n: float | None, cv: float | None) -> Text:
    """The last session's passes and steadiness; a session from before they were measured
    says unknown, never 0."""
    if passes is None:
        return Text("unknown (not measured)", style="dim")
    text = Text(str(passes))
    if force_n is not None:
        text.append(f", median {_newtons(force_n)}")
    if cv is not None:
        text.append(f", spread {cv * 100:.0f} %")
    return text


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


class _Phrases:
    """Phrases on one line, separated by two spaces, that break between phrases only: a pipe or
    a service gets 80 columns, and "state of 10:00:00" must not lose its time to the next line."""

    def __init__(self, phrases: list[Text]) -> None:
        self.phrases = phrases

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = Text()
        for phrase in self.phrases:
            if line and line.cell_len + 2 + phrase.cell_len > options.max_width:
                yield line
                line = Text()
            if line:
                line.append("  ")
            line.append_text(phrase)
        if line:
            yield line


def _header(model: WatchModel, tz: tzinfo | None) -> _Phrases:
    phrases = [Text(model.topics.base, style="bold cyan")]
    address = model.address or "broker"
    if model.link == "connected":
        link = Text(f"{address} connected", style="green")
    elif model.link == "refused":
        link = Text(f"{address} refused the connection", style="bold red")
    elif model.link == "lost":
        link = Text(f"connection to {address} lost, reconnecting…", style="bold yellow")
    else:
        link = Text(f"connecting to {address}…", style="yellow")
    if model.link_detail and model.link != "connected":
        link.append(f" ({model.link_detail})", style="dim")
    phrases.append(link)
    device = Text("device ")
    if model.availability == ONLINE:
        device.append("online", style="bold green")
    elif model.availability == OFFLINE:
        device.append("OFFLINE", style="bold red")
    else:
        device.append("no data yet", style="dim")
    phrases.append(device)
    if model.snapshot is not None:
        # The device's own time: a retained state may be much older than its arrival here.
        phrases.append(Text(f"state of {_time_of_day(model.snapshot.ts, tz)}", style="dim"))
    return _Phrases(phrases)


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
