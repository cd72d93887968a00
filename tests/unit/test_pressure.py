"""The pressure path in the pure core, with virtual time."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.config.params import (
    default_engine_params,
    default_pressure_params,
    default_zone_thresholds,
)
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
from dermaguard.core.pressure import SATURATED_LOW, PressureMachine, PressureUpdate
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


# --- the pressure machine alone -------------------------------------------------------------

#: A power-of-two scale, so that every force below is exact and a limit can be hit exactly.
COUNTS = 1024
EXACT = Calibration(offset=0.0, scale_n_per_count=1 / COUNTS)
#: The HX711's 24-bit two's-complement code clamps at these ends (written out, not taken from
#: the module: the chip's range is the fact under test).
TOP, BOTTOM = 0x7FFFFF, -0x800000


def machine(calibration: Calibration = EXACT, **params: float) -> PressureMachine:
    """No filters: the force a reading gives is the force the zones and events see."""
    return PressureMachine(default_pressure_params(**params), calibration)


def code(force_n: float) -> int:
    return round(force_n * COUNTS)


def fault_times(m: PressureMachine, readings: list[tuple[float, int]]) -> list[float]:
    return [e.t for t, r in readings for e in m.on_read(t, r).events if e.type == "sensor_fault"]


def test_only_the_24_bit_range_ends_are_saturation_and_a_run_of_them_faults_on_time() -> None:
    """The HX711 reports a force beyond its range as one of its two end codes, so those two, and
    only those, are saturation; a code one step inside is a conversion like any other (with the
    zero next to it, it reads 0 N). A run of end codes raises the fault at the stated count,
    counted from the first of the run, on a fresh machine and after good readings alike; the
    bottom one is never taken for a force, as ``pinned_high`` says."""
    for raw in (TOP - 1, BOTTOM + 1):
        m = machine(Calibration(offset=float(raw), scale_n_per_count=1 / COUNTS))
        up = m.on_read(0.0, raw)
        assert up.sample and up.force_n == 0.0 and m.fault is None
    n = default_pressure_params().invalid_samples_for_fault
    for raw in (TOP, BOTTOM):
        # Even with the zero at that code: the chip cannot tell a force from its clamp.
        m = machine(Calibration(offset=float(raw), scale_n_per_count=1 / COUNTS))
        assert fault_times(m, [(float(i), raw) for i in range(n + 2)]) == [n - 1.0]
        assert m.fault == "saturated"
        assert m.over_pressure is (raw == TOP)  # the top is at least over-pressure
        m = machine()
        good = [(float(i), code(1.0)) for i in range(5)]
        assert fault_times(m, [*good, *((5.0 + i, raw) for i in range(n + 2))]) == [5.0 + n - 1]
        assert m.fault == "saturated"
    # The bottom code proves no force, whatever the calibration makes of it: even read as
    # beyond the capacity (a zero stored below the range), it is saturation, not over-pressure.
    m = machine(Calibration(offset=float(BOTTOM - code(100.0)), scale_n_per_count=1 / COUNTS))
    assert fault_times(m, [(float(i), BOTTOM) for i in range(n)]) == [n - 1.0]
    assert m.fault == "saturated" and not m.over_pressure


def test_a_reading_at_exactly_the_capacity_or_a_jump_of_exactly_it_is_a_real_reading() -> None:
    """The validity limits are "beyond the capacity" and "a jump of more than the capacity":
    a force at the capacity itself, held, and reached in one step from 0 N, is a reading (an
    over-pressure, not a fault); and a steady force above half the capacity is no jump at all."""
    m = machine()
    capacity = m.params.capacity_n
    assert m.on_read(0.0, code(0.0)).force_n == 0.0
    for i in range(1, 6):
        up = m.on_read(float(i), code(capacity))
        assert up.sample and up.force_n == capacity and up.zone == "over"
    assert m.fault is None
    m = machine()
    for i in range(6):
        up = m.on_read(float(i), code(0.6 * capacity))
        assert up.sample and up.force_n == 0.6 * capacity
    assert m.fault is None


def test_a_force_of_exactly_minus_the_negative_margin_is_a_reading() -> None:
    """Only a force *below* minus the margin is held back as a reversed cell might read."""
    m = machine(negative_margin_n=0.5)
    up = m.on_read(0.0, code(-0.5))
    assert up.sample and up.force_n == -0.5


def test_recovery_takes_exactly_the_stated_good_readings_and_restarts_the_zones() -> None:
    """After a fault that made the force unknown, the force is shown again only after
    ``valid_samples_for_recovery`` good readings in a row, not one sooner or later; and the
    zone then follows the force read now, not the zone held before the spell (2 N was "ok";
    0 N after recovery is "none" at once, not "ok" for another dwell)."""
    m = machine()
    for i in range(10):
        assert m.on_read(i * PERIOD, code(2.0)).zone in ("none", "ok")
    assert m.zone == "ok"
    t = 10 * PERIOD
    assert m.on_timeout(t).force_n is None and m.fault == "not_ready"
    n = m.params.valid_samples_for_recovery
    for i in range(1, n):
        up = m.on_read(t + i * PERIOD, code(0.0))
        assert up == PressureUpdate() and m.fault == "not_ready" and m.zone is None
    up = m.on_read(t + n * PERIOD, code(0.0))
    assert [e.type for e in up.events] == ["sensor_recovered"] and m.fault is None
    assert up.sample and up.force_n == 0.0 and up.zone == "none" and m.zone == "none"
    # Known again: the next fault is a new one, raised as such.
    later = m.on_timeout(t + (n + 1) * PERIOD)
    assert [e.type for e in later.events] == ["sensor_fault"] and m.zone is None


def test_an_over_pressure_episode_reports_its_force_peak_and_duration_rounded_to_3_places() -> None:
    """The history and MQTT get the force that opened the episode, its peak and how long it
    lasted, each to 3 decimals (mN, ms)."""
    m = machine()
    for i in range(4):
        m.on_read(0.25 * i, code(2.0))
    up = m.on_read(1.0, 4677)  # 4.5673828125 N
    [opened] = up.events
    assert opened.type == "over_pressure"
    assert opened.data == {"force_n": 4.567, "limit_n": m.params.zones.over_n}
    m.on_read(1.25, 6000)  # the peak, 5.859375 N
    m.on_read(1.5, 5000)
    cleared = [e for i in range(4) for e in m.on_read(2.1234 + 0.25 * i, code(1.0)).events]
    assert [(e.type, e.t) for e in cleared] == [("over_pressure_cleared", 2.6234)]
    assert cleared[0].data == {"duration_s": 1.623, "peak_n": 5.859, "cause": "force_dropped"}


def test_a_new_calibration_restarts_both_filter_stages() -> None:
    """A tare changes what every count means: filters still holding forces of the old
    calibration would blend them into the new (2 N held, then tared to read 0 N: a median
    holding the old forces would still say 2 N, an average still holding them 1 N)."""
    m = PressureMachine(default_pressure_params(), EXACT, (Median(3),), (Ema(0.5),))
    for i in range(10):
        m.on_read(i * PERIOD, code(2.0))
    assert m.force_n == 2.0
    m.set_calibration(Calibration(offset=float(code(2.0)), scale_n_per_count=1 / COUNTS))
    assert m.on_read(10 * PERIOD, code(2.0)).force_n == 0.0


def test_the_pressure_parameters_cannot_change_once_built() -> None:
    """Built once from a config the schema checked (``over_n`` below ``capacity_n``, which makes
    a reading pinned at the top an over-pressure); no limit may change behind that check."""
    params = default_pressure_params()
    with pytest.raises(FrozenInstanceError):
        params.capacity_n = 1.0  # type: ignore[misc]
