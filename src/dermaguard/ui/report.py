"""Session and calendar charts as PNG files, for the user to look at after rolling.

Rendered with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``) and never through
``pyplot``: the daemon is headless and may draw from any thread, and pyplot's global state (the
current figure, the chosen GUI backend) is neither thread-safe nor wanted on a Pi without a
display. Files are written atomically so a viewer or a sync job never sees half a PNG. What a
chart shows is gathered from the history's records in :mod:`dermaguard.ui.report_data`.

Unknown force (``None``) is drawn as a gap with a hatched band, never as zero: a sensor fault
must not look like "no pressure" in the history either.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from dermaguard.common.timefmt import format_span, parse_utc, to_local
from dermaguard.core.passes import Pass, PassParams, segment
from dermaguard.ui.history_view import as_float, format_duration
from dermaguard.ui.report_data import (
    Day,
    ReportError,
    ReportWriteError,
    Trace,
    TraceSample,
    ZoneLimits,
    days_of,
    prepare_trace,
    zone_limits,
)

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
#: Passes are marked as a strip along the foot of the chart, in two alternating shades.
_PASS_SHADES = ("#1f78b4", "#a6cee3")


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
        raise ReportWriteError(f"cannot write {out}: {exc.strerror or exc}") from exc
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
        raise ReportWriteError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# --- session chart -----------------------------------------------------------------------------


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
    technique = summary.get("technique")
    if isinstance(technique, Mapping) and isinstance(technique.get("passes"), int):
        spread = as_float(technique.get("steadiness_cv"))
        count = technique["passes"]
        text = f"{count} pass" if count == 1 else f"{count} passes"
        parts.append(text if spread is None else f"{text}, spread {spread * 100:.0f}%")
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


def _draw_passes(ax: Axes, passes: Sequence[Pass]) -> None:
    """Each pass as a numbered stretch of a strip along the foot of the chart."""
    for i, p in enumerate(passes):
        ax.axvspan(
            p.start,
            p.end,
            ymin=0.0,
            ymax=0.035,
            color=_PASS_SHADES[i % 2],
            lw=0,
            label=f"passes ({len(passes)}, from the stored trace)" if i == 0 else None,
        )
    step = max(1, len(passes) // 20)  # at most about twenty numbers, so they never overlap
    for i in range(0, len(passes), step):
        p = passes[i]
        ax.annotate(
            str(i + 1),
            ((p.start + p.end) / 2, 0.035),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color=_PASS_SHADES[0],
        )


def _draw_session(
    ax: Axes,
    summary: Mapping[str, Any],
    data: Trace,
    limits: tuple[float, float, float, float],
    tz: tzinfo | None,
    *,
    passes: Sequence[Pass] = (),
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
    if passes:
        _draw_passes(ax, passes)
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
    passes: PassParams | None = None,
) -> Path:
    """Draw one session's force over time to a 1200 x 600 px PNG at ``out``; returns ``out``.

    ``summary`` is ``None`` for a session the store does not know. With ``passes`` the passes
    found in the stored trace are marked. Raises :class:`ReportError` for an unknown session,
    a missing or empty trace, bad thresholds or an unwritable ``out``.
    """
    fig = build_session_figure(summary, trace, zones, tz=tz, passes=passes)
    return _save_png(fig, out, str(fig.get_label()))


def build_session_figure(
    summary: Mapping[str, Any] | None,
    trace: Sequence[TraceSample] | None,
    zones: ZoneLimits,
    *,
    tz: tzinfo | None = None,
    passes: PassParams | None = None,
) -> Figure:
    """The session chart as an unsaved figure (for embedding, and for tests)."""
    if summary is None:
        raise ReportError("unknown session: there is no stored summary for it")
    number = summary.get("session_no")
    if not trace:
        raise ReportError(f"session {number} has no stored force trace")
    limits = zone_limits(zones)
    data = prepare_trace(trace)
    fig = _new_figure(*SESSION_SIZE_PX)
    # The passes as the core cuts them, from the stored (downsampled) trace.
    cut = [] if passes is None else segment(passes, ((t, f, None) for t, f, _ in trace)).passes
    title = _draw_session(fig.add_subplot(), summary, data, limits, tz, passes=cut)
    fig.set_label(title)
    return fig


# --- calendar -----------------------------------------------------------------------------------


def calendar_size_px(weeks: int) -> tuple[int, int]:
    """The calendar PNG's (width, height): fixed width, one row per week."""
    return _CAL_WIDTH_PX, _CAL_EXTRA_PX + _CAL_ROW_PX * weeks


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


#: ``report --weeks N --by steadiness``: a session day's colour by its least steady session
#: (the spread of its pass forces), in bands for reading at a glance, not care limits.
STEADINESS_BANDS: tuple[tuple[float, str, str], ...] = (
    (0.15, "#b7e4c7", "steady (spread up to 15 %)"),
    (0.30, "#ffe8a1", "uneven (up to 30 %)"),
    (math.inf, "#f5b7b1", "unsteady (over 30 %)"),
)
_STEADINESS_UNKNOWN = ("#dee2e6", "spread not measured")


def steadiness_fill(cv: float | None) -> str:
    """The tile colour of a session day whose least steady session has spread ``cv``."""
    if cv is None:
        return _STEADINESS_UNKNOWN[0]
    return next(colour for limit, colour, _ in STEADINESS_BANDS if cv <= limit)


def _draw_cell(
    ax: Axes, *, col: int, row: int, day: date, info: Day | None, state: str, by: str = "sessions"
) -> None:
    """One day: a tile, its date, alert markers, and peak and rest for session days."""
    fill = {"future": "white", "past": "#f1f3f5", "session": "#b7e4c7"}[state]
    edge = "#c9ced3"
    hatch = None
    if info is not None and info.interrupted == info.sessions:
        fill, hatch = "#e2f2e7", "..."
    if info is not None and by == "steadiness":
        fill = steadiness_fill(info.steadiness_cv)
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


def _calendar_legend(by: str = "sessions") -> list[Patch | Line2D]:
    if by == "steadiness":
        days = [
            Patch(facecolor=colour, edgecolor="#c9ced3", label=label)
            for _, colour, label in (*STEADINESS_BANDS, (0.0, *_STEADINESS_UNKNOWN))
        ]
    else:
        days = [
            Patch(facecolor="#b7e4c7", edgecolor="#c9ced3", label="session day"),
            Patch(facecolor="#e2f2e7", edgecolor="#c9ced3", hatch="...", label="interrupted only"),
        ]
    return [
        *days,
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
    by: str = "sessions",
) -> Figure:
    """The calendar as an unsaved figure (for embedding, and for tests). ``by``:
    ``sessions`` fills session days alike; ``steadiness`` colours them by the least steady
    session of the day (:data:`STEADINESS_BANDS`)."""
    if by not in ("sessions", "steadiness"):
        raise ReportError(f"by must be sessions or steadiness, got {by!r}")
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
    days = days_of(sessions, tz)
    shown = {d: info for d, info in days.items() if first <= d <= today}

    fig = _new_figure(*calendar_size_px(weeks))
    ax = fig.add_subplot()
    for row in range(weeks):
        for col in range(7):
            day = first + timedelta(days=7 * row + col)
            info = shown.get(day)
            state = "future" if day > today else ("session" if info else "past")
            _draw_cell(ax, col=col, row=row, day=day, info=info, state=state, by=by)
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
        handles=_calendar_legend(by),
        loc="outside lower center",
        ncols=6 if by == "sessions" else 4,
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
    by: str = "sessions",
) -> Path:
    """Draw the last ``weeks`` weeks (Monday to Sunday rows, current week last) to ``out``.

    Session days are filled; markers flag over-pressure, unsterile starts and too-soon
    sessions; each session day notes its peak and its shortest rest since the session before.
    ``today`` defaults to today in ``tz`` (the machine's zone when ``None``).
    """
    fig = build_calendar_figure(sessions, weeks, today, tz=tz, by=by)
    return _save_png(fig, out, str(fig.get_label()))
