"""Server-drawn SVG charts: a session's force trace over the zones and a calendar of sessions.

Drawn here rather than in the browser so that no chart library ships and the Pi needs no
internet; plain SVG scales to a phone and a desktop alike. Text is escaped: it comes from the
database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from html import escape
from typing import Any

from dermaguard.config.load import ZonesConfig
from dermaguard.store import TraceSample

ZONE_COLOURS: Mapping[str, str] = {
    "light": "#9cc3ff",
    "ok": "#9be3a6",
    "high": "#ffe08a",
    "over": "#ff9c9c",
}
_FONT = 'font-family="system-ui, sans-serif"'
_W, _H, _PAD_L, _PAD_B, _PAD_T = 400, 240, 34, 26, 8


def trace_svg(
    trace: Sequence[TraceSample], zones: ZonesConfig, title: str, *, end_s: float | None = None
) -> str:
    """The force over time, on bands of the zones; gaps where the force was unknown.
    ``end_s``: the session's length, where the time axis ends (else the last sample)."""
    top = zones.over_n * 1.3
    peak = max((f for _, f, _ in trace if f is not None), default=0.0)
    top = max(top, peak * 1.05)
    end = end_s or max((t for t, _, _ in trace), default=1.0) or 1.0
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T

    def x(t: float) -> float:
        return _PAD_L + t / end * plot_w

    def y(f: float) -> float:
        return _PAD_T + plot_h - min(f, top) / top * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" {_FONT} '
        f'aria-label="{escape(title)}" class="chart">'
    ]
    bands = [
        (zones.contact_n, zones.ok_n, "light"),
        (zones.ok_n, zones.high_n, "ok"),
        (zones.high_n, zones.over_n, "high"),
        (zones.over_n, top, "over"),
    ]
    for low, high, name in bands:
        parts.append(
            f'<rect x="{_PAD_L}" y="{y(high):.1f}" width="{plot_w}" '
            f'height="{y(low) - y(high):.1f}" fill="{ZONE_COLOURS[name]}" opacity="0.5"/>'
            f'<text x="{_W - 10}" y="{y(high) + 12:.1f}" text-anchor="end" font-size="13">'
            f"{name}</text>"
        )
    for value in (0.0, zones.ok_n, zones.high_n, zones.over_n):
        parts.append(
            f'<text x="{_PAD_L - 4}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'font-size="13">{value:g}</text>'
        )
    segment: list[str] = []
    lines: list[str] = []
    for t, f, _ in trace:
        if f is None:
            if segment:
                lines.append(" ".join(segment))
            segment = []
            continue
        segment.append(f"{x(t):.1f},{y(f):.1f}")
    if segment:
        lines.append(" ".join(segment))
    for points in lines:
        parts.append(f'<polyline points="{points}" fill="none" stroke="#222" stroke-width="1.5"/>')
    parts.append(
        f'<text x="{_PAD_L}" y="{_H - 8}" font-size="13">0 s</text>'
        f'<text x="{_W - 10}" y="{_H - 8}" text-anchor="end" font-size="13">{end:.0f} s</text>'
        f'<text x="{_PAD_L + plot_w / 2:.0f}" y="{_H - 8}" text-anchor="middle" '
        f'font-size="13">force (N) over time</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def calendar_svg(
    sessions: Sequence[Mapping[str, Any]], weeks: int, today: date, tz: tzinfo | None
) -> str:
    """The last ``weeks`` weeks, Monday to Sunday; a session day is filled, red with an
    over-pressure episode, and marked ! when it began too soon or undisinfected."""
    by_day: dict[date, list[Mapping[str, Any]]] = {}
    for s in sessions:
        wall = s.get("started_wall")
        if isinstance(wall, int | float):
            day = datetime.fromtimestamp(wall, tz).date()
            by_day.setdefault(day, []).append(s)
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    cell, gap, left, head = 40, 4, 4, 18
    width = left + 7 * (cell + gap)
    height = head + weeks * (cell + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" {_FONT} aria-label="sessions of the last {weeks} weeks" class="chart">'
    ]
    for i, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")):
        parts.append(
            f'<text x="{left + i * (cell + gap) + cell / 2}" y="12" text-anchor="middle" '
            f'font-size="13">{name}</text>'
        )
    for week in range(weeks):
        for wd in range(7):
            day = first + timedelta(days=week * 7 + wd)
            x, y = left + wd * (cell + gap), head + week * (cell + gap)
            done = by_day.get(day, [])
            fill = "#eee"
            if done:
                over = any((s.get("over_episodes") or 0) > 0 for s in done)
                fill = "#ff9c9c" if over else "#9be3a6"
            if day > today:
                fill = "#fafafa"
            flag = any(s.get("too_soon") or s.get("sterile_at_start") is False for s in done)
            label = f"{day.isoformat()}: {len(done)} session(s)"
            parts.append(
                f'<g><title>{escape(label)}</title><rect x="{x}" y="{y}" width="{cell}" '
                f'height="{cell}" rx="4" fill="{fill}"'
                + (' stroke="#1d3557" stroke-width="2"' if day == today else "")
                + "/>"
                f'<text x="{x + 4}" y="{y + 13}" font-size="13">{day.day}</text>'
            )
            if day.day == 1 or (week == 0 and wd == 0):  # where a month starts: its name
                parts.append(
                    f'<text x="{x + 4}" y="{y + 26}" font-size="11" fill="#444">'
                    f"{day.strftime('%b')}</text>"
                )
            if done:
                parts.append(
                    f'<text x="{x + cell - 4}" y="{y + cell - 5}" text-anchor="end" '
                    f'font-size="12" font-weight="bold">{len(done)}{"!" if flag else ""}</text>'
                )
            parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
