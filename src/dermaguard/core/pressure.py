"""The pressure path: validity → calibration → filters → zones, and the faults on the way.

Pure: fed raw codes and timestamps, it returns what happened. An unknown force is ``None``,
never 0 (safety rule S7).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from dermaguard.core.calibration import Calibration
from dermaguard.core.events import Event, EventType, Zone
from dermaguard.core.filters import Chain, Filter
from dermaguard.core.zones import ZoneClassifier, ZoneThresholds

SATURATED_HIGH = 0x7FFFFF
SATURATED_LOW = -0x800000


@dataclass(frozen=True, slots=True)
class PressureParams:
    """Everything the pressure path needs, taken from the config.

    No defaults here: the config schema is the one place they live (``dermaguard.config.params``
    builds these from a config or its defaults).
    """

    zones: ZoneThresholds
    capacity_n: float
    invalid_samples_for_fault: int
    valid_samples_for_recovery: int
    #: A force below minus this (N), for ``negative_samples_for_fault`` samples in a row, is a
    #: sensor fault: a load cell pressed the wrong way round reads negative, never "no contact".
    negative_margin_n: float
    negative_samples_for_fault: int


#: What a sustained negative force means, and what to check (the ``detail`` of its fault).
NEGATIVE_FORCE_DETAIL = (
    "it reads below -{margin:g} N: check that the load cell is not mounted or wired the wrong "
    "way round (turn it, or swap A+ and A-) and that the tare was not taken with a load on the "
    "roller (tare again with nothing touching it)"
)


@dataclass(slots=True)
class PressureUpdate:
    """The outcome of one input: the processed sample (if any) and the events it raised."""

    force_n: float | None = None
    zone: Zone | None = None
    sample: bool = False
    events: list[Event] = field(default_factory=list)


#: What a reading pinned at the top of the range means (the ``detail`` of its fault).
PINNED_HIGH_DETAIL = (
    "it reads at the top of its range: the force is at least {capacity:g} N, so the "
    "over-pressure alarm stays on; if nothing presses that hard, check the load cell's wires "
    "to A+ and A- and load_cell.capacity_n"
)


def pinned_high(raw: int, force_n: float, capacity_n: float) -> bool:
    """A reading at the top of the range: a code saturated high, or a force beyond the cell's
    capacity in the pressing direction. The real force is at least that high, so it is at
    least over-pressure (``over_n`` < ``capacity_n``, checked by the config), never a mere
    fault. The bottom of the range proves nothing of the kind and stays a fault."""
    return raw >= SATURATED_HIGH or (raw > SATURATED_LOW and force_n > capacity_n)


def invalid_reason(raw: int, force_n: float, last_force_n: float | None, capacity_n: float) -> str:
    """Why a conversion cannot be a real reading ('' when it can)."""
    if raw >= SATURATED_HIGH or raw <= SATURATED_LOW:
        return "saturated"
    if abs(force_n) > capacity_n:
        return "beyond_capacity"
    if last_force_n is not None and abs(force_n - last_force_n) > capacity_n:
        return "impossible_jump"
    return ""


class PressureMachine:
    """Holds the filter, zone and fault state of the force signal."""

    def __init__(
        self,
        params: PressureParams,
        calibration: Calibration,
        spike: Sequence[Filter] = (),
        smoothing: Sequence[Filter] = (),
    ) -> None:
        self.params = params
        self.calibration = calibration
        self.spike = Chain(spike)
        self.smoothing = Chain(smoothing)
        self.zones = ZoneClassifier(params.zones)
        self.fault: str | None = None
        #: The force is unknown (a fault other than a reading pinned at the top of the range):
        #: no zone, no alarm from the force, until good readings return.
        self.blind = False
        self.force_n: float | None = None
        self._last_valid: float | None = None
        self._invalid_run = 0
        self._high_run = 0
        self._valid_run = 0
        self._negative_run = 0
        self._over_since: float | None = None
        self._over_peak = 0.0

    @property
    def alarm_delay_samples(self) -> float:
        """Samples between the force crossing ``over_n`` and the alarm: the spike stage only."""
        return self.spike.delay_samples

    @property
    def zone(self) -> Zone | None:
        return None if self.blind else self.zones.zone

    @property
    def over_pressure(self) -> bool:
        """An over-pressure episode is open: the force reached ``over_n`` and no known force
        below it has come since. A fault that makes the force unknown keeps it open (the
        force was last known too high), as does a reading pinned at the top of the range."""
        return self._over_since is not None

    def set_calibration(self, calibration: Calibration) -> None:
        """A new tare or calibration: restart the filters so old counts do not leak in."""
        self.calibration = calibration
        self._reset_signal()

    def shift_zero(self, offset: float) -> None:
        """Zero tracking moved the zero a little: unlike a tare, the filters keep running."""
        self.calibration = dataclasses.replace(self.calibration, offset=offset)

    def _reset_signal(self) -> None:
        self.spike.reset()
        self.smoothing.reset()
        self._last_valid = None

    def on_read(self, t: float, raw: int) -> PressureUpdate:
        force = self.calibration.force(raw)
        if pinned_high(raw, force, self.params.capacity_n):
            return self._pinned_high(t, raw)
        self._high_run = 0
        reason = invalid_reason(raw, force, self._last_valid, self.params.capacity_n)
        if reason:
            return self._invalid(t, reason, raw)
        self._invalid_run = 0
        if force < -self.params.negative_margin_n:
            return self._negative(t, raw, force)
        self._negative_run = 0
        out = PressureUpdate()
        if self.fault is not None:
            self._valid_run += 1
            if self._valid_run < self.params.valid_samples_for_recovery:
                if self.blind:
                    return out
            else:
                out.events.append(Event(EventType.SENSOR_RECOVERED, t, {"after": self.fault}))
                self.fault = None
                if self.blind:
                    self.blind = False
                    self._reset_signal()
                    self.zones.reset()
        self._last_valid = force
        self._process(t, force, out)
        return out

    def _process(self, t: float, force: float, out: PressureUpdate) -> None:
        """Filters, zones and the over-pressure events for one force the alarm can trust."""
        fast = self.spike(force)
        smooth = self.smoothing(fast)
        zone = self.zones.update(fast, smooth)
        self.force_n = smooth
        self._over_events(t, zone, fast, out)
        out.force_n, out.zone, out.sample = smooth, zone, True

    def _pinned_high(self, t: float, raw: int) -> PressureUpdate:
        """A reading pinned at the top of the range goes down the alarm path as the capacity
        (the least the force can be), through the spike filter like any sample; a run of them
        adds a fault beside the alarm, which stays."""
        self._valid_run = 0
        self._negative_run = 0
        self._invalid_run = 0
        self._high_run += 1
        out = PressureUpdate()
        if self.blind:  # the force was unknown; now it is known to be high
            self.blind = False
            self._reset_signal()
            self.zones.reset()
        self._process(t, self.params.capacity_n, out)
        self._last_valid = None  # from beyond the range, any fall is possible
        if self.fault is None and self._high_run >= self.params.invalid_samples_for_fault:
            reason = "saturated" if raw >= SATURATED_HIGH else "beyond_capacity"
            self.fault = reason
            capacity = self.params.capacity_n
            data = {
                "reason": reason,
                "raw": raw,
                "detail": PINNED_HIGH_DETAIL.format(capacity=capacity),
                "at_least_n": capacity,
            }
            out.events.append(Event(EventType.SENSOR_FAULT, t, data))
        return out

    def on_timeout(self, t: float, detail: str = "", reason: str = "not_ready") -> PressureUpdate:
        """No conversion came within the limit (already several sample periods late);
        ``reason`` says why when the shell knows (``bus_error``, ``engine_stalled``)."""
        return self._raise_fault(t, reason, None, detail)

    def _negative(self, t: float, raw: int, force: float) -> PressureUpdate:
        """A force below the negative margin is held back from the filters and zones (a
        reversed cell would otherwise read as "no contact" however hard it is pressed); a few
        in a row are a fault, and none of them counts towards a recovery."""
        self._valid_run = 0
        self._negative_run += 1
        if self._negative_run < self.params.negative_samples_for_fault:
            return PressureUpdate()
        detail = NEGATIVE_FORCE_DETAIL.format(margin=self.params.negative_margin_n)
        return self._raise_fault(t, "negative_force", raw, detail, force_n=force)

    def _invalid(self, t: float, reason: str, raw: int | None) -> PressureUpdate:
        self._valid_run = 0
        self._invalid_run += 1
        if self._invalid_run >= self.params.invalid_samples_for_fault:
            return self._raise_fault(t, reason, raw)
        return PressureUpdate()

    def _raise_fault(
        self,
        t: float,
        reason: str,
        raw: int | None,
        detail: str = "",
        force_n: float | None = None,
    ) -> PressureUpdate:
        self._valid_run = 0
        self._high_run = 0
        out = PressureUpdate(force_n=None, zone=None, sample=True)
        if self.blind:
            return out
        # An open over-pressure episode stays open: only a known force below the limit ends it.
        self.fault = reason
        self.blind = True
        self.force_n = None
        self._reset_signal()
        data: dict[str, object] = {"reason": reason}
        if raw is not None:
            data["raw"] = raw
        if force_n is not None:
            data["force_n"] = round(force_n, 3)
        if detail:
            data["detail"] = detail
        out.events.append(Event(EventType.SENSOR_FAULT, t, data))
        return out

    def _over_events(self, t: float, zone: Zone, fast: float, out: PressureUpdate) -> None:
        """Opens, follows and ends the episode; it is open across a fault (``_over_since``),
        so a force still over the limit when readings return continues it, silently."""
        if zone == "over" and self._over_since is None:
            self._over_since = t
            self._over_peak = fast
            out.events.append(
                Event(
                    EventType.OVER_PRESSURE,
                    t,
                    {"force_n": round(fast, 3), "limit_n": self.params.zones.over_n},
                )
            )
        elif zone == "over":
            self._over_peak = max(self._over_peak, fast)
        elif self._over_since is not None:
            self._end_over(t, out, cause="force_dropped")

    def _end_over(self, t: float, out: PressureUpdate, cause: str) -> None:
        since = self._over_since if self._over_since is not None else t
        out.events.append(
            Event(
                EventType.OVER_PRESSURE_CLEARED,
                t,
                {
                    "duration_s": round(t - since, 3),
                    "peak_n": round(self._over_peak, 3),
                    "cause": cause,
                },
            )
        )
        self._over_since = None
