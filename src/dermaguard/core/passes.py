"""Passes: a session's force cut into contacts separated by lifts, and the technique summary.

A *pass* is a stretch of contact between two lifts of the roller. The load cell cannot see a
back-and-forth stroke made without lifting: that is one pass, however many strokes it holds.

The cut has hysteresis and two minimum durations, so that noise or a wobble does not make a
new pass:

- contact starts when the force reaches ``lift_n`` and ends only below
  ``lift_n - hysteresis_n`` (noise inside that band changes nothing);
- a lift shorter than ``min_lift_s`` is a wobble: the pass goes on after it;
- a contact shorter than ``min_pass_s`` (start to lift) is a touch, not a pass; its contact
  time still counts as contact.

Time follows the session's rule (sample and hold): the interval between two samples belongs to
the first of them, and an interval longer than :data:`MAX_SAMPLE_GAP_S` (a sensor gap) counts
as nothing. An unknown force (``None``, a sensor fault) neither starts nor ends a contact.

:class:`PassSegmenter` is incremental: each sample costs a few comparisons, never a re-scan,
as it runs on the engine's per-sample path. :func:`segment` runs it over a whole trace.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dermaguard.core.events import CONTACT_ZONES, ZONES, Zone

#: A gap between samples longer than this is not counted as time (the session's own rule).
MAX_SAMPLE_GAP_S = 0.5
#: The zone in which the force is right: the longest unbroken time in it is reported.
GOOD_ZONE: Zone = "ok"
_RANK: dict[Zone | None, int] = {None: -1, **{zone: i for i, zone in enumerate(ZONES)}}


@dataclass(frozen=True, slots=True)
class PassParams:
    """The thresholds of the cut, from the config (``session.passes``; no defaults here)."""

    lift_n: float
    hysteresis_n: float
    min_lift_s: float
    min_pass_s: float

    def __post_init__(self) -> None:
        if not self.lift_n - self.hysteresis_n > 0:
            raise ValueError(
                f"lift_n - hysteresis_n must be > 0 (got {self.lift_n} - {self.hysteresis_n}): "
                "a lift below 0 N could never be seen"
            )


@dataclass(frozen=True, slots=True)
class Pass:
    """One pass: from its first contact sample to the first sample of the lift that ended it.

    ``contact_s`` leaves out wobbles and sensor gaps inside it; ``mean_n`` is the time-weighted
    mean force over that contact; ``top_zone`` the highest zone shown during it.
    """

    start: float
    end: float
    contact_s: float
    mean_n: float | None
    peak_n: float | None
    top_zone: Zone | None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


class PassSegmenter:
    """Cuts a stream of ``(t, force, zone)`` samples into passes, one sample at a time."""

    __slots__ = (
        "_down",
        "_held_n",
        "_in_contact",
        "_last_t",
        "_lift_since",
        "_pass_contact_s",
        "_pass_force_time",
        "_pass_peak",
        "_pass_top",
        "_start",
        "_up",
        "contact_s",
        "params",
        "passes",
    )

    def __init__(self, params: PassParams) -> None:
        self.params = params
        #: The passes finished so far (touches shorter than ``min_pass_s`` are not passes).
        self.passes: list[Pass] = []
        #: All contact time so far, touches and wobble-free pass time alike.
        self.contact_s = 0.0
        self._up = params.lift_n
        self._down = params.lift_n - params.hysteresis_n
        self._in_contact = False
        self._last_t: float | None = None
        self._held_n: float | None = None  # the force held over the interval now running
        self._start: float | None = None  # the running pass's start (None: between passes)
        self._lift_since: float | None = None  # a lift not yet long enough to end the pass
        self._pass_contact_s = 0.0
        self._pass_force_time = 0.0
        self._pass_peak: float | None = None
        self._pass_top: Zone | None = None

    # -- queries ---------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Passes so far: the finished ones, and the running one once it is long enough."""
        running = self._start is not None and self._running_long_enough()
        return len(self.passes) + running

    @property
    def pass_open(self) -> bool:
        """A pass is running (its lift, if any, is not yet long enough to end it)."""
        return self._start is not None

    @property
    def current_force_n(self) -> float | None:
        """The running pass's mean force so far; between passes, the last pass's."""
        if self._start is not None and self._pass_contact_s > 0:
            return self._pass_force_time / self._pass_contact_s
        if self._start is not None:
            return self._held_n
        return self.passes[-1].mean_n if self.passes else None

    # -- input -----------------------------------------------------------------------------

    def feed(self, t: float, force_n: float | None, zone: Zone | None = None) -> None:
        """One sample: ``force_n`` ``None`` when the force is unknown."""
        last_t, held = self._last_t, self._held_n
        self._last_t = t
        if last_t is not None and held is not None and self._in_contact:
            dt = t - last_t
            if 0.0 < dt <= MAX_SAMPLE_GAP_S:
                self.contact_s += dt
                if self._start is not None:
                    self._pass_contact_s += dt
                    self._pass_force_time += held * dt
        self._held_n = force_n
        if force_n is None:
            return
        if self._in_contact:
            if force_n < self._down:
                self._in_contact = False
                self._lift_since = t
                return
        elif force_n >= self._up:
            self._in_contact = True
            self._contact_started(t)
        elif self._lift_since is not None and t - self._lift_since >= self.params.min_lift_s:
            self._close()
            return
        else:
            return
        # In contact: the pass's peak and highest zone.
        if self._pass_peak is None or force_n > self._pass_peak:
            self._pass_peak = force_n
        if zone is not None and _RANK[zone] > _RANK[self._pass_top]:
            self._pass_top = zone

    def finish(self, t: float | None = None) -> None:
        """The trace ends at ``t`` (default: its last sample): the running pass ends with it,
        or where its lift began."""
        last = self._last_t
        end = last if t is None else t
        if end is not None and last is not None and self._in_contact and self._held_n is not None:
            dt = end - last
            if 0.0 < dt <= MAX_SAMPLE_GAP_S:  # the last sample holds until the end
                self.contact_s += dt
                self._pass_contact_s += dt
                self._pass_force_time += self._held_n * dt
            self._last_t = end
        if self._start is not None:
            if self._lift_since is None:
                self._lift_since = end
            self._close()
        self._in_contact = False

    # -- internals -------------------------------------------------------------------------

    def _running_long_enough(self) -> bool:
        assert self._start is not None and self._last_t is not None
        end = self._lift_since if self._lift_since is not None else self._last_t
        return end - self._start >= self.params.min_pass_s

    def _contact_started(self, t: float) -> None:
        lift = self._lift_since
        if self._start is not None and lift is not None:
            if t - lift < self.params.min_lift_s:  # a wobble: the pass goes on
                self._lift_since = None
                return
            self._close()
        self._start, self._lift_since = t, None
        self._pass_contact_s = self._pass_force_time = 0.0
        self._pass_peak, self._pass_top = None, None

    def _close(self) -> None:
        start, end = self._start, self._lift_since
        assert start is not None and end is not None
        self._start = self._lift_since = None
        if end - start < self.params.min_pass_s:
            return  # a touch, not a pass
        contact = self._pass_contact_s
        mean = self._pass_force_time / contact if contact > 0 else None
        self.passes.append(Pass(start, end, contact, mean, self._pass_peak, self._pass_top))


def segment(
    params: PassParams,
    samples: Iterable[tuple[float, float | None, Zone | None]],
    end: float | None = None,
) -> PassSegmenter:
    """Cut a whole trace into passes (the running pass ends with the trace, or at ``end``)."""
    seg = PassSegmenter(params)
    for t, force_n, zone in samples:
        seg.feed(t, force_n, zone)
    seg.finish(end)
    return seg


class GoodBandTimer:
    """The longest unbroken time in the good zone (``ok``), by sample and hold."""

    __slots__ = ("_last_t", "_since", "longest_s")

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._since: float | None = None
        self._last_t: float | None = None

    def feed(self, t: float, zone: Zone | None) -> None:
        last = self._last_t
        self._last_t = t
        if self._since is not None and last is not None and t - last > MAX_SAMPLE_GAP_S:
            # A sensor gap breaks the stretch: it ended with the sample before the gap.
            self._end(last)
        if zone == GOOD_ZONE:
            if self._since is None:
                self._since = t
        elif self._since is not None:
            self._end(t)

    def finish(self, t: float | None = None) -> float:
        end = self._last_t if t is None else t
        if self._since is not None and end is not None:
            self._end(end)
        return self.longest_s

    def _end(self, t: float) -> None:
        assert self._since is not None
        self.longest_s = max(self.longest_s, t - self._since)
        self._since = None


def technique_summary(
    passes: list[Pass],
    zone_s: Mapping[str, float],
    contact_s: float,
    longest_ok_s: float,
) -> dict[str, Any]:
    """The ``technique`` object of a session summary (docs/MQTT.md, "Session summary").

    ``pass_force_n`` is the median over the passes of each pass's mean force; ``steadiness_cv``
    the coefficient of variation of those means (population standard deviation over mean; 0
    is perfectly steady; ``None`` below two passes). ``zone_share`` divides the zone times by
    the contact time (``None`` without contact).
    """
    means = [p.mean_n for p in passes if p.mean_n is not None]
    median = statistics.median(means) if means else None
    cv: float | None = None
    if len(means) >= 2:
        mean = statistics.fmean(means)
        cv = statistics.pstdev(means, mean) / mean if mean > 0 else None
    share: dict[str, float] | None = None
    if contact_s > 0:
        share = {zone: round(zone_s.get(zone, 0.0) / contact_s, 4) for zone in CONTACT_ZONES}
    return {
        "passes": len(passes),
        "pass_force_n": None if median is None else round(median, 3),
        "steadiness_cv": None if cv is None else round(cv, 4),
        "zone_share": share,
        "passes_high": sum(1 for p in passes if p.top_zone == "high"),
        "passes_over": sum(1 for p in passes if p.top_zone == "over"),
        "longest_ok_s": round(longest_ok_s, 2),
    }
