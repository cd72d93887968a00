"""Safety rule S7 to the sample: when a run of bad reads becomes a fault, when good reads end it.

``PressureMachine`` counts invalid conversions in a row before it raises ``sensor_fault`` and
good ones in a row before ``sensor_recovered``; a bad read in the middle of a recovery starts it
again, and a fault forgets the force read before it. These tests pin each count exactly (one
sample early or late is a different rule), which is what bench/mutation.py found unproved.
"""

from __future__ import annotations

from dermaguard.config.params import default_pressure_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.events import EventType
from dermaguard.core.filters import Ema, Median
from dermaguard.core.pressure import SATURATED_LOW, PressureMachine, PressureUpdate

COUNTS_PER_N = 40_000
PERIOD = 1 / 80
CAL = Calibration(offset=0.0, scale_n_per_count=1 / COUNTS_PER_N)
PARAMS = default_pressure_params()
#: Invalid reads in a row that raise a fault, good reads in a row that end it.
TO_FAULT = PARAMS.invalid_samples_for_fault
TO_RECOVER = PARAMS.valid_samples_for_recovery


class Feed:
    """A pressure machine fed on a virtual clock, one sample period per read."""

    def __init__(self) -> None:
        self.machine = PressureMachine(PARAMS, CAL, (Median(3),), (Ema(0.5),))
        self.t = 0.0

    def _next(self) -> float:
        self.t += PERIOD
        return self.t

    def force(self, force_n: float, times: int = 1) -> list[PressureUpdate]:
        return [
            self.machine.on_read(self._next(), round(force_n * COUNTS_PER_N)) for _ in range(times)
        ]

    def saturated(self, times: int = 1) -> list[PressureUpdate]:
        # pinned at the bottom: a fault; pinned at the top is at least over-pressure (H21)
        return [self.machine.on_read(self._next(), SATURATED_LOW) for _ in range(times)]

    def timeout(self) -> PressureUpdate:
        return self.machine.on_timeout(self._next(), "no data")


def kinds(updates: list[PressureUpdate]) -> list[str]:
    return [e.type for u in updates for e in u.events]


def test_s7_a_fault_takes_exactly_the_configured_invalid_reads_in_a_row() -> None:
    feed = Feed()
    feed.force(1.0, 5)
    assert kinds(feed.saturated(TO_FAULT - 1)) == []
    assert feed.machine.fault is None
    feed.force(1.0)  # a good read restarts the count
    assert kinds(feed.saturated(TO_FAULT - 1)) == []
    assert feed.machine.fault is None and feed.machine.force_n is not None
    assert kinds(feed.saturated()) == [EventType.SENSOR_FAULT]
    assert feed.machine.fault == "saturated" and feed.machine.force_n is None


def test_s7_a_bad_read_during_a_recovery_starts_the_count_again() -> None:
    feed = Feed()
    feed.force(1.0, 5)
    feed.saturated(TO_FAULT)
    assert feed.machine.fault == "saturated"
    feed.force(1.0, TO_RECOVER - 1)
    feed.saturated()  # one invalid read, not yet a new fault
    assert kinds(feed.force(1.0, TO_RECOVER - 1)) == []
    assert feed.machine.fault == "saturated" and feed.machine.zone is None
    assert kinds(feed.force(1.0)) == [EventType.SENSOR_RECOVERED]
    assert feed.machine.fault is None


def test_s7_a_timeout_during_a_recovery_starts_the_count_again() -> None:
    feed = Feed()
    feed.force(1.0, 5)
    feed.timeout()
    assert feed.machine.fault == "not_ready"
    feed.force(1.0, TO_RECOVER - 1)
    assert kinds([feed.timeout()]) == []  # still the same fault: no second event
    assert kinds(feed.force(1.0, TO_RECOVER - 1)) == []
    assert feed.machine.fault == "not_ready"
    assert kinds(feed.force(1.0)) == [EventType.SENSOR_RECOVERED]


def test_s7_a_fault_forgets_the_force_read_before_it() -> None:
    """A reading near the cell's capacity, then a fault: the reads that follow are judged on
    their own, not as an impossible jump from that old reading (which would never recover)."""
    feed = Feed()
    feed.force(PARAMS.capacity_n - 0.2, 5)
    feed.timeout()
    near_zero = -(PARAMS.negative_margin_n - 0.1)  # 50.2 N away from the last reading
    # It recovers, and the over-pressure episode the first reading opened ends with it.
    assert kinds(feed.force(near_zero, TO_RECOVER)) == [
        EventType.SENSOR_RECOVERED,
        EventType.OVER_PRESSURE_CLEARED,
    ]


def test_s7_a_fault_during_over_pressure_keeps_the_episode_until_a_known_force_ends_it() -> None:
    feed = Feed()
    feed.force(6.0, 6)
    assert feed.machine.over_pressure
    update = feed.timeout()
    assert kinds([update]) == [EventType.SENSOR_FAULT]
    assert update.force_n is None and update.zone is None and feed.machine.over_pressure
    # Good reads below the limit: the episode stays open until the fault is over, then the
    # first known force ends it, with the force as the cause.
    recovering = feed.force(1.0, TO_RECOVER - 1)
    assert kinds(recovering) == [] and feed.machine.over_pressure
    last = feed.force(1.0)
    assert kinds(last) == [EventType.SENSOR_RECOVERED, EventType.OVER_PRESSURE_CLEARED]
    assert last[0].events[1].data["cause"] == "force_dropped"
    assert not feed.machine.over_pressure


def test_s7_a_force_still_over_after_a_fault_continues_the_episode_without_a_new_alarm() -> None:
    feed = Feed()
    feed.force(6.0, 6)
    feed.timeout()
    updates = feed.force(7.0, TO_RECOVER + 5)
    assert kinds(updates) == [EventType.SENSOR_RECOVERED]
    assert feed.machine.over_pressure
    cleared = feed.force(1.0, 5)
    ended = [e for u in cleared for e in u.events if e.type == EventType.OVER_PRESSURE_CLEARED]
    assert len(ended) == 1 and ended[0].data["peak_n"] >= 7.0 - 1e-9


def test_s7_the_fault_event_says_the_raw_code_and_force_when_there_are_some() -> None:
    saturated = Feed()
    saturated.force(1.0, 5)
    event = saturated.saturated(TO_FAULT)[-1].events[0]
    assert event.data == {"reason": "saturated", "raw": SATURATED_LOW}

    timeout = Feed()
    event = timeout.timeout().events[0]
    assert event.data == {"reason": "not_ready", "detail": "no data"}

    assert kinds([timeout.timeout()]) == []  # already faulted: no second event


def test_s7_a_reversed_cell_fault_reports_the_force_to_the_milli_newton() -> None:
    feed = Feed()
    force = -6.123456
    updates = feed.force(force, PARAMS.negative_samples_for_fault)
    event = updates[-1].events[0]
    assert event.data["raw"] == round(force * COUNTS_PER_N)
    assert event.data["force_n"] == -6.123  # -6.12345 N read, to three decimals
