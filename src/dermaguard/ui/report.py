"""Session and calendar charts as PNG files, for the user to look at after rolling.

Rendered with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``) and never through
``pyplot``: the daemon is headless and may draw from any thread, and pyplot's global state (the
current figure, the chosen GUI backend) is neither thread-safe nor wanted on a Pi without a
display. Files are written atomically so a viewer or a sync job never sees half a PNG.

Unknown force (``None``) is drawn as a gap with a hatched band, never as zero: a sensor fault
must not look like "no pressure" in the history either.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from dermaguard.common.timefmt import format_span, parse_utc, to_local
from dermaguard.ui.history_view import as_float, format_duration

TraceSample = tuple[float, float | None, str | None]

#: Pixel size of the session chart (width, height) at ``_DPI``.
SESSION_SIZE_PX = (1200, 600)
_DPI = 100
_CAL_WIDTH_PX = 1200
_CAL_ROW_PX = 100
_CAL_EXTRA_PX = 200  # title, weekday header and legend
MAX_CALENDAR_WEEKS = 104

# Zone band colours: calm to alarming, light enough that the force line stays readable; high
# is yellow and over a stronger red, so the two bands never look alike.
_ZONE_COLOURS = {"light": "#9ecae1", "ok": "#74c476", "high": "#ffd92f", "over": "#e31a1c"}
_ZONE_ALPHA = {"light": 0.18, "ok": 0.18, "high": 0.25, "over": 0.30}
_OVER_SPAN = "#d62728"
_FAULT_GREY = "#7f7f7f"
_FORCE_LINE = "#08306b"
_STERILE_OK = "#1a7f37"
_ALERT = "#c0151b"
_UNSTERILE = "#7b2cbf"
_TOO_SOON = "#e67e00"
_EN_DASH = "\u2013"


class ReportError(Exception):
    """A chart cannot be made from what was given (unknown session, no trace, bad input)."""


class ZoneThresholdsLike(Protocol):
    """Anything with the zone lower bounds in newtons, e.g. ``core.zones.ZoneThresholds``."""

    @property
    def contact_n(self) -> float: ...
    @property
    def ok_n(self) -> float: ...
    @property
    def high_n(self) -> float: ...
    @property
    def over_n(self) -> float: ...


ZoneLimits = ZoneThresholdsLike | Mapping[str, float]

_LIMIT_KEYS = ("contact_n", "ok_n", "high_n", "over_n")


def _limits(zones: ZoneLimits) -> tuple[float, float, float, float]:
    """(contact, ok, high, over) in newtons, checked to rise, so the bands match the config."""
    values: list[float | None] = []
    for key in _LIMIT_KEYS:
        raw = zones.get(key) if isinstance(zones, Mapping) else getattr(zones, key, None)
        values.append(as_float(raw))
    if any(v is None for v in values):
        missing = [k for k, v in zip(_LIMIT_KEYS, values, strict=True) if v is None]
        raise ReportError(f"zone thresholds lack a number for {', '.join(missing)}")
    contact, ok, high, over = (float(v) for v in values if v is not None)
    if not 0 <= contact < ok < high < over:
        raise ReportError(
            "zone thresholds must rise: 0 <= contact_n < ok_n < high_n < over_n, got "
            f"{contact}, {ok}, {high}, {over}"
        )
    return contact, ok, high, over


def _new_figure(width_px: int, height_px: int) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no GUI backend, no global state."""
    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_output(out: Path) -> None:
    """Refuse, before any work, a name this module cannot write: only PNG, into a directory
    that exists."""
    if out.suffix.lower() != ".png":
        raise ReportError(
            f"-o {out}: reports are PNG images only; give a name ending in .png "
            f"(e.g. {out.with_suffix('.png').name})"
        )
    if not out.parent.is_dir():
        raise ReportError(f"-o {out}: the directory {out.parent} does not exist")


def _save_png(fig: Figure, out: Path, title: str) -> Path:
    """Write ``fig`` to ``out`` via a temp file in the same directory and an atomic rename.

    A missing directory is an error, not created: a typo in ``-o`` must not scatter folders.
    """
    out = Path(out)
    check_output(out)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=_DPI, metadata={"Title": title})
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# --- session chart -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trace:
    """A trace made plottable: sorted times, NaN for unknown force, and the spans to shade."""

    t: np.ndarray[Any, np.dtype[np.float64]]
    force: np.ndarray[Any, np.dtype[np.float64]]
    end_s: float
    unknown: list[tuple[float, float]]
    over: list[tuple[float, float]]


def _runs(
    flags: Sequence[bool], starts: Sequence[float], ends: Sequence[float]
) -> list[tuple[float, float]]:
    """Merge consecutive flagged samples into (start, end) time spans."""
    spans: list[tuple[float, float]] = []
    run_start: float | None = None
    last_end = 0.0
    for flag, start, end in zip(flags, starts, ends, strict=True):
        if flag and run_start is None:
            run_start = start
        if not flag and run_start is not None:
            spans.append((run_start, start))
            run_start = None
        if flag:
            last_end = end
    if run_start is not None:
        spans.append((run_start, last_end))
    return spans


def _prepare_trace(trace: Sequence[TraceSample]) -> _Trace:
    """Sort, treat NaN/inf force as unknown, and find fault stretches and over-pressure runs.

    A hole in the sampling itself (several periods without a sample) is unknown force too,
    since nothing was measured there.
    """
    samples = sorted(
        ((float(t), as_float(f), z) for t, f, z in trace if as_float(t) is not None),
        key=lambda s: s[0],
    )
    if not samples:
        raise ReportError("the force trace has no sample with a valid time")
    times = [s[0] for s in samples]
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    period = float(np.median(steps)) if steps else 0.1
    hole = max(1.0, 5 * period)

    t_out: list[float] = []
    f_out: list[float] = []
    unknown_flags: list[bool] = []
    over_flags: list[bool] = []
    starts: list[float] = []
    ends: list[float] = []
    for i, (t, force, zone) in enumerate(samples):
        nxt = times[i + 1] if i + 1 < len(samples) else t + period
        gap = nxt - t > hole
        end = t + period if gap else nxt
        t_out.append(t)
        f_out.append(math.nan if force is None else force)
        unknown_flags.append(force is None)
        over_flags.append(zone == "over")
        starts.append(t)
        ends.append(end)
        if gap:  # a hole in the sampling: break the line and shade it as unknown
            t_out.append(end)
            f_out.append(math.nan)
            unknown_flags.append(True)
            over_flags.append(False)
            starts.append(end)
            ends.append(nxt)
    return _Trace(
        t=np.asarray(t_out, dtype=np.float64),
        force=np.asarray(f_out, dtype=np.float64),
        end_s=ends[-1],
        unknown=_runs(unknown_flags, starts, ends),
        over=_runs(over_flags, starts, ends),
    )


def _sterility_line(summary: Mapping[str, Any]) -> tuple[str, str]:
    sterile = summary.get("sterile_at_start")
    cycle = summary.get("cycle_id")
    if sterile is True:
        text = (
            f"disinfected at start (cycle {cycle})"
            if isinstance(cycle, int)
            else "disinfected at start"
        )
        return text, _STERILE_OK
    if sterile is False:
        return "NOT disinfected at start", _ALERT
    return "disinfection at start unknown", _FAULT_GREY


def _session_details(summary: Mapping[str, Any], episodes: int) -> str:
    parts = [f"{episodes} over-pressure episode{'s' if episodes != 1 else ''}"]
    longest = as_float(summary.get("longest_over_s"))
    if episodes and longest:
        parts[0] += f" (longest {longest:.1f} s)"
    if summary.get("too_soon") is True:
        rest = as_float(summary.get("rest_interval_s"))
        parts.append(f"too soon (rest {format_span(rest)})" if rest is not None else "too soon")
    status = summary.get("status")
    if status in ("interrupted", "open"):
        parts.append(str(status))
    use = summary.get("roller_use")
    if isinstance(use, int):
        parts.append(f"roller use {use}")
    return " · ".join(parts)


def _draw_session(
    ax: Axes,
    summary: Mapping[str, Any],
    data: _Trace,
    limits: tuple[float, float, float, float],
    tz: tzinfo | None,
) -> str:
    """Draw everything on ``ax``; returns the title (also used as PNG metadata)."""
    contact, ok, high, over = limits
    known = data.force[~np.isnan(data.force)]
    trace_peak = float(known.max()) if known.size else None
    summary_peak = as_float(summary.get("peak_n"))
    peak = summary_peak if summary_peak is not None else trace_peak
    top = max(over * 1.3, (trace_peak or 0.0) * 1.1, (peak or 0.0) * 1.1)
    lowest = float(known.min()) if known.size else 0.0
    bottom = lowest - 0.05 * top if lowest < 0 else 0.0  # negative force: a tare drift to see
    end = max(data.end_s, as_float(summary.get("duration_s")) or 0.0)

    for zone, low, high_edge in (
        ("light", contact, ok),
        ("ok", ok, high),
        ("high", high, over),
        ("over", over, top),
    ):
        label = f"{zone} zone (≥ {low:g} N)" if zone == "over" else f"{zone} zone"
        if zone != "over":
            label += f" ({low:g}{_EN_DASH}{high_edge:g} N)"
        ax.axhspan(
            low, high_edge, color=_ZONE_COLOURS[zone], alpha=_ZONE_ALPHA[zone], lw=0, label=label
        )
    ax.axhline(over, color=_OVER_SPAN, lw=1.0, ls="--", alpha=0.8)

    for i, (a, b) in enumerate(data.unknown):
        ax.axvspan(
            a,
            b,
            facecolor=_FAULT_GREY,
            alpha=0.25,
            hatch="//",
            edgecolor=_FAULT_GREY,
            lw=0,
            label="sensor fault / force unknown" if i == 0 else None,
        )
    for i, (a, b) in enumerate(data.over):
        ax.axvspan(
            a,
            b,
            color=_OVER_SPAN,
            alpha=0.28,
            lw=0,
            label="over-pressure episode" if i == 0 else None,
        )

    ax.plot(data.t, data.force, color=_FORCE_LINE, lw=1.4, label="force")
    if trace_peak is not None:
        i_peak = int(np.nanargmax(data.force))
        t_peak = float(data.t[i_peak])
        ax.plot([t_peak], [trace_peak], "v", color=_ALERT, ms=8, label="peak")
        # The summary's peak comes from the full-rate signal; the ~10 Hz trace can miss its top.
        note = f"peak {trace_peak:.2f} N"
        if summary_peak is not None and abs(summary_peak - trace_peak) >= 0.005:
            note = f"highest traced {trace_peak:.2f} N (session peak {summary_peak:.2f} N)"
        ax.annotate(
            note,
            (t_peak, trace_peak),
            xytext=(6, 8),
            textcoords="offset points",
            fontsize=10,
            color=_ALERT,
        )
    else:
        ax.text(
            0.5,
            0.55,
            "no force reading in this session: force unknown throughout",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=13,
            color="#444444",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": _FAULT_GREY},
        )

    ax.set_xlim(0, end if end > 0 else 1.0)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("time since session start (s)", fontsize=11)
    ax.set_ylabel("force (N)", fontsize=11)
    ax.grid(True, alpha=0.3, lw=0.6)
    handles, labels = ax.get_legend_handles_labels()
    ax.figure.legend(handles, labels, loc="outside right upper", fontsize=10, frameon=False)

    number = summary.get("session_no")
    started = parse_utc(summary.get("started_at"))
    when = to_local(started, tz).strftime("%Y-%m-%d %H:%M") if started else "unknown date"
    duration = format_duration(summary.get("duration_s") or data.end_s)
    peak_text = f"peak {peak:.2f} N" if peak is not None else "peak unknown"
    title = f"Session {number} · {when} · {duration} · {peak_text}"
    sterile_text, sterile_colour = _sterility_line(summary)
    ax.set_title(title, loc="left", fontsize=14, fontweight="bold", pad=26)
    ax.text(
        0.0,
        1.015,
        sterile_text,
        transform=ax.transAxes,
        ha="left",
        va="bottom",
        fontsize=12,
        fontweight="bold",
        color=sterile_colour,
    )
    ax.text(
        1.0,
        1.015,
        _session_details(summary, len(data.over)),
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=11,
        color="#333333",
    )
    return title


def session_figure(
    summary: Mapping[str, Any] | None,
    trace: Sequence[TraceSample] | None,
    zones: ZoneLimits,
    out: Path,
    *,
    tz: tzinfo | None = None,
) -> Path:
    """Draw one session's force over time to a 1200 x 600 px PNG at ``out``; returns ``out``.

    ``summary`` is ``None`` for a session the store does not know. Raises :class:`ReportError`
    for an unknown session, a missing or empty trace, bad thresholds or an unwritable ``out``.
    """
    fig = build_session_figure(summary, trace, zones, tz=tz)
    return _save_png(fig, out, str(fig.get_label()))


def build_session_figure(
    summary: Mapping[str, Any] | None,
    trace: Sequence[TraceSample] | None,
    zones: ZoneLimits,
    *,
    tz: tzinfo | None = None,
) -> Figure:
    """The session chart as an unsaved figure (for embedding, and for tests)."""
    if summary is None:
        raise ReportError("unknown session: there is no stored summary for it")
    number = summary.get("session_no")
    if not trace:
        raise ReportError(f"session {number} has no stored force trace")
    limits = _limits(zones)
    data = _prepare_trace(trace)
    fig = _new_figure(*SESSION_SIZE_PX)
    title = _draw_session(fig.add_subplot(), summary, data, limits, tz)
    fig.set_label(title)
    return fig


# --- calendar -----------------------------------------------------------------------------------


@dataclass
class _Day:
    """What happened on one calendar day."""

    sessions: int = 0
    interrupted: int = 0
    over: bool = False
    unsterile: bool = False
    too_soon: bool = False
    peak_n: float | None = None
    shortest_rest_s: float | None = None


def calendar_size_px(weeks: int) -> tuple[int, int]:
    """The calendar PNG's (width, height): fixed width, one row per week."""
    return _CAL_WIDTH_PX, _CAL_EXTRA_PX + _CAL_ROW_PX * weeks


def _days(sessions: Sequence[Mapping[str, Any]], tz: tzinfo | None) -> dict[date, _Day]:
    """Per local day: counts, alert flags, highest peak and shortest rest before a session.

    The rest is the stored ``rest_interval_s`` or, for older records, the time since the
    previous session's end (or start), so it also spans sessions outside the shown weeks.
    """
    dated = sorted(
        ((started, s) for s in sessions if (started := parse_utc(s.get("started_at")))),
        key=lambda pair: pair[0],
    )
    days: dict[date, _Day] = {}
    previous: Mapping[str, Any] | None = None
    previous_start: datetime | None = None
    for started, s in dated:
        day = days.setdefault(to_local(started, tz).date(), _Day())
        day.sessions += 1
        day.interrupted += s.get("status") == "interrupted"
        day.over = day.over or (as_float(s.get("over_episodes")) or 0) > 0
        day.unsterile = day.unsterile or s.get("sterile_at_start") is False
        day.too_soon = day.too_soon or s.get("too_soon") is True
        peak = as_float(s.get("peak_n"))
        if peak is not None:
            day.peak_n = peak if day.peak_n is None else max(day.peak_n, peak)
        rest = as_float(s.get("rest_interval_s"))
        if rest is None and previous is not None and previous_start is not None:
            since = parse_utc(previous.get("ended_at")) or previous_start
            rest = max(0.0, (started - since).total_seconds())
        if rest is not None:
            day.shortest_rest_s = (
                rest if day.shortest_rest_s is None else min(day.shortest_rest_s, rest)
            )
        previous, previous_start = s, started
    return days


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def rest_text(seconds: float) -> str:
    """The rest in the unit that shows it: minutes and hours read as such, never ``0.0 d``."""
    if seconds < 3_600:
        return f"rest {round(seconds / 60)} min"
    if seconds < 86_400:
        return f"rest {seconds / 3_600:.1f} h"
    days = seconds / 86_400
    return f"rest {days:.1f} d" if days < 10 else f"rest {days:.0f} d"


def _draw_cell(ax: Axes, *, col: int, row: int, day: date, info: _Day | None, state: str) -> None:
    """One day: a tile, its date, alert markers, and peak and rest for session days."""
    fill = {"future": "white", "past": "#f1f3f5", "session": "#b7e4c7"}[state]
    edge = "#c9ced3"
    hatch = None
    if info is not None and info.interrupted == info.sessions:
        fill, hatch = "#e2f2e7", "..."
    ax.add_patch(
        Rectangle(
            (col - 0.46, row - 0.44),
            0.92,
            0.88,
            facecolor=fill,
            edgecolor=edge,
            lw=1.0,
            hatch=hatch,
        )
    )
    label = f"{day.day} {day:%b}" if day.day == 1 or (row == 0 and col == 0) else str(day.day)
    colour = "#adb5bd" if state == "future" else "#212529"
    ax.text(col - 0.40, row - 0.30, label, fontsize=10, color=colour, ha="left", va="center")
    if info is None:
        return
    markers = [
        (info.over, "^", _ALERT),
        (info.unsterile, "X", _UNSTERILE),
        (info.too_soon, "D", _TOO_SOON),
    ]
    x = col + 0.36
    for shown, marker, mcolour in markers:
        if shown:
            ax.plot([x], [row - 0.28], marker=marker, color=mcolour, ms=9, ls="none")
            x -= 0.14
    peak = f"peak {info.peak_n:.1f} N" if info.peak_n is not None else "peak —"
    y = row + 0.02
    if info.sessions > 1:
        ax.text(
            col,
            row - 0.1,
            f"{info.sessions} sessions",
            fontsize=9.5,
            ha="center",
            va="center",
            fontweight="bold",
            color="#212529",
        )
        y = row + 0.08
    ax.text(col, y, peak, fontsize=9.5, ha="center", va="center", color="#212529")
    if info.shortest_rest_s is not None:
        ax.text(
            col,
            row + 0.27,
            rest_text(info.shortest_rest_s),
            fontsize=9,
            ha="center",
            va="center",
            color=_TOO_SOON if info.too_soon else "#495057",
        )


def _calendar_legend() -> list[Patch | Line2D]:
    return [
        Patch(facecolor="#b7e4c7", edgecolor="#c9ced3", label="session day"),
        Patch(facecolor="#e2f2e7", edgecolor="#c9ced3", hatch="...", label="interrupted only"),
        Line2D([], [], marker="^", color=_ALERT, ls="none", ms=9, label="over-pressure alert"),
        Line2D(
            [], [], marker="X", color=_UNSTERILE, ls="none", ms=9, label="NOT disinfected at start"
        ),
        Line2D([], [], marker="D", color=_TOO_SOON, ls="none", ms=8, label="too soon (short rest)"),
        Patch(facecolor="white", edgecolor="#212529", lw=2.0, label="today"),
    ]


def build_calendar_figure(
    sessions: Sequence[Mapping[str, Any]],
    weeks: int,
    today: date | None = None,
    *,
    tz: tzinfo | None = None,
) -> Figure:
    """The calendar as an unsaved figure (for embedding, and for tests)."""
    if (
        isinstance(weeks, bool)
        or not isinstance(weeks, int)
        or not 1 <= weeks <= MAX_CALENDAR_WEEKS
    ):
        raise ReportError(
            f"weeks must be a whole number from 1 to {MAX_CALENDAR_WEEKS}, got {weeks}"
        )
    today = today or datetime.now(tz).date()
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    last = first + timedelta(days=7 * weeks - 1)
    days = _days(sessions, tz)
    shown = {d: info for d, info in days.items() if first <= d <= today}

    fig = _new_figure(*calendar_size_px(weeks))
    ax = fig.add_subplot()
    for row in range(weeks):
        for col in range(7):
            day = first + timedelta(days=7 * row + col)
            info = shown.get(day)
            state = "future" if day > today else ("session" if info else "past")
            _draw_cell(ax, col=col, row=row, day=day, info=info, state=state)
            if day == today:
                ax.add_patch(
                    Rectangle(
                        (col - 0.46, row - 0.44),
                        0.92,
                        0.88,
                        fill=False,
                        edgecolor="#212529",
                        lw=2.2,
                    )
                )

    ax.set_xlim(-0.5, 6.5)
    ax.set_ylim(weeks - 0.5, -0.5)
    ax.xaxis.tick_top()
    ax.set_xticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], fontsize=11)
    mondays = [first + timedelta(weeks=r) for r in range(weeks)]
    week_labels = [f"{d.day} {d:%b}" for d in mondays]
    ax.set_yticks(range(weeks), week_labels, fontsize=10)
    ax.set_ylabel("week starting", fontsize=11)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)

    count = sum(i.sessions for i in shown.values())
    sub = [_plural(count, "session")]
    for n, what in (
        (sum(i.over for i in shown.values()), "with over-pressure"),
        (sum(i.unsterile for i in shown.values()), "started without disinfection"),
        (sum(i.too_soon for i in shown.values()), "too soon after the one before"),
    ):
        if n:
            sub.append(f"{_plural(n, 'day')} {what}")
    if not count:
        sub = ["no sessions in this week" if weeks == 1 else "no sessions in these weeks"]
    span = f"{first.day} {first:%b %Y} {_EN_DASH} {last.day} {last:%b %Y}"
    title = f"Derma-rolling calendar, {span} ({_plural(weeks, 'week')})"
    fig.suptitle(f"{title}\n{' · '.join(sub)}", fontsize=13)
    fig.legend(
        handles=_calendar_legend(),
        loc="outside lower center",
        ncols=6,
        fontsize=10,
        frameon=False,
    )
    fig.set_label(title)
    return fig


def calendar_figure(
    sessions: Sequence[Mapping[str, Any]],
    weeks: int,
    out: Path,
    today: date | None = None,
    *,
    tz: tzinfo | None = None,
) -> Path:
    """Draw the last ``weeks`` weeks (Monday to Sunday rows, current week last) to ``out``.

    Session days are filled; markers flag over-pressure, unsterile starts and too-soon
    sessions; each session day notes its peak and its shortest rest since the session before.
    ``today`` defaults to today in ``tz`` (the machine's zone when ``None``).
    """
    fig = build_calendar_figure(sessions, weeks, today, tz=tz)
    return _save_png(fig, out, str(fig.get_label()))
