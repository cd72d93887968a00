"""From force to alarm: the filter chain, the zones, the sensor-fault rules, the alarm outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from dermaguard.config.fields import meta
from dermaguard.config.messages import join_path, not_allowed

FilterKind = Literal["median", "moving_average", "ema"]

#: Filter kinds that reject spikes; the over-pressure alarm taps the signal after them.
SPIKE_REJECTION: frozenset[str] = frozenset({"median"})


@dataclass(frozen=True)
class MedianParams:
    """Spike rejection: the median of the last `window` samples."""

    window: int = field(
        default=3,
        metadata=meta(
            min=3, max=9, allowed="odd integer >= 3 and <= 9", doc="Samples in the median."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """An even window has no middle sample."""
        if self.window % 2 == 0:
            return [not_allowed(join_path(path, "window"), self.window, "must be odd")]
        return []


@dataclass(frozen=True)
class MovingAverageParams:
    """Smoothing: the mean of the last `window` samples."""

    window: int = field(
        default=4, metadata=meta(min=2, max=50, doc="Samples averaged; delay (window-1)/2.")
    )


@dataclass(frozen=True)
class EmaParams:
    """Smoothing: an exponential moving average."""

    alpha: float = field(
        default=0.5,
        metadata=meta(
            min_exclusive=0, max=1, doc="Weight of the newest sample; 1 means no smoothing."
        ),
    )


@dataclass(frozen=True)
class FilterSpec:
    """One step of the force filter chain, as configured (only its kind's parameter is set)."""

    kind: FilterKind
    window: int | None = None
    alpha: float | None = None

    @property
    def is_spike_rejection(self) -> bool:
        return self.kind in SPIKE_REJECTION


FILTER_VARIANTS: dict[str, type] = {
    "median": MedianParams,
    "moving_average": MovingAverageParams,
    "ema": EmaParams,
}
#: The default chain: a median then an EMA, each with its kind's default parameter.
DEFAULT_FILTERS = (
    FilterSpec("median", window=MedianParams().window),
    FilterSpec("ema", alpha=EmaParams().alpha),
)
_ZONE_THRESHOLDS = ("contact_n", "ok_n", "high_n", "over_n")


@dataclass(frozen=True)
class ZonesConfig:
    """Force zones in newtons, lowest first; each threshold is where its zone starts."""

    contact_n: float = field(
        default=0.3, metadata=meta(min_exclusive=0, doc="Touching the skin: zone light.")
    )
    ok_n: float = field(
        default=1.0, metadata=meta(allowed="number > contact_n", doc="Start of zone ok.")
    )
    high_n: float = field(
        default=3.0,
        metadata=meta(allowed="number > ok_n", doc="Start of zone high: firmer than needed."),
    )
    over_n: float = field(
        default=4.5,
        metadata=meta(
            allowed="number > high_n and < load_cell.capacity_n",
            doc="Over-pressure: alarms at once; clears below high_n - hysteresis_n.",
        ),
    )
    hysteresis_n: float = field(
        default=0.2,
        metadata=meta(
            min=0,
            allowed="number >= 0 and < the smallest gap between thresholds",
            doc="A zone is left only this far past its threshold, so it does not chatter.",
        ),
    )
    dwell_samples: int = field(
        default=3,
        metadata=meta(
            min=1, max=80, doc="Samples a new zone must hold before it shows (over: at once)."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """Zones must be ordered, and the hysteresis must not reach across a whole zone."""
        errors: list[str] = []
        for lower, upper in pairwise(_ZONE_THRESHOLDS):
            low, high = getattr(self, lower), getattr(self, upper)
            if not high > low:
                requirement = f"must be > {join_path(path, lower)} ({low})"
                errors.append(not_allowed(join_path(path, upper), high, requirement))
        if errors:
            return errors
        gap, lower, upper = min(
            (getattr(self, hi) - getattr(self, lo), lo, hi) for lo, hi in pairwise(_ZONE_THRESHOLDS)
        )
        if not self.hysteresis_n < gap:
            requirement = (
                f"must be < {gap:.6g}, the smallest gap between thresholds "
                f"({join_path(path, lower)} to {join_path(path, upper)})"
            )
            key = join_path(path, "hysteresis_n")
            errors.append(not_allowed(key, self.hysteresis_n, requirement))
        return errors


@dataclass(frozen=True)
class ZeroTrackingConfig:
    """Follow the zero's slow drift while the roller rests in the dock (core/zero_tracking.py).

    Every number is an engineering estimate (docs/CARE.md), after weighing instruments'
    automatic zero-tracking: steady, near zero, rate-limited, within a bounded total.
    """

    enabled: bool = field(
        default=True, metadata=meta(doc="Follow the zero while the roller rests in the dock.")
    )
    band_n: float = field(
        default=0.1,
        metadata=meta(min_exclusive=0, max=1, doc="Follow only readings within this of zero (N)."),
    )
    steady_n: float = field(
        default=0.03,
        metadata=meta(
            min_exclusive=0, max=0.5, doc="A block is steady when its readings span at most this."
        ),
    )
    window_s: float = field(
        default=10.0,
        metadata=meta(min=1, max=600, doc="Readings are judged in blocks this long (s)."),
    )
    max_rate_n_per_min: float = field(
        default=0.02,
        metadata=meta(
            min_exclusive=0, max=1, doc="The zero moves at most this fast (N per minute)."
        ),
    )
    max_total_n: float = field(
        default=1.0,
        metadata=meta(
            min_exclusive=0,
            max=5,
            doc="Beyond this from the last tare (N) is a fault asking for a tare and reference.",
        ),
    )
    record_interval_s: float = field(
        default=600.0,
        metadata=meta(
            min=10, max=86400, doc="Corrections are recorded as an event at most this often."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A block must be able to be steady inside the band."""
        if self.steady_n > 2 * self.band_n:
            requirement = f"must be <= 2 * {join_path(path, 'band_n')} ({2 * self.band_n:g})"
            return [not_allowed(join_path(path, "steady_n"), self.steady_n, requirement)]
        return []


@dataclass(frozen=True)
class PressureConfig:
    """From force to zones: the filter chain, the zones and the sensor-fault rules."""

    filters: tuple[FilterSpec, ...] = field(
        default=DEFAULT_FILTERS,
        metadata=meta(
            variants=FILTER_VARIANTS,
            doc="Filters in the order they run; spike rejection first (the alarm taps after it).",
        ),
    )
    zones: ZonesConfig = field(
        default_factory=ZonesConfig, metadata=meta(doc="Force zones, hysteresis and dwell.")
    )
    invalid_samples_for_fault: int = field(
        default=3,
        metadata=meta(min=1, max=80, doc="Invalid samples in a row that raise sensor_fault."),
    )
    valid_samples_for_recovery: int = field(
        default=3,
        metadata=meta(min=1, max=80, doc="Valid samples in a row that clear sensor_fault."),
    )
    negative_margin_n: float = field(
        default=0.5,
        metadata=meta(
            min_exclusive=0,
            max=10,
            doc="A force below minus this is no reading: a reversed cell or a tare under load.",
        ),
    )
    negative_samples_for_fault: int = field(
        default=10,
        metadata=meta(
            min=1, max=80, doc="Samples in a row below -negative_margin_n that raise sensor_fault."
        ),
    )
    zero_tracking: ZeroTrackingConfig = field(
        default_factory=ZeroTrackingConfig,
        metadata=meta(doc="Follow the zero's drift while the roller rests in the dock."),
    )

    @property
    def spike_filters(self) -> tuple[FilterSpec, ...]:
        """The filters before the over-pressure tap."""
        return tuple(f for f in self.filters if f.is_spike_rejection)

    @property
    def smoothing_filters(self) -> tuple[FilterSpec, ...]:
        """The filters after the over-pressure tap (they feed the zone display)."""
        return tuple(f for f in self.filters if not f.is_spike_rejection)

    def _check(self, path: str) -> list[str]:
        """An alarm must never wait for smoothing, so spike rejection must come first."""
        errors: list[str] = []
        smoothing_seen = False
        for index, spec in enumerate(self.filters):
            if not spec.is_spike_rejection:
                smoothing_seen = True
            elif smoothing_seen:
                key = join_path(path, f"filters[{index}].{spec.kind}")
                errors.append(f"{key}: spike-rejection filters must come before smoothing filters")
        return errors


#: The longest silence a config may allow, and a command may ask for (mqtt/commands.py).
SILENCE_MAX_S = 600


@dataclass(frozen=True)
class AlarmConfig:
    """How the over-pressure alarm is given; the visual (LED) alarm cannot be disabled."""

    buzzer: bool = field(
        default=True,
        metadata=meta(doc="Also sound the buzzer; the visual LED alarm cannot be disabled."),
    )
    led_active_high: bool = field(default=True, metadata=meta(doc="LED lights on a high GPIO."))
    buzzer_active_high: bool = field(
        default=True, metadata=meta(doc="Buzzer sounds on a high GPIO.")
    )
    silence_s: float = field(
        default=120.0,
        metadata=meta(
            min=10,
            max=SILENCE_MAX_S,
            doc="Longest the silence command mutes the buzzer; the LED alarm is never muted.",
        ),
    )
