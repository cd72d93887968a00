"""Pressing past the load cell's range never downgrades the alarm (S7, docs/MQTT.md).

A reading pinned at the top of the range (a code saturated high, a force beyond ``capacity``)
is at least over-pressure: the high-priority alarm stays, a fault may stand beside it, and the
alarm clears only when the force drops. A reading pinned at the bottom stays a fault (beside
an over-pressure alarm already sounding, which it never ends).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.config.params import default_engine_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine
from dermaguard.core.events import EmitEvent, Event, ForceRead, Priority
from dermaguard.core.filters import Ema, Median
from dermaguard.core.pressure import SATURATED_HIGH, SATURATED_LOW

COUNTS_PER_N = 40_000
PERIOD = 1 / 80
CAL = Calibration(offset=0.0, scale_n_per_count=1 / COUNTS_PER_N)


class Run:
    """An engine fed one reading per sample period, keeping every event it emitted."""

    def __init__(self) -> None:
        self.engine = Engine(default_engine_params(), CAL, (Median(3),), (Ema(0.5),))
        self.n = 0
        self.events: list[Event] = []

    def read(self, raw: int, samples: int = 1) -> list[Event]:
        out: list[Event] = []
        for _ in range(samples):
            effects = self.engine.handle(ForceRead(self.n * PERIOD, raw))
            out += [x.event for x in effects if isinstance(x, EmitEvent)]
            self.n += 1
        self.events += out
        return out

    def force(self, force_n: float, samples: int = 1) -> list[Event]:
        return self.read(round(force_n * COUNTS_PER_N), samples)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def test_s7_sixty_newtons_held_on_a_fifty_newton_cell_keeps_the_high_alarm() -> None:
    run = Run()
    run.force(2.0, 20)
    run.force(60.0, 4 * 80)  # 60 N held for 4 s; the cell's capacity is 50 N
    shown = run.engine.indicators()
    assert shown.alarm is Priority.HIGH and shown.alarm_reason == "over_pressure"
    assert run.engine.pressure.over_pressure and run.engine.pressure.zone == "over"
    assert run.engine.pressure.fault == "beyond_capacity"  # beside the alarm, not instead
    assert run.types() == ["over_pressure", "sensor_fault"]
    fault = run.events[1].data
    assert fault["at_least_n"] == 50.0 and "at least 50 N" in fault["detail"]
    run.force(1.0, 40)  # released
    cleared = [e for e in run.events if e.type == "over_pressure_cleared"]
    assert len(cleared) == 1 and cleared[0].data["cause"] == "force_dropped"
    assert "sensor_recovered" in run.types() and run.engine.indicators().alarm is None


def test_s7_a_code_saturated_high_is_at_least_over_pressure() -> None:
    run = Run()
    run.force(2.0, 20)
    run.read(SATURATED_HIGH, 80)
    shown = run.engine.indicators()
    assert shown.alarm is Priority.HIGH and shown.alarm_reason == "over_pressure"
    assert run.engine.pressure.fault == "saturated"
    assert "over_pressure_cleared" not in run.types()


def test_s7_a_reading_pinned_high_after_the_sensor_went_quiet_sounds_the_high_alarm() -> None:
    run = Run()
    run.force(2.0, 20)
    run.read(SATURATED_LOW, 5)  # the bottom of the range: a fault, the force unknown
    assert run.engine.pressure.force_n is None
    run.read(SATURATED_HIGH, 3)
    assert run.engine.indicators().alarm is Priority.HIGH


def test_s7_a_reading_pinned_at_the_bottom_stays_a_fault() -> None:
    for raw in (SATURATED_LOW, round(-60.0 * COUNTS_PER_N)):
        run = Run()
        run.force(2.0, 20)  # a good press, no alarm
        run.read(raw, 40)
        shown = run.engine.indicators()
        assert shown.alarm is Priority.MEDIUM and shown.alarm_reason == "sensor_fault"
        assert run.engine.pressure.force_n is None and run.engine.pressure.zone is None
        assert "over_pressure" not in run.types()


def test_s7_a_reading_pinned_at_the_bottom_during_over_pressure_keeps_the_high_alarm() -> None:
    """The force was last known too high and nothing says it dropped: the fault stands beside
    the alarm, which only a known force below the limit ends."""
    for raw in (SATURATED_LOW, round(-60.0 * COUNTS_PER_N)):
        run = Run()
        run.force(5.0, 20)
        run.read(raw, 40)
        shown = run.engine.indicators()
        assert shown.alarm is Priority.HIGH and shown.alarm_reason == "over_pressure"
        assert run.engine.pressure.fault is not None and run.engine.pressure.force_n is None
        assert "over_pressure_cleared" not in run.types()
        run.force(1.0, 40)
        cleared = [e for e in run.events if e.type == "over_pressure_cleared"]
        assert [e.data["cause"] for e in cleared] == ["force_dropped"]
        assert run.engine.indicators().alarm is None


def test_an_episode_held_through_a_fault_is_one_episode_in_the_session() -> None:
    """The session counts the alarm's episodes: one over-pressure event, one episode, even
    when a fault came in its middle and the force was still over when readings returned."""
    run = Run()
    run.engine.handle(DockChanged(0.0, True))
    run.engine.handle(DockChanged(0.001, False))  # out of the dock: contact starts a session
    run.force(2.0, 20)
    run.force(6.0, 40)
    run.read(SATURATED_LOW, 40)  # a fault in the middle of the episode
    run.force(6.0, 40)
    run.force(1.0, 40)
    effects = run.engine.shutdown(run.n * PERIOD, 1_000.0)
    ended = [x.event for x in effects if isinstance(x, EmitEvent)]
    summary = next(e.data for e in ended if e.type == "session_ended")
    assert "session_started" in run.types() and run.types().count("over_pressure") == 1
    assert summary["over_episodes"] == 1
    assert summary["longest_over_s"] >= 120 * PERIOD - 1e-6


#: A reading held for some samples: a force (valid, beyond the range either way) or a code
#: pinned at either end.
segments = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([0.0, 2.0, 4.0, 6.0, 49.0, 55.0, 80.0, -60.0]).map(
                lambda f: round(f * COUNTS_PER_N)
            ),
            st.sampled_from([SATURATED_HIGH, SATURATED_LOW]),
        ),
        st.integers(1, 12),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(segments)
def test_s7_three_readings_pinned_high_in_a_row_always_sound_the_high_alarm(
    plan: list[tuple[int, int]],
) -> None:
    """Whatever came before: three pinned-high readings in a row mean the high alarm shows,
    and a reading pinned high never clears an over-pressure alarm as a sensor fault."""
    run = Run()
    high_run = 0
    for raw, samples in plan:
        for _ in range(samples):
            events = run.read(raw)
            pinned = raw >= SATURATED_HIGH or raw > 50 * COUNTS_PER_N
            high_run = high_run + 1 if pinned else 0
            cleared = [e.data["cause"] for e in events if e.type == "over_pressure_cleared"]
            if pinned:
                assert "sensor_fault" not in cleared  # never cleared as a mere fault
            if high_run >= 2:  # past the spike filter (a median of 3): the force is high
                assert not cleared
            if high_run >= 3:
                shown = run.engine.indicators()
                assert shown.alarm is Priority.HIGH and shown.alarm_reason == "over_pressure"


# --- a pinned reading among the runs that raise and clear faults ---------------------------

PARAMS = default_engine_params().pressure
FAULT_AFTER = PARAMS.invalid_samples_for_fault
RECOVER_AFTER = PARAMS.valid_samples_for_recovery
NEGATIVE_AFTER = PARAMS.negative_samples_for_fault


def faults(run: Run) -> list[str]:
    return [str(e.data["reason"]) for e in run.events if e.type == "sensor_fault"]


def test_s7_a_run_of_readings_pinned_high_raises_its_fault_at_exactly_the_limit() -> None:
    run = Run()
    run.force(2.0, 20)
    run.read(SATURATED_HIGH, FAULT_AFTER - 1)
    assert faults(run) == [] and run.engine.indicators().alarm is Priority.HIGH
    run.read(SATURATED_HIGH)
    assert faults(run) == ["saturated"]


def test_s7_a_reading_pinned_high_starts_the_count_of_good_readings_for_recovery_again() -> None:
    run = Run()
    run.force(2.0, 20)
    run.read(SATURATED_LOW, FAULT_AFTER)
    assert faults(run) == ["saturated"]
    run.force(2.0, RECOVER_AFTER - 1)
    run.read(SATURATED_HIGH)  # at least the capacity: known, but not a good reading
    run.force(2.0, RECOVER_AFTER - 1)
    assert "sensor_recovered" not in run.types()
    run.force(2.0)
    assert run.types().count("sensor_recovered") == 1


def test_s7_a_reading_pinned_high_breaks_a_run_of_negative_readings() -> None:
    run = Run()
    run.force(2.0, 20)
    run.force(-2.0, NEGATIVE_AFTER - 1)
    run.read(SATURATED_HIGH)
    run.force(-2.0, NEGATIVE_AFTER - 1)
    assert faults(run) == []
    run.force(-2.0)
    assert faults(run) == ["negative_force"]


def test_s7_a_reading_pinned_high_breaks_a_run_of_readings_pinned_low() -> None:
    run = Run()
    run.force(2.0, 20)
    run.read(SATURATED_LOW, FAULT_AFTER - 1)
    run.read(SATURATED_HIGH)
    run.read(SATURATED_LOW, FAULT_AFTER - 1)
    assert faults(run) == []
    run.read(SATURATED_LOW)
    assert faults(run) == ["saturated"]


def test_s7_a_reading_pinned_high_makes_an_unknown_force_known_at_once() -> None:
    """Blind after a fault, one reading pinned high is enough: the force is at least the
    capacity, so the zone is over and the good readings after it count at once."""
    run = Run()
    run.force(2.0, 20)
    run.read(SATURATED_LOW, FAULT_AFTER)
    assert run.engine.pressure.zone is None
    run.read(SATURATED_HIGH)
    assert run.engine.pressure.zone == "over" and not run.engine.pressure.blind
    run.force(1.0, 5)
    assert run.engine.pressure.zone is not None and run.engine.pressure.force_n is not None
