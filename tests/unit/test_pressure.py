"""The pressure path in the pure core, with virtual time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.config.params import default_engine_params, default_zone_thresholds
from dermaguard.core.calibration import Calibration
from dermaguard.core.engine import Engine
from dermaguard.core.events import (
    EmitEvent,
    ForceRead,
    ForceSample,
    Priority,
    ReadFailed,
    ShowIndicators,
)
from dermaguard.core.filters import Ema, Median
from dermaguard.core.pressure import SATURATED_LOW
from dermaguard.core.zones import ZoneClassifier

COUNTS_PER_N = 40_000
PERIOD = 1 / 80
CAL = Calibration(offset=0.0, scale_n_per_count=1 / COUNTS_PER_N)
TH = default_zone_thresholds()


def make_engine(median: int = 3, alpha: float = 0.5) -> Engine:
    return Engine(default_engine_params(), CAL, (Median(median),), (Ema(alpha),))


def raw(force_n: float) -> int:
    return round(force_n * COUNTS_PER_N)


def feed(engine: Engine, forces: list[float], start: int = 0) -> list[list[object]]:
    return [
        list(engine.handle(ForceRead((start + i) * PERIOD, raw(f)))) for i, f in enumerate(forces)
    ]


def events_of(effects: list[list[object]]) -> list[str]:
    return [e.event.type for batch in effects for e in batch if isinstance(e, EmitEvent)]


def test_zones_follow_a_slow_ramp_in_order() -> None:
    engine = make_engine()
    ramp = [i * 0.01 for i in range(0, 440)]  # up to 4.39 N, below over
    batches = feed(engine, ramp)
    zones = [
        e.zone for b in batches for e in b if isinstance(e, ForceSample) and e.zone is not None
    ]
    seen = [z for i, z in enumerate(zones) if i == 0 or z != zones[i - 1]]
    assert seen == ["none", "light", "ok", "high"]


def test_over_pressure_alarms_within_the_spike_filter_delay_and_clears_below_high() -> None:
    engine = make_engine()
    feed(engine, [2.0] * 20)
    delay = int(engine.pressure.alarm_delay_samples)
    batches = feed(engine, [5.0] * 10, start=20)
    first = next(i for i, b in enumerate(batches) if "over_pressure" in events_of([b]))
    assert first == delay
    shown = [e for e in batches[first] if isinstance(e, ShowIndicators)]
    assert shown and shown[0].alarm is Priority.HIGH
    # Indicators come before anything else in the same batch.
    assert isinstance(batches[first][0], ShowIndicators)
    # Dropping to 3.5 N (still `high`) does not clear it; dropping below high - hysteresis does.
    assert "over_pressure_cleared" not in events_of(feed(engine, [3.5] * 30, start=30))
    cleared = feed(engine, [1.5] * 30, start=60)
    assert "over_pressure_cleared" in events_of(cleared)


def test_a_single_spike_does_not_alarm() -> None:
    engine = make_engine()
    feed(engine, [2.0] * 10)
    assert "over_pressure" not in events_of(feed(engine, [2.0, 9.0, 2.0, 2.0], start=10))


def test_s7_sensor_timeout_is_a_fault_and_force_is_unknown_not_zero() -> None:
    engine = make_engine()
    feed(engine, [1.5] * 10)
    effects = engine.handle(ReadFailed(10 * PERIOD, "timeout"))
    samples = [e for e in effects if isinstance(e, ForceSample)]
    assert samples and samples[0].force_n is None and samples[0].zone is None
    assert "sensor_fault" in events_of([effects])
    shown = [e for e in effects if isinstance(e, ShowIndicators)]
    assert shown[0].alarm is Priority.MEDIUM and shown[0].zone is None
    assert engine.pressure.force_n is None
    # Recovery needs several good samples in a row, then the force is known again.
    batches = feed(engine, [1.5] * 5, start=11)
    assert "sensor_recovered" in events_of(batches)
    assert engine.pressure.force_n is not None and abs(engine.pressure.force_n - 1.5) < 1e-6


def test_s7_saturated_codes_in_a_row_raise_a_fault() -> None:
    # Saturated low: the bottom of the range proves no force, so it is a fault (the top of the
    # range is at least over-pressure: tests/unit/test_pinned_high.py).
    engine = make_engine()
    feed(engine, [1.0] * 5)
    effects = [engine.handle(ForceRead((5 + i) * PERIOD, SATURATED_LOW)) for i in range(3)]
    assert events_of(effects) == ["sensor_fault"]
    assert engine.pressure.fault == "saturated"


def test_an_isolated_invalid_sample_is_skipped_without_fault() -> None:
    engine = make_engine()
    feed(engine, [1.0] * 5)
    effects = engine.handle(ForceRead(5 * PERIOD, SATURATED_LOW))
    assert effects == []
    assert engine.pressure.fault is None


def test_a_fault_during_over_pressure_keeps_the_high_alarm() -> None:
    engine = make_engine()
    feed(engine, [5.0] * 5)
    assert engine.pressure.over_pressure
    effects = engine.handle(ReadFailed(5 * PERIOD, "timeout"))
    evs = [e.event for e in effects if isinstance(e, EmitEvent)]
    assert [e.type for e in evs] == ["sensor_fault"]
    assert engine.pressure.over_pressure and engine.indicators().alarm_reason == "over_pressure"


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.sampled_from(["contact_n", "ok_n", "high_n", "over_n"]),
    noise=st.lists(st.floats(-0.095, 0.095), min_size=20, max_size=300),
)
def test_zone_hysteresis_never_chatters_on_noise_at_a_threshold(
    threshold: str, noise: list[float]
) -> None:
    """Noise within ± half the hysteresis around any threshold changes the zone at most once."""
    base = getattr(TH, threshold)
    classifier = ZoneClassifier(TH)
    # Settle just below the threshold first (in the zone below it).
    for _ in range(10):
        classifier.update(base - 0.3, base - 0.3)
    start = classifier.zone
    zones = [classifier.update(base + n, base + n) for n in noise]
    changes = sum(1 for a, b in zip([start, *zones], zones, strict=False) if a != b)
    assert changes <= 1


@settings(max_examples=300, deadline=None)
@given(signal=st.lists(st.floats(0.0, 6.0), min_size=5, max_size=300))
def test_zone_dwell_holds_every_zone_but_over_for_the_minimum_samples(signal: list[float]) -> None:
    classifier = ZoneClassifier(TH)
    zones = [classifier.update(x, x) for x in signal]
    last_change = -TH.dwell_samples
    for i in range(1, len(zones)):
        if zones[i] != zones[i - 1]:
            if zones[i] != "over":
                assert i - last_change >= TH.dwell_samples
            last_change = i


@settings(max_examples=300, deadline=None)
@given(
    before=st.lists(st.floats(0.0, 4.0), min_size=3, max_size=50),
    level=st.floats(4.5, 20.0),
)
def test_over_pressure_always_alarms_within_the_stated_delay(
    before: list[float], level: float
) -> None:
    """A sustained force at or over the limit alarms within the spike filter's delay."""
    engine = make_engine()
    feed(engine, before)
    delay = int(engine.pressure.alarm_delay_samples)
    batches = feed(engine, [level] * (delay + 1), start=len(before))
    assert engine.pressure.over_pressure
    assert events_of(batches).count("over_pressure") == 1
