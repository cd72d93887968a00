"""Pressure zones with hysteresis and a minimum dwell, so the display never chatters.

``over`` is special: it is entered at once from the spike-rejected signal (an alarm must not
wait), and left only when the smoothed force has stayed below ``high_n - hysteresis_n`` for the
dwell. Every other change needs the smoothed force past a boundary (by the hysteresis when going
down) for ``dwell_samples`` consecutive samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from dermaguard.core.events import ZONES, Zone


@dataclass(frozen=True, slots=True)
class ZoneThresholds:
    """Lower bounds of each zone in newtons, the hysteresis and the dwell, from the config.

    No defaults here: the config schema is the one place they live, with their basis in
    docs/CARE.md (``dermaguard.config.params`` builds these from a config or its defaults).
    """

    contact_n: float
    ok_n: float
    high_n: float
    over_n: float
    hysteresis_n: float
    dwell_samples: int

    def lower_bound(self, zone: Zone) -> float:
        """The force at which ``zone`` starts (``none`` starts at minus infinity)."""
        return {
            "none": float("-inf"),
            "light": self.contact_n,
            "ok": self.ok_n,
            "high": self.high_n,
            "over": self.over_n,
        }[zone]

    def plain_zone(self, force_n: float) -> Zone:
        """The zone of a force ignoring hysteresis and dwell."""
        if force_n >= self.over_n:
            return "over"
        if force_n >= self.high_n:
            return "high"
        if force_n >= self.ok_n:
            return "ok"
        if force_n >= self.contact_n:
            return "light"
        return "none"


class ZoneClassifier:
    """Turns (fast, smooth) force pairs into a stable zone."""

    def __init__(self, thresholds: ZoneThresholds) -> None:
        self.th = thresholds
        self.zone: Zone = "none"
        self._pending: int = 0

    def reset(self) -> None:
        self.zone = "none"
        self._pending = 0

    def _candidate(self, smooth: float) -> Zone:
        """Where the smoothed force would take us, with hysteresis on the way down."""
        th = self.th
        if self.zone == "over":
            if smooth < th.high_n - th.hysteresis_n:
                return th.plain_zone(smooth + th.hysteresis_n)
            return "over"
        target = th.plain_zone(smooth)
        if target == "over":
            target = "high"  # only the fast path enters `over`
        if ZONES.index(target) < ZONES.index(self.zone):
            if smooth >= th.lower_bound(self.zone) - th.hysteresis_n:
                return self.zone
            # Going down: land in the zone the force is in, by the hysteresis margin.
            return th.plain_zone(smooth + th.hysteresis_n)
        return target

    def update(self, fast: float, smooth: float) -> Zone:
        """Feed one sample; returns the zone after it."""
        if self.zone != "over" and fast >= self.th.over_n:
            self.zone = "over"
            self._pending = 0
            return self.zone
        candidate = self._candidate(smooth)
        if candidate == self.zone:
            self._pending = 0
            return self.zone
        self._pending += 1
        if self._pending >= self.th.dwell_samples:
            self.zone = candidate
            self._pending = 0
        return self.zone
