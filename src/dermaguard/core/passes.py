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

#: A gap between samples longer than this is not counted as time in a zone, as contact or in
#: a pass (sensor gaps); the session's accounting uses the same value.
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
    """Cuts a stream of ``(t, force, zone)`` samples into passes, one sample at a time.

    It also keeps the longest unbroken time in the good zone (:data:`GOOD_ZONE`): one call per
    sample for both, as it runs on the engine's per-sample path. What the live view reads
    (``count``, ``pass_open``, ``force_n``) is kept as plain attributes for the same reason.
    """

    __slots__ = (
        "_counted",
        "_down",
        "_held_n",
        "_in_contact",
        "_last_t",
        "_lift_since",
        "_min_lift",
        "_min_pass",
        "_ok_since",
        "_pass_contact_s",
        "_pass_force_time",
        "_pass_peak",
        "_pass_top",
        "_start",
        "_up",
        "contact_s",
        "count",
        "force_n",
        "longest_ok_s",
        "params",
        "pass_open",
        "passes",
    )

    def __init__(self, params: PassParams) -> None:
        self.params = params
        #: The passes finished so far (touches shorter than ``min_pass_s`` are not passes).
        self.passes: list[Pass] = []
        #: Passes so far: the finished ones, and the running one once it is long enough.
        self.count = 0
        #: A pass is running (its lift, if any, is not yet long enough to end it).
        self.pass_open = False
        #: The running pass's mean force so far (``None`` at its first sample); between
        #: passes, the last pass's.
        self.force_n: float | None = None
        #: All contact time so far, touches and wobble-free pass time alike.
        self.contact_s = 0.0
        #: The longest unbroken time in the good zone so far (up to the last stretch ended).
        self.longest_ok_s = 0.0
        self._up = params.lift_n
        self._down = params.lift_n - params.hysteresis_n
        self._min_lift = params.min_lift_s
        self._min_pass = params.min_pass_s
        self._in_contact = False
        self._last_t: float | None = None
        self._held_n: float | None = None  # the force held over the interval now running
        self._start: float | None = None  # the running pass's start (None: between passes)
        self._lift_since: float | None = None  # a lift not yet long enough to end the pass
        self._counted = False  # the running pass is in ``count``
        self._ok_since: float | None = None
        self._pass_contact_s = 0.0
        self._pass_force_time = 0.0
        self._pass_peak: float | None = None
        self._pass_top: Zone | None = None

    # -- input -----------------------------------------------------------------------------

    def feed(self, t: float, force_n: float | None, zone: Zone | None = None) -> None:
        """One sample: ``force_n`` ``None`` when the force is unknown."""
        last_t, held = self._last_t, self._held_n
        self._last_t, self._held_n = t, force_n
        if last_t is not None:
            dt = t - last_t
            if dt > MAX_SAMPLE_GAP_S:
                if self._ok_since is not None:  # a sensor gap breaks the stretch
                    self._end_ok(last_t)
            elif dt > 0.0 and held is not None and self._in_contact:
                self.contact_s += dt
                self._pass_contact_s += dt
                self._pass_force_time += held * dt
                self.force_n = self._pass_force_time / self._pass_contact_s
        if zone == GOOD_ZONE:
            if self._ok_since is None:
                self._ok_since = t
        elif self._ok_since is not None:
            self._end_ok(t)
        if force_n is None:
            return
        if self._in_contact:
            if force_n < self._down:
                self._in_contact = False
                self._lift_since = t
                self._count_if_long_enough(t)
                return
        elif force_n >= self._up:
            self._in_contact = True
            self._contact_started(t)
        else:
            lift = self._lift_since
            if lift is not None and t - lift >= self._min_lift:
                self._close()
            return
        # In contact.
        if not self._counted:
            self._count_if_long_enough(t)
        peak = self._pass_peak
        if peak is None or force_n > peak:
            self._pass_peak = force_n
        if zone is not None and zone != self._pass_top and _RANK[zone] > _RANK[self._pass_top]:
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
        if self._ok_since is not None and end is not None:
            self._end_ok(end)
        if self._start is not None:
            if self._lift_since is None:
                self._lift_since = end
            self._close()
        self._in_contact = False

    # -- internals -------------------------------------------------------------------------

    def _count_if_long_enough(self, t: float) -> None:
        """The running pass counts once it has lasted ``min_pass_s`` (to ``t``)."""
        start = self._start
        if not self._counted and start is not None and t - start >= self._min_pass:
            self._counted = True
            self.count += 1

    def _contact_started(self, t: float) -> None:
        lift = self._lift_since
        if self._start is not None and lift is not None:
            if t - lift < self._min_lift:  # a wobble: the pass goes on
                self._lift_since = None
                return
            self._close()
        self._start, self._lift_since = t, None
        self._counted = False
        self.pass_open = True
        self.force_n = None  # nothing held yet: known from the next sample on
        self._pass_contact_s = self._pass_force_time = 0.0
        self._pass_peak, self._pass_top = None, None

    def _close(self) -> None:
        start, end = self._start, self._lift_since
        assert start is not None and end is not None
        self._start = self._lift_since = None
        self.pass_open = False
        if end - start >= self._min_pass:
            contact = self._pass_contact_s
            mean = self._pass_force_time / contact if contact > 0 else None
            self.passes.append(Pass(start, end, contact, mean, self._pass_peak, self._pass_top))
        # A touch is no pass; a pass long enough only with the end of the trace counts now.
        self.count = len(self.passes)
        self.force_n = self.passes[-1].mean_n if self.passes else None

    def _end_ok(self, t: float) -> None:
        assert self._ok_since is not None
        self.longest_ok_s = max(self.longest_ok_s, t - self._ok_since)
        self._ok_since = None


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


def technique_summary(
    passes: list[Pass],
    zone_s: Mapping[str, float],
    contact_s: float,
    longest_ok_s: float,
) -> dict[str, Any]:
    """The ``technique`` object of a session summary (docs/MQTT.md, "Technique").

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
