"""The board-rate measurement on its own (hw/hx711_rate.py): pure, on given data-ready times."""

from __future__ import annotations

from dermaguard.hw.hx711_rate import FIRST_WAIT_S, INTERVALS_NEEDED, RateWatch


def fed(configured: int, period_s: float, n: int = INTERVALS_NEEDED + 1) -> RateWatch:
    watch = RateWatch(configured)
    for k in range(n):
        watch.ready(1.0 + k * period_s)
    return watch


def test_until_a_period_is_known_a_silence_may_last_as_long_as_a_10_sps_board_needs() -> None:
    watch = fed(80, 0.0125, n=INTERVALS_NEEDED)  # one interval short
    assert not watch.known
    assert watch.silence_limit_s(0.05, 0.0125) == FIRST_WAIT_S >= 0.4 + 2 * 0.1
    watch.ready(1.0 + INTERVALS_NEEDED * 0.0125)
    assert watch.known and watch.problem is None
    assert watch.silence_limit_s(0.05, 0.0125) == 0.05 + 2 * 0.0125


def test_a_board_at_the_other_rate_is_a_problem_naming_sj2_and_rate_either_way() -> None:
    slow = fed(80, 0.1)
    assert slow.measured_sps is not None and round(slow.measured_sps, 6) == 10.0
    assert slow.problem is not None and "SJ2" in slow.problem and "RATE" in slow.problem
    fast = fed(10, 0.0125)
    assert fast.problem is not None and "not the configured 10" in fast.problem
    assert fed(80, 0.0135).problem is None  # a slow oscillator is still an 80 samples/s board


def test_a_reset_starts_a_new_interval_and_one_late_read_does_not_decide() -> None:
    watch = RateWatch(80)
    for k in range(4):
        watch.ready(k * 0.0125)
    watch.restart()
    watch.ready(5.0)  # after the reset's settling: no interval across it
    watch.ready(5.0125)
    watch.ready(5.1)  # one read came late
    watch.ready(5.1125)
    assert watch.known and watch.problem is None


def test_a_reader_that_misses_conversions_is_not_taken_for_a_slow_board() -> None:
    """A busy reader sees some data-ready edges a period or two late: its intervals are
    multiples of the period, never less than one, so the board's rate is the shortest."""
    watch = RateWatch(80)
    t = 0.0
    watch.ready(t)
    for periods in (2, 3, 1, 2, 4, 1):  # conversions missed between most looks
        t += periods / 80
        watch.ready(t)
    assert watch.known and watch.problem is None
    assert abs((watch.measured_sps or 0) - 80) < 1

    slow = RateWatch(80)
    t = 0.0
    slow.ready(t)
    for periods in (1, 2, 1, 1, 3, 1):  # a 10 samples/s board, read as well as can be
        t += periods / 10
        slow.ready(t)
    assert slow.problem is not None and "SJ2" in slow.problem


def test_a_look_late_then_one_on_time_is_no_board_faster_than_any_made() -> None:
    """Seen late (0.9 of a period) and the next on time: an interval of a tenth of a period,
    which no board makes, is left out rather than taken for a 800 samples/s chip."""
    watch = RateWatch(80)
    times = [0.0, 0.0125 * 1.9, 0.0125 * 2.0, 0.0125 * 3, 0.0125 * 4, 0.0125 * 5, 0.0125 * 6]
    times += [0.0125 * 7, 0.0125 * 8]
    for t in times:
        watch.ready(t)
    assert watch.known and watch.problem is None
