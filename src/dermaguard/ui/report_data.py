"""What the charts of ``dermaguard report`` show, gathered from the history's records.

No drawing here (that is :mod:`dermaguard.ui.report`): a force trace made plottable (unknown
force kept unknown, sampling holes found, over-pressure runs merged), the zone thresholds
checked, and a calendar's sessions folded into days. Records come from the store as plain
mappings; anything missing or non-numeric is treated as unknown, never as zero.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, Protocol

import numpy as np

from dermaguard.common.timefmt import parse_utc, to_local
from dermaguard.ui.history_view import as_float

#: One stored trace sample: (seconds since the session's start, force or None, zone or None).
TraceSample = tuple[float, float | None, str | None]


class ReportError(Exception):
    """A chart cannot be made from what was given (unknown session, no trace, bad input)."""


class ReportWriteError(ReportError):
    """The machine refused to write the chart (permissions, a read-only or full disk)."""


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


def zone_limits(zones: ZoneLimits) -> tuple[float, float, float, float]:
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


@dataclass(frozen=True)
class Trace:
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


def prepare_trace(trace: Sequence[TraceSample]) -> Trace:
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
    return Trace(
        t=np.asarray(t_out, dtype=np.float64),
        force=np.asarray(f_out, dtype=np.float64),
        end_s=ends[-1],
        unknown=_runs(unknown_flags, starts, ends),
        over=_runs(over_flags, starts, ends),
    )


@dataclass
class Day:
    """What happened on one calendar day."""

    sessions: int = 0
    interrupted: int = 0
    over: bool = False
    unsterile: bool = False
    too_soon: bool = False
    peak_n: float | None = None
    shortest_rest_s: float | None = None
    #: The steadiness (spread of the pass forces, core/passes.py) of each session that has one.
    steadiness: list[float] = field(default_factory=list)

    @property
    def steadiness_cv(self) -> float | None:
        """The day's steadiness: its least steady session (``None``: none was measured)."""
        return max(self.steadiness) if self.steadiness else None


def days_of(sessions: Sequence[Mapping[str, Any]], tz: tzinfo | None) -> dict[date, Day]:
    """Per local day: counts, alert flags, highest peak and shortest rest before a session.

    The rest is the stored ``rest_interval_s`` or, for older records, the time since the
    previous session's end (or start), so it also spans sessions outside the shown weeks.
    """
    dated = sorted(
        ((started, s) for s in sessions if (started := parse_utc(s.get("started_at")))),
        key=lambda pair: pair[0],
    )
    days: dict[date, Day] = {}
    previous: Mapping[str, Any] | None = None
    previous_start: datetime | None = None
    for started, s in dated:
        day = days.setdefault(to_local(started, tz).date(), Day())
        day.sessions += 1
        day.interrupted += s.get("status") == "interrupted"
        day.over = day.over or (as_float(s.get("over_episodes")) or 0) > 0
        day.unsterile = day.unsterile or s.get("sterile_at_start") is False
        day.too_soon = day.too_soon or s.get("too_soon") is True
        technique = s.get("technique")
        cv = as_float(technique.get("steadiness_cv")) if isinstance(technique, Mapping) else None
        if cv is not None:
            day.steadiness.append(cv)
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
