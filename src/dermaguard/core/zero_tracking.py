"""Automatic zero tracking: the load cell's zero follows slow drift while the roller rests.

A load cell creeps and the HX711's offset drifts with temperature, so a zero taken once moves
the over-pressure alarm by as much as it drifts. Weighing instruments follow the zero only
while the reading is steady, near zero, at a limited rate and within a bounded total range
(OIML R 76's automatic zero-tracking); here the moment for it is the roller resting in the dock
with nothing pressing on it. Readings are judged in blocks of ``window_s``: a block whose
readings stay within ``steady_n`` of each other and whose mean lies within ``band_n`` of zero
moves the zero towards that mean by at most ``max_rate_n_per_min`` for the block's length. A
correction that would take the zero further than ``max_total_n`` from the last tare is not made:
it is a fault (``sensor_fault``, reason ``zero_drift``) that asks for a new tare and reference,
and it stands until the calibration changes. Corrections are recorded as ``calibration_changed``
(reason ``zero_tracking``) at most every ``record_interval_s``, so a drifting cell shows in the
history without filling it.

Pure: fed timestamped forces, it returns the zero shift to apply and the events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dermaguard.core.events import Event, EventType

#: The ``sensor_fault`` reason of a zero that drifted beyond the tracking range.
ZERO_DRIFT = "zero_drift"
#: The ``calibration_changed`` reason of a correction.
ZERO_TRACKING = "zero_tracking"
#: A block needs at least this many readings to be judged steady.
MIN_BLOCK_READINGS = 3
#: What the zero-drift fault asks for (its ``detail``).
ZERO_DRIFT_DETAIL = (
    "the load cell's zero has drifted {total:+.3f} N since the last tare, beyond the "
    "{limit:g} N zero tracking may follow: with nothing on the roller, tare it and calibrate "
    "with the reference weight again (dermaguard calibrate --tare, then --reference)"
)


@dataclass(frozen=True, slots=True)
class ZeroTrackingParams:
    """Taken from the config (``pressure.zero_tracking``); no defaults here."""

    enabled: bool
    band_n: float
    steady_n: float
    window_s: float
    max_rate_n_per_min: float
    max_total_n: float
    record_interval_s: float


@dataclass(slots=True)
class ZeroUpdate:
    """The outcome of one reading: a zero shift to apply (N of force to take off) and events."""

    shift_n: float = 0.0
    events: list[Event] = field(default_factory=list)


class ZeroTracker:
    """Follows the zero in blocks of steady readings; see the module."""

    def __init__(self, params: ZeroTrackingParams) -> None:
        self.params = params
        #: Zero correction since the last tare or calibration (N; positive: the zero rose).
        self.total_n = 0.0
        #: A ``zero_drift`` fault stands (until the calibration changes).
        self.fault = False
        self._unrecorded_n = 0.0
        self._recorded_at = -math.inf
        self._start: float | None = None
        self._count = 0
        self._sum = 0.0
        self._low = math.inf
        self._high = -math.inf

    def restart(self) -> None:
        """A new tare or calibration: its zero is the reference again, and a fault ends."""
        self.total_n = 0.0
        self.fault = False
        self._unrecorded_n = 0.0
        self._recorded_at = -math.inf
        self._clear()

    def interrupt(self) -> None:
        """The roller left the dock, or something pressed: the block being judged ends."""
        self._start = None

    def on_force(self, t: float, force_n: float) -> ZeroUpdate:
        """One reading (with the zero in use) while the roller rests in the dock."""
        p = self.params
        out = ZeroUpdate()
        if not p.enabled or self.fault:
            return out
        if self._start is None:
            self._clear()
            self._start = t
        self._count += 1
        self._sum += force_n
        self._low = min(self._low, force_n)
        self._high = max(self._high, force_n)
        elapsed = t - self._start
        if elapsed < p.window_s:
            return out
        mean = self._sum / self._count
        steady = self._count >= MIN_BLOCK_READINGS and self._high - self._low <= p.steady_n
        self._clear()
        self._start = t
        if not steady or abs(mean) > p.band_n or mean == 0.0:
            return out
        step_limit = p.max_rate_n_per_min * elapsed / 60.0
        step = max(-step_limit, min(step_limit, mean))
        if abs(self.total_n + step) > p.max_total_n:
            self.fault = True
            total = self.total_n + step
            detail = ZERO_DRIFT_DETAIL.format(total=total, limit=p.max_total_n)
            data = {"reason": ZERO_DRIFT, "total_n": round(total, 4), "detail": detail}
            out.events.append(Event(EventType.SENSOR_FAULT, t, data))
            return out
        self.total_n += step
        self._unrecorded_n += step
        out.shift_n = step
        if t - self._recorded_at >= p.record_interval_s:
            self._recorded_at = t
            data = {
                "reason": ZERO_TRACKING,
                "shift_n": round(self._unrecorded_n, 4),
                "total_n": round(self.total_n, 4),
            }
            self._unrecorded_n = 0.0
            out.events.append(Event(EventType.CALIBRATION_CHANGED, t, data))
        return out

    def _clear(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._low = math.inf
        self._high = -math.inf
