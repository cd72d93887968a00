"""Plain-text views of the session history and the device status, for the CLI.

Plain fixed-width text (no colours, no box drawing) so the output reads the same on a terminal,
in a pipe, in a log and over SSH on the Pi. Every value may be missing or ``None`` in records
written by an older version or by a session that was cut short, so nothing here trusts a key to
be there: an unknown value is shown as ``—``, never as a made-up number.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import Any

from dermaguard.common.timefmt import format_span, local_time, parse_utc, to_local

DASH = "—"
TRY_COMMAND = "dermaguard run --simulate scenarios/sterilize_then_use.yaml --speed 30"


# --- small shared helpers (the report uses them too) --------------------------------------


def format_duration(seconds: object) -> str:
    """``m:ss`` (minutes unbounded, so 75 minutes is ``75:00``); ``—`` when unknown."""
    value = as_float(seconds)
    if value is None or value < 0:
        return DASH
    minutes, secs = divmod(round(value), 60)
    return f"{minutes}:{secs:02d}"


def as_float(value: object) -> float | None:
    """A finite float, or ``None`` for missing, non-numeric, NaN and infinite values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _local_stamp(value: object, tz: tzinfo | None) -> str:
    moment = parse_utc(value)
    if moment is None:
        return DASH
    return to_local(moment, tz).strftime("%Y-%m-%d %H:%M")


def _newest_first(sessions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Newest start first; records without a readable start go last, by session number."""

    def key(s: Mapping[str, Any]) -> tuple[int, float, int]:
        started = parse_utc(s.get("started_at"))
        number = _as_int(s.get("session_no"))
        return (
            0 if started is not None else 1,
            -started.timestamp() if started is not None else 0.0,
            -(number if number is not None else -1),
        )

    return sorted(sessions, key=key)


# --- history table ---------------------------------------------------------------------------

# (header, right-aligned?) in display order.
_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("#", True),
    ("Date (local)", False),
    ("Duration", True),
    ("Peak N", True),
    ("Over", True),
    ("Passes", True),
    ("Spread", True),
    ("Disinfected", False),
    ("Too soon", False),
    ("Status", False),
    ("Roller", True),
    ("Use", True),
)


def technique_figures(session: Mapping[str, Any]) -> dict[str, Any]:
    """A session's passes, median pass force and steadiness (the spread of the passes' forces,
    a coefficient of variation); ``None`` each when not measured (an older session)."""
    technique = session.get("technique")
    if not isinstance(technique, Mapping):
        technique = {}
    return {
        "passes": _as_int(technique.get("passes")),
        "pass_force_n": as_float(technique.get("pass_force_n")),
        "steadiness_cv": as_float(technique.get("steadiness_cv")),
    }


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.0f}%"


def _yes_no(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return DASH


def _row(session: Mapping[str, Any], tz: tzinfo | None) -> list[str]:
    number = _as_int(session.get("session_no"))
    peak = as_float(session.get("peak_n"))
    over = _as_int(session.get("over_episodes"))
    status = session.get("status")
    roller = _as_int(session.get("roller_id"))
    use = _as_int(session.get("roller_use"))
    technique = technique_figures(session)
    passes = technique["passes"]
    return [
        str(number) if number is not None else DASH,
        _local_stamp(session.get("started_at"), tz),
        format_duration(session.get("duration_s")),
        f"{peak:.2f}" if peak is not None else DASH,
        str(over) if over is not None else DASH,
        str(passes) if passes is not None else DASH,
        _percent(technique["steadiness_cv"]),
        _yes_no(session.get("sterile_at_start")),
        "yes" if session.get("too_soon") is True else DASH,
        "" if status == "completed" else str(status or DASH),
        str(roller) if roller is not None else DASH,
        str(use) if use is not None else DASH,
    ]


def _table(rows: list[list[str]]) -> list[str]:
    headers = [name for name, _ in _COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, (_, right) in zip(cells, widths, _COLUMNS, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _footer(ordered: list[Mapping[str, Any]], now_wall: float | None) -> str:
    count = len(ordered)
    parts = [f"{count} session{'s' if count != 1 else ''}"]
    over = sum(1 for s in ordered if (_as_int(s.get("over_episodes")) or 0) > 0)
    not_disinfected = sum(1 for s in ordered if s.get("sterile_at_start") is False)
    too_soon = sum(1 for s in ordered if s.get("too_soon") is True)
    interrupted = sum(1 for s in ordered if s.get("status") == "interrupted")
    for n, what in (
        (over, "with over-pressure"),
        (not_disinfected, "not disinfected at start"),
        (too_soon, "too soon"),
        (interrupted, "interrupted"),
    ):
        if n:
            parts.append(f"{n} {what}")
    if now_wall is not None:
        newest = parse_utc(ordered[0].get("started_at"))
        if newest is not None and now_wall >= newest.timestamp():
            parts.append(f"last started {format_span(now_wall - newest.timestamp())} ago")
    footer = " · ".join(parts)
    trend = steadiness_trend(ordered, now_wall)
    return footer if trend is None else f"{footer}\n{trend}"


#: The trend compares the sessions of the last this many days with those of the days before.
TREND_DAYS = 28


def steadiness_trend(sessions: Sequence[Mapping[str, Any]], now_wall: float | None) -> str | None:
    """One line: the median passes and spread of the last four weeks against the four weeks
    before (``now_wall``, or else the newest session's start, ends the window). Sessions whose
    technique is unknown are left out, not counted as 0; ``None`` without any to compare."""
    dated = [
        (moment.timestamp(), technique_figures(s))
        for s in sessions
        if (moment := parse_utc(s.get("started_at"))) is not None
    ]
    dated = [(t, f) for t, f in dated if f["passes"] is not None]
    if not dated:
        return None
    end = now_wall if now_wall is not None else max(t for t, _ in dated)
    span = TREND_DAYS * 86400.0
    recent = [f for t, f in dated if end - span < t <= end]
    before = [f for t, f in dated if end - 2 * span < t <= end - span]

    def describe(figures: list[dict[str, Any]]) -> str:
        passes = statistics.median(f["passes"] for f in figures)
        spreads = [f["steadiness_cv"] for f in figures if f["steadiness_cv"] is not None]
        spread = _percent(statistics.median(spreads)) if spreads else DASH
        count = f"{len(figures)} session{'s' if len(figures) != 1 else ''}"
        return f"{passes:g} passes, spread {spread} ({count})"

    if not recent:
        return None
    line = f"Technique, median of the last {TREND_DAYS // 7} weeks: {describe(recent)}"
    if before:
        line += f"; the {TREND_DAYS // 7} weeks before: {describe(before)}"
    return line


def format_history(
    sessions: Sequence[Mapping[str, Any]],
    now_wall: float | None = None,
    *,
    tz: tzinfo | None = None,
) -> str:
    """The session history as a fixed-width table, newest first, with a one-line summary.

    ``now_wall`` (Unix seconds) adds how long ago the last session started; ``tz`` overrides the
    machine's local zone (tests and remote viewers). No trailing newline.
    """
    if not sessions:
        return f"No sessions yet. Roll with the roller connected, or try one now:\n  {TRY_COMMAND}"
    ordered = _newest_first(sessions)
    lines = _table([_row(s, tz) for s in ordered])
    return "\n".join([*lines, "", _footer(ordered, now_wall)])


def _json_safe(value: Any) -> Any:
    """Replace NaN/infinity (not JSON) with ``null``, recursively, so the output always parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def history_json(sessions: Sequence[Mapping[str, Any]]) -> str:
    """The sessions as a JSON array in the given order with sorted keys: stable for diffs, scripts.

    Strict JSON: non-finite floats become ``null``. No trailing newline.
    """
    return json.dumps(
        [_json_safe(s) for s in sessions], sort_keys=True, indent=2, ensure_ascii=False
    )


# --- status ------------------------------------------------------------------------------------

_CASE_TEXT = {
    "open": "lid open",
    "ready": "closed",
    "sterilizing": "closed, UV-C cycle running",
    "sterile": "closed",
    "aborted": "closed, last UV-C cycle aborted",
}


def live_case(live: Mapping[str, Any] | None, tz: tzinfo | None = None) -> tuple[str, bool]:
    """The case line's state and the roller's sterility from the daemon's status file.

    Only a running daemon's state is shown as current. A stopped daemon's is marked as the
    last known state, with when it was written; a cycle it was running is shown as aborted
    (the stop ended it, UV is off), never as still counting down.
    """
    if live is None:
        return "unknown (the daemon has not run here)", False
    state = str(live.get("case_state") or "unknown")
    sterile = live.get("sterile") is True
    if live.get("running") is True:
        text = _CASE_TEXT.get(state, state)
        remaining = as_float(live.get("remaining_s"))
        if state == "sterilizing" and remaining is not None:
            text += f", {format_span(remaining)} left"
        elif state == "aborted" and live.get("abort_reason"):
            text += f" ({live['abort_reason']})"
        return text, sterile
    if state == "sterilizing" or live.get("abort_reason") == "daemon_stopped":
        text, sterile = "closed, last UV-C cycle cut short by the daemon's stop", False
    else:
        text = _CASE_TEXT.get(state, state)
        if state == "aborted" and live.get("abort_reason"):
            text += f" ({live['abort_reason']})"
    when = as_float(live.get("updated_wall"))
    stamp = f" at {local_time(when, tz)}" if when is not None else ""
    return f"{text} (daemon stopped: last known state{stamp})", sterile


def _case_line(status: Mapping[str, Any], tz: tzinfo | None) -> str:
    state = status.get("case_state")
    text = _CASE_TEXT.get(str(state), str(state) if state else "unknown")
    if status.get("sterile") is True:
        until = parse_utc(status.get("sterile_until"))
        disinfected = "disinfected"
        if until is not None:
            disinfected += f" until {to_local(until, tz).strftime('%Y-%m-%d %H:%M')}"
    else:
        disinfected = "NOT disinfected"
    return f"{text}; roller {disinfected}"


def _roller_line(status: Mapping[str, Any]) -> tuple[str, bool]:
    """The roller line and whether the roller is worn out."""
    roller = _as_int(status.get("roller_id"))
    uses = _as_int(status.get("roller_uses"))
    limit = _as_int(status.get("replace_after_uses"))
    needle = as_float(status.get("needle_mm"))
    parts = [f"#{roller}" if roller is not None else DASH]
    worn = False
    if uses is not None and limit is not None and limit > 0:
        worn = uses >= limit
        left = "replace it now" if worn else f"{limit - uses} left"
        parts.append(f"{uses} of {limit} uses ({left})")
    elif uses is not None:
        parts.append(f"{uses} uses")
    if needle is not None:
        parts.append(f"{needle:g} mm needles")
    return " · ".join(parts), worn


def _last_line(last: Mapping[str, Any] | None, tz: tzinfo | None) -> str:
    if not last:
        return "none yet"
    number = _as_int(last.get("session_no"))
    peak = as_float(last.get("peak_n"))
    over = _as_int(last.get("over_episodes"))
    parts = [
        f"#{number}" if number is not None else DASH,
        _local_stamp(last.get("started_at"), tz),
        format_duration(last.get("duration_s")),
        f"peak {peak:.2f} N" if peak is not None else "peak —",
    ]
    if over is not None:
        parts.append(f"{over} over-pressure episode{'s' if over != 1 else ''}")
    if last.get("sterile_at_start") is False:
        parts.append("NOT disinfected at start")
    status = last.get("status")
    if status and status != "completed":
        parts.append(str(status))
    return " · ".join(parts)


def _next_line(status: Mapping[str, Any], worn: bool, now: float, tz: tzinfo | None) -> str:
    """One plain sentence: can the user roll now, and if not, what to do first."""
    allowed_at = parse_utc(status.get("next_allowed_at"))
    blockers: list[str] = []
    if allowed_at is not None and allowed_at.timestamp() > now:
        stamp = to_local(allowed_at, tz).strftime("%Y-%m-%d %H:%M")
        wait = format_span(allowed_at.timestamp() - now)
        blockers.append(f"the skin needs rest until {stamp} (in {wait})")
    if status.get("sterile") is not True:
        blockers.append(
            "the roller is not disinfected: clean it, close the case and run a UV-C cycle"
        )
    if worn:
        blockers.append("the roller has reached its use limit: replace it")
    if not blockers:
        return "ALLOWED now"
    return "NOT allowed yet: " + "; ".join(blockers)


def format_status(
    status: Mapping[str, Any], *, now_wall: float | None = None, tz: tzinfo | None = None
) -> str:
    """What ``dermaguard status`` prints: case, roller, last session, and whether to roll now.

    ``now_wall`` defaults to the current time; it is a parameter so the answer is testable.
    """
    now = time.time() if now_wall is None else now_wall
    roller, worn = _roller_line(status)
    rows = [
        ("Case", _case_line(status, tz)),
        ("Roller", roller),
        ("Last session", _last_line(status.get("last_session"), tz)),
        ("Next session", _next_line(status, worn, now, tz)),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label + ':':<{width + 1}}  {text}" for label, text in rows)
