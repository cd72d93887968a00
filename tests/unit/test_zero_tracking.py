"""Zero tracking: the zero follows slow drift only while the roller rests in the dock, steady and
near zero, at a limited rate and within a bounded range; beyond it is a fault asking for a new
tare and reference (core/zero_tracking.py, docs/CARE.md)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from dermaguard.config.params import (
    default_case_params,
    default_engine_params,
    default_zero_tracking_params,
)
from dermaguard.core.calibration import Calibration, CalibrationPoint
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine
from dermaguard.core.events import Command, EmitEvent, Event, EventType, ForceRead
from dermaguard.core.filters import Median
from dermaguard.core.words import describe
from dermaguard.core.zero_tracking import ZERO_DRIFT, ZERO_TRACKING, ZeroTracker
from dermaguard.sim.hx711_chip import LoadModel, ThermalDrift

PARAMS = default_zero_tracking_params()
MODEL = LoadModel(noise_counts=40.0)  # about 1 mN of noise at 40,000 counts/N
CAL = Calibration(
    offset=MODEL.offset_counts,
    scale_n_per_count=1 / MODEL.counts_per_newton,
    points=(CalibrationPoint(MODEL.offset_counts, 0.0), CalibrationPoint(280_000.0, 5.0)),
)


def feed(tracker: ZeroTracker, t0: float, seconds: float, force_n: float, rate: float = 8.0):
    """Readings of ``force_n`` for ``seconds``; the shifts applied and the events, in order."""
    shifts, events = [], []
    n = int(seconds * rate)
    for i in range(n):
        update = tracker.on_force(t0 + i / rate, force_n - tracker.total_n)
        shifts.append(update.shift_n)
        events.extend(update.events)
    return shifts, events


# -- the tracker alone --------------------------------------------------------------------------


def test_a_steady_offset_inside_the_band_is_followed_at_the_limited_rate() -> None:
    tracker = ZeroTracker(PARAMS)
    shifts, _ = feed(tracker, 0.0, 120.0, 0.08)
    per_block = PARAMS.max_rate_n_per_min * PARAMS.window_s / 60
    assert max(shifts) <= per_block + 1e-12
    assert 0 < tracker.total_n < 0.08
    feed(tracker, 120.0, 600.0, 0.08)
    assert tracker.total_n == pytest.approx(0.08)  # followed all the way in the end


@pytest.mark.parametrize(
    ("force_n", "why"), [(0.15, "outside the band"), (-0.15, "outside the band")]
)
def test_a_reading_outside_the_band_is_never_followed(force_n: float, why: str) -> None:
    tracker = ZeroTracker(PARAMS)
    shifts, events = feed(tracker, 0.0, 300.0, force_n)
    assert not any(shifts), why
    assert not events


def test_an_unsteady_reading_is_never_followed() -> None:
    tracker = ZeroTracker(PARAMS)
    for i in range(2400):  # five minutes swinging ±0.02 N around +0.05 N
        update = tracker.on_force(i / 8, 0.05 + (0.02 if i % 2 else -0.02))
        assert update.shift_n == 0.0
    assert tracker.total_n == 0.0


def test_an_interruption_restarts_the_block() -> None:
    tracker = ZeroTracker(PARAMS)
    for i in range(2400):
        if i % 40 == 39:  # every 5 s: the roller is touched (shorter than a block)
            tracker.interrupt()
            continue
        assert tracker.on_force(i / 8, 0.05).shift_n == 0.0


def test_corrections_are_recorded_at_most_every_record_interval_and_add_up() -> None:
    tracker = ZeroTracker(PARAMS)
    events: list[Event] = []
    t, total_seen = 0.0, 0.0
    for _ in range(3):  # the zero keeps drifting up: 0.05 N every 20 minutes
        total_seen += 0.05
        _, got = feed(tracker, t, 1200.0, total_seen)
        events.extend(got)
        t += 1200.0
    records = [e for e in events if e.type == EventType.CALIBRATION_CHANGED]
    assert all(e.data["reason"] == ZERO_TRACKING for e in records)
    times = [e.t for e in records]
    assert all(b - a >= PARAMS.record_interval_s for a, b in pairwise(times))
    assert len(records) <= 3600 / PARAMS.record_interval_s + 1
    recorded = sum(e.data["shift_n"] for e in records)
    assert tracker.total_n - recorded < 0.05  # only what came since the last record is unsaid
    assert describe(records[0]).startswith("zero followed a drift: +0.0")
    assert records[-1].data["total_n"] == pytest.approx(recorded, abs=1e-3)


def test_a_correction_beyond_the_range_is_a_fault_until_a_restart() -> None:
    tracker = ZeroTracker(default_zero_tracking_params(max_total_n=0.05))
    _, events = feed(tracker, 0.0, 600.0, 0.08)
    faults = [e for e in events if e.type == EventType.SENSOR_FAULT]
    assert len(faults) == 1 and faults[0].data["reason"] == ZERO_DRIFT
    assert "tare" in faults[0].data["detail"] and "reference" in faults[0].data["detail"]
    assert "force unknown" not in describe(faults[0])  # the force is known, off by the drift
    assert tracker.fault and abs(tracker.total_n) <= 0.05
    shifts, _ = feed(tracker, 600.0, 120.0, 0.0)
    assert not any(shifts)  # nothing is followed while the fault stands
    tracker.restart()
    assert not tracker.fault and tracker.total_n == 0.0


# -- through the engine -------------------------------------------------------------------------


def engine(**zero: object) -> Engine:
    params = default_engine_params(
        case=default_case_params(cycle_s=60.0, auto_start=False),
        zero_tracking=default_zero_tracking_params(**zero),
    )
    e = Engine(params, CAL, (Median(3),), ())
    e.handle(DockChanged(0.0, True))
    return e


def events_of(effects: list[object]) -> list[Event]:
    return [x.event for x in effects if isinstance(x, EmitEvent)]


def alarm_force_after_drift(e: Engine, drift_n: float, hours: float = 2.0) -> float:
    """The roller rests in the dock while the zero drifts by ``drift_n`` over ``hours`` (a room
    warming), then it is taken out and pressed ever harder: the real force when the
    over-pressure alarm trips. One reading a second while docked keeps the test fast."""
    rng = random.Random(76)
    span = hours * 3600
    model = LoadModel(
        noise_counts=MODEL.noise_counts,
        thermal=ThermalDrift(drift_n * MODEL.counts_per_newton, span, scale_share_span=0.002),
    )
    t = 0.0
    while t < span:
        e.handle(ForceRead(t, model.code_for(0.0, t, 128, rng)))
        t += 1.0
    e.handle(DockChanged(t, False))
    for i in range(800):  # 0 to 8 N at 4 N/s, 80 readings a second
        force = i * 0.01
        t += 1 / 80
        events = events_of(e.handle(ForceRead(t, model.code_for(force, t, 128, rng))))
        if any(ev.type == EventType.OVER_PRESSURE for ev in events):
            return force
    raise AssertionError("the over-pressure alarm never tripped")


@pytest.mark.parametrize("drift_n", [0.5, -0.5])
def test_after_a_half_newton_drift_in_the_dock_the_alarm_trips_within_0_05_n_of_its_limit(
    drift_n: float,
) -> None:
    e = engine()
    limit = e.params.pressure.zones.over_n
    tripped = alarm_force_after_drift(e, drift_n)
    assert abs(tripped - limit) <= 0.05, tripped
    assert e.zero.total_n == pytest.approx(drift_n, abs=0.03)


def test_without_zero_tracking_the_same_drift_moves_the_alarm_by_as_much() -> None:
    """What the tracking is for: the drift moves the alarm by itself."""
    e = engine(enabled=False)
    limit = e.params.pressure.zones.over_n
    assert alarm_force_after_drift(e, 0.5) == pytest.approx(limit - 0.5, abs=0.05)


def test_nothing_is_followed_out_of_the_dock_or_under_a_load() -> None:
    e = engine()
    e.handle(DockChanged(1.0, False))
    for i in range(600):  # five minutes out of the dock at +0.08 N
        e.handle(ForceRead(2.0 + i / 2, round(CAL.raw_for(0.08))))
    assert e.zero.total_n == 0.0
    e.handle(DockChanged(400.0, True))
    for i in range(600):  # five minutes docked with something on it: 0.5 N
        e.handle(ForceRead(401.0 + i / 2, round(CAL.raw_for(0.5))))
    assert e.zero.total_n == 0.0
    assert e.pressure.calibration.offset == CAL.offset


def test_a_drift_beyond_the_range_is_a_sensor_fault_that_a_tare_clears() -> None:
    e = engine(max_total_n=0.05)
    events: list[Event] = []
    for i in range(2400):  # twenty minutes docked, the zero 0.08 N up
        events += events_of(e.handle(ForceRead(1.0 + i / 2, round(CAL.raw_for(0.08)))))
    assert [ev.data["reason"] for ev in events if ev.type == EventType.SENSOR_FAULT] == [ZERO_DRIFT]
    assert e.device_state(1200.0, 1200.0).fault == ZERO_DRIFT
    assert e.indicators().alarm_reason == EventType.SENSOR_FAULT
    t = 1201.0
    for i in range(100):
        e.handle(ForceRead(t + i / 80, round(e.pressure.calibration.raw_for(0.03))))
    after = events_of(e.handle(Command(t + 1.3, "tare", "t-1")))
    assert any(ev.type == EventType.SENSOR_RECOVERED for ev in after)
    assert e.device_state(t + 2, t + 2).fault is None
