"""A force held below the negative margin is a sensor fault, never "no contact": a load cell
mounted or wired the wrong way round reads a press as a negative force."""

from __future__ import annotations

from typing import Any

import pytest

from dermaguard.config.params import default_engine_params, default_pressure_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.engine import Engine
from dermaguard.core.events import (
    Command,
    EmitEvent,
    Event,
    ForceRead,
    ForceSample,
    Priority,
    ReadFailed,
    SaveCalibration,
)
from dermaguard.core.filters import Ema, Median

COUNTS_PER_N = 40_000
RATE = 80
CAL = Calibration(offset=0.0, scale_n_per_count=1 / COUNTS_PER_N)


def make_engine(**pressure: Any) -> Engine:
    return Engine(
        default_engine_params(pressure=default_pressure_params(**pressure)),
        CAL,
        (Median(3),),
        (Ema(0.5),),
    )


class Feeder:
    """Feeds forces at 80 samples/s and keeps every effect."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.n = 0
        self.samples: list[ForceSample] = []
        self.events: list[Event] = []

    @property
    def t(self) -> float:
        return self.n / RATE

    def force(self, force_n: float, seconds: float, offset: int = 0) -> None:
        for _ in range(round(seconds * RATE)):
            self.handle(ForceRead(self.t, round(force_n * COUNTS_PER_N) + offset))
            self.n += 1

    def handle(self, inp: ForceRead | ReadFailed | Command) -> list[object]:
        effects = self.engine.handle(inp)
        self.samples += [e for e in effects if isinstance(e, ForceSample)]
        self.events += [e.event for e in effects if isinstance(e, EmitEvent)]
        return list(effects)

    def faults(self) -> list[Event]:
        return [e for e in self.events if e.type == "sensor_fault"]


def test_a_reversed_cell_held_at_minus_6_n_is_a_fault_that_says_what_to_check() -> None:
    engine = make_engine()
    feed = Feeder(engine)
    feed.force(0.0, 1.0)
    start = feed.t
    feed.force(-6.0, 6.0)  # pressed hard, read the wrong way round

    faults = feed.faults()
    assert len(faults) == 1
    fault = faults[0]
    assert fault.data["reason"] == "negative_force" and fault.data["force_n"] == -6.0
    detail = str(fault.data["detail"])
    assert "wrong way round" in detail and "tare" in detail
    # Raised after the stated number of samples, not later.
    assert fault.t == pytest.approx(
        start + (default_pressure_params().negative_samples_for_fault - 1) / RATE
    )
    # Never shown as a force or a zone: before the fault the samples are held back, after it
    # the force is unknown, and the LED shows the fault.
    after = [s for s in feed.samples if s.t >= start]
    assert after and all(s.force_n is None and s.zone is None for s in after)
    assert engine.indicators().alarm is Priority.MEDIUM
    assert engine.indicators().alarm_reason == "sensor_fault"

    feed.force(0.0, 1.0)  # released
    assert [e.type for e in feed.events][-1] == "sensor_recovered"
    assert engine.pressure.force_n == pytest.approx(0.0)


def test_a_brief_dip_below_the_margin_is_no_fault_and_is_not_shown() -> None:
    engine = make_engine(negative_samples_for_fault=10)
    feed = Feeder(engine)
    feed.force(1.5, 0.5)
    shown = len(feed.samples)
    feed.force(-1.0, 9 / RATE)  # nine samples: one short of a fault
    assert feed.faults() == []
    assert len(feed.samples) == shown  # held back, not taken as "no contact"
    feed.force(-0.4, 1.0)  # within the margin: a reading (the head's own weight, say)
    assert feed.faults() == []
    assert feed.samples[-1].force_n == pytest.approx(-0.4)


def test_the_margin_and_the_count_come_from_the_parameters() -> None:
    feed = Feeder(make_engine(negative_margin_n=2.0, negative_samples_for_fault=3))
    feed.force(-1.5, 1.0)
    assert feed.faults() == []
    feed.force(-2.5, 3 / RATE)
    assert [f.data["reason"] for f in feed.faults()] == ["negative_force"]
    assert "below -2 N" in str(feed.faults()[0].data["detail"])


def test_negative_samples_never_count_towards_a_recovery() -> None:
    engine = make_engine()
    feed = Feeder(engine)
    feed.force(0.0, 0.5)
    feed.handle(ReadFailed(feed.t, "timeout"))
    feed.n += 1
    feed.force(-6.0, 2.0)
    assert engine.pressure.fault == "not_ready"
    assert "sensor_recovered" not in [e.type for e in feed.events]


def test_a_cell_reversed_from_the_first_reading_faults_at_the_stated_count() -> None:
    """The count starts at nought when the machine does: no good reading has to come first."""
    feed = Feeder(make_engine())
    n = default_pressure_params().negative_samples_for_fault
    feed.force(-6.0, (n - 1) / RATE)
    assert feed.faults() == [] and feed.samples == []
    feed.force(-6.0, 1 / RATE)
    assert [f.data["reason"] for f in feed.faults()] == ["negative_force"]


def test_a_negative_reading_between_good_ones_starts_the_recovery_count_again() -> None:
    """Good readings must come ``valid_samples_for_recovery`` in a row: one held back as
    negative between them leaves the count at nought, not one or minus one."""
    engine = make_engine()
    feed = Feeder(engine)
    feed.force(0.0, 0.5)
    feed.handle(ReadFailed(feed.t, "timeout"))
    feed.n += 1
    n = default_pressure_params().valid_samples_for_recovery
    feed.force(1.0, (n - 1) / RATE)  # one short of a recovery
    feed.force(-6.0, 1 / RATE)
    feed.force(1.0, (n - 1) / RATE)
    assert engine.pressure.fault == "not_ready"
    feed.force(1.0, 1 / RATE)
    assert engine.pressure.fault is None
    assert [e.type for e in feed.events][-1] == "sensor_recovered"


def test_a_tare_taken_under_load_faults_and_the_tare_command_mends_it() -> None:
    engine = make_engine()
    feed = Feeder(engine)
    under_load = round(2.0 * COUNTS_PER_N)  # the zero was taken with 2 N on the roller
    feed.force(-2.0, 1.0)  # unloaded, it reads -2 N
    assert engine.pressure.fault == "negative_force"
    effects = feed.handle(Command(feed.t, "tare", "t-1"))
    result = next(e for e in feed.events if e.type == "command_result")
    assert result.data["ok"] is True
    saved = [x.calibration for x in effects if isinstance(x, SaveCalibration)]
    assert len(saved) == 1 and saved[0].offset == pytest.approx(-under_load)
    feed.force(-2.0, 0.5)
    assert engine.pressure.fault is None
    assert engine.pressure.force_n == pytest.approx(0.0, abs=1e-6)
