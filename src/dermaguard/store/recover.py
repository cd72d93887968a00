"""The summary of a session the daemon never closed (it was killed, or the power went).

Only what reached the disk is used: the stored trace (so the figures cover up to the last
flushed chunk, a few seconds before the end at most) and the events logged during the session.
The trace goes through the core's own accounting (:func:`dermaguard.core.session.replay_summary`),
so a recovered summary reads like a real one; what the downsampled trace cannot tell (the
over-pressure episodes, the session's end) comes from the events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dermaguard.core.events import EventType
from dermaguard.core.session import replay_summary
from dermaguard.store.trace import TraceSample


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    type: str
    t_mono: float | None
    data: Mapping[str, Any]


def interrupted_summary(
    start: Mapping[str, Any],
    *,
    started_at: str,
    started_wall: float,
    trace: Sequence[TraceSample],
    events: Sequence[LoggedEvent],
    t0_mono: float | None,
) -> dict[str, Any]:
    """Summary dict of an interrupted session, with the keys of a ``session_ended`` summary.

    ``start`` is the ``session_started`` data. The duration is the later of the last trace point
    and the last event logged during the session; the end time is the start plus that.
    """
    duration = trace[-1][0] if trace else 0.0
    if t0_mono is not None:
        for ev in events:
            if ev.t_mono is not None:
                duration = max(duration, ev.t_mono - t0_mono)
    episodes, longest = _over_pressure(events, t0_mono, duration)
    summary = replay_summary(
        dict(start),
        list(trace),
        started_wall=started_wall,
        duration_s=duration,
        over_episodes=episodes,
        longest_over_s=longest,
        reason="interrupted",
    )
    summary["started_at"] = started_at  # as stored, whatever its spelling
    # The alarms' forces reached the disk even when the trace around them did not: the peak
    # is at least what they saw, never unknown beside a counted episode.
    alarmed = _alarm_peak(events)
    if alarmed is not None and (summary["peak_n"] is None or alarmed > summary["peak_n"]):
        summary["peak_n"] = round(alarmed, 3)
    return summary


def _alarm_peak(events: Sequence[LoggedEvent]) -> float | None:
    """The highest force an over-pressure alarm logged (its onset, or its cleared peak)."""
    forces = [
        float(value)
        for ev in events
        if ev.type in (EventType.OVER_PRESSURE, EventType.OVER_PRESSURE_CLEARED)
        for value in (ev.data.get("force_n"), ev.data.get("peak_n"))
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return max(forces, default=None)


def _over_pressure(
    events: Sequence[LoggedEvent], t0_mono: float | None, duration: float
) -> tuple[int, float]:
    """(episodes, longest in seconds) from the logged alarms; one still open lasts to the end."""
    episodes = sum(1 for ev in events if ev.type == EventType.OVER_PRESSURE)
    longest = 0.0
    over_since: float | None = None
    for ev in events:
        if ev.type == EventType.OVER_PRESSURE:
            over_since = ev.t_mono
        elif ev.type == EventType.OVER_PRESSURE_CLEARED:
            stated = ev.data.get("duration_s")
            if isinstance(stated, int | float):
                longest = max(longest, float(stated))
            elif over_since is not None and ev.t_mono is not None:
                longest = max(longest, ev.t_mono - over_since)
            over_since = None
    if over_since is not None and t0_mono is not None:
        longest = max(longest, t0_mono + duration - over_since)
    return episodes, longest
