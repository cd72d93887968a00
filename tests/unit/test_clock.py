"""The simulated clock's calendar never runs behind a record an earlier run made."""

from __future__ import annotations

from dermaguard.clock import SimClock


def test_resume_after_moves_the_calendar_forward_only() -> None:
    clock = SimClock(speed=20, wall_start=1000.0)
    clock.advance(5.0)
    clock.resume_after(2000.0)  # an earlier accelerated run ended at 2000
    assert clock.wall() == 2000.0 and clock.monotonic() == 5.0
    clock.advance(1.0)
    assert clock.wall() == 2001.0
    clock.resume_after(1500.0)  # already past it: nothing changes
    assert clock.wall() == 2001.0
