"""The simulated clock's calendar never runs behind a record an earlier run made."""

from __future__ import annotations

import pytest

from dermaguard.common.clock import SimClock


def test_resume_after_moves_the_calendar_forward_only() -> None:
    clock = SimClock(speed=20, wall_start=1000.0)
    clock.advance(5.0)
    clock.resume_after(2000.0)  # an earlier accelerated run ended at 2000
    assert clock.wall() == 2000.0 and clock.monotonic() == 5.0
    clock.advance(1.0)
    assert clock.wall() == 2001.0
    clock.resume_after(1500.0)  # already past it: nothing changes
    assert clock.wall() == 2001.0


class FakeWall:
    """The real wall clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_accelerated_run_is_dated_so_that_it_ends_when_it_really_ends() -> None:
    real = FakeWall(10_000.0)
    clock = SimClock(speed=30, span_s=600.0, real_wall=real)
    # 600 virtual seconds take 20 real ones: the calendar starts 580 s in the past.
    assert clock.wall() == 10_000.0 - 580.0
    for step in range(1, 61):
        clock.advance(10.0)
        real.now = 10_000.0 + step * 10.0 / 30
        assert clock.wall() <= real.now
    assert clock.wall() == real.now == 10_020.0


def test_the_calendar_never_runs_past_the_real_time() -> None:
    real = FakeWall(10_000.0)
    clock = SimClock(speed=30, span_s=600.0, real_wall=real)
    clock.resume_after(10_000.0)  # a run that ended just now: this one starts after it
    clock.advance(300.0)
    real.now += 10.0
    assert clock.wall() == 10_010.0  # not 10_300: that lies in the future
    clock.advance(300.0)
    assert clock.wall() == 10_010.0  # held, never ahead, never back


def test_a_simulation_on_the_systems_calendar_dates_by_the_system_clock_steps_and_all() -> None:
    """``run --simulate --system-clock``: the simulated device dates its records as a Pi does,
    by a clock that may be days behind until NTP steps it, never by a calendar of its own."""
    real = FakeWall(86_400.0 * 3)  # a Pi that booted at fake-hwclock's stale time
    clock = SimClock(span_s=600.0, real_wall=real, system_calendar=True)
    assert clock.system_calendar and clock.wall() == real.now
    clock.advance(10.0)
    real.now += 10.0
    assert clock.wall() == real.now
    real.now = 1_765_000_000.0  # NTP steps the clock forward: the next record has it at once
    assert clock.wall() == real.now and clock.monotonic() == 10.0
    clock.resume_after(real.now + 999.0)  # no calendar of its own to move
    assert clock.wall() == real.now


def test_the_systems_calendar_runs_in_real_time_only() -> None:
    with pytest.raises(ValueError, match="speed 1"):
        SimClock(speed=10, system_calendar=True)
