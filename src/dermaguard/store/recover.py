"""The summary of a session the daemon never closed (it was killed, or the power went).

Only what reached the disk is used: the stored trace (so the figures cover up to the last
flushed chunk, a few seconds before the end at most) and the events logged during the session.
The accumulation follows the core's own rules, so a recovered summary reads like a real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from dermaguard.common.timefmt import iso_utc
from dermaguard.store.trace import TraceSample

#: A gap between trace points longer than this is not counted as time in a zone (as in the core).
MAX_GAP_S = 0.5
CONTACT_ZONES = ("light", "ok", "high", "over")


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
    zone_s = dict.fromkeys(CONTACT_ZONES, 0.0)
    contact_s = force_time = 0.0
    peak: float | None = None
    for (t, _, zone), (t_next, f_next, z_next) in pairwise(trace):
        dt = t_next - t
        in_gap = not 0.0 < dt <= MAX_GAP_S
        if not in_gap and zone in CONTACT_ZONES:
            contact_s += dt
            zone_s[str(zone)] += dt
        if z_next in CONTACT_ZONES and f_next is not None and not in_gap:
            force_time += f_next * dt
    for _, force, zone in trace:
        if zone in CONTACT_ZONES and force is not None:
            peak = force if peak is None else max(peak, force)
    episodes = sum(1 for ev in events if ev.type == "over_pressure")
    longest = 0.0
    over_since: float | None = None
    for ev in events:
        if ev.type == "over_pressure":
            over_since = ev.t_mono
        elif ev.type == "over_pressure_cleared":
            stated = ev.data.get("duration_s")
            if isinstance(stated, int | float):
                longest = max(longest, float(stated))
            elif over_since is not None and ev.t_mono is not None:
                longest = max(longest, ev.t_mono - over_since)
            over_since = None
    if over_since is not None and t0_mono is not None:
        longest = max(longest, t0_mono + duration - over_since)
    return {
        "session_no": start.get("session_no"),
        "started_at": started_at,
        "ended_at": iso_utc(started_wall + duration),
        "duration_s": round(duration, 2),
        "contact_s": round(contact_s, 2),
        "zone_s": {k: round(v, 2) for k, v in zone_s.items()},
        "peak_n": None if peak is None else round(peak, 3),
        "mean_n": round(force_time / contact_s, 3) if contact_s > 0 else None,
        "over_episodes": episodes,
        "longest_over_s": round(longest, 2),
        "sterile_at_start": start.get("sterile"),
        "cycle_id": start.get("cycle_id"),
        "rest_interval_s": start.get("rest_interval_s"),
        "too_soon": start.get("too_soon"),
        "roller_id": start.get("roller_id"),
        "roller_use": start.get("roller_use"),
        "end_reason": "interrupted",
    }
