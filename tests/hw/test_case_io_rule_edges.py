"""The case shell's UV defences at their edges, on mock pins: a lid opening in the middle of a
switch-on, a lagging clock once UV went on late, and a UV-off that fails inside the failsafe.

bench/mutation.py found these unproved: each test here fails when the line it names is broken.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.core.case import CaseSignal, UvFault
from dermaguard.core.events import UvOutput
from dermaguard.hw import case_io
from dermaguard.hw.case_io import CaseIO, CaseWiring, install_uv_failsafe
from dermaguard.sim.pins import BoundedMockPin

LID, DOCK, UV, SENSOR = 23, 24, 25, 26
WIRING = CaseWiring(
    LID, DOCK, UV, SENSOR, lid_active_low=True, dock_active_low=True, uv_active_high=True
)


class _LidOpensAsUvGoesOn(BoundedMockPin):
    """The UV pin; when armed, the lid opens just before a write switches it on: the window
    between ``set_uv``'s lid check and its pin write."""

    lid: Any = None

    def _change_state(self, value: Any) -> bool:
        if value and self.lid is not None:
            lid, self.lid = self.lid, None
            lid.drive_high()  # the lid callback switches UV off ... before this write lands
        return bool(super()._change_state(value))


@pytest.fixture
def queued() -> list[CaseSignal]:
    return []


def test_s11_a_lid_opening_during_the_switch_on_leaves_uv_off_and_is_refused(
    pin_factory: Any, queued: list[CaseSignal]
) -> None:
    uv = pin_factory.pin(UV, pin_class=_LidOpensAsUvGoesOn)
    lid = pin_factory.pin(LID)
    with CaseIO(queued.append, SimClock(), WIRING, cap_s=600.0, debounce_s=0.0) as dev:
        lid.drive_low()  # closed
        uv.lid = lid
        assert dev.set_uv(True) is False
        assert not uv.state and not dev.uv_on and not dev.lid_closed
        assert dev._cap_timer is None  # no on-period started


def test_s4_the_cap_counts_from_when_uv_went_on_on_a_clock_that_lags(
    pin_factory: Any, queued: list[CaseSignal]
) -> None:
    """UV on at clock time 100 s; the cap's worth of real time passes but the (simulated) clock
    has not moved: the cap must wait for 10 s of clock time from 100 s, not trip early."""
    clock = SimClock(speed=1000.0)  # 10 s of cap are 10 ms of real time
    lid = pin_factory.pin(LID)
    with CaseIO(queued.append, clock, WIRING, cap_s=10.0, debounce_s=0.0) as dev:
        lid.drive_low()
        clock.advance_to(100.0)
        queued.clear()
        assert dev.set_uv(True)
        assert queued == [UvOutput(100.0, True)]  # the pin it drove, reported (H17)
        queued.clear()
        first = dev._cap_timer
        assert first is not None
        first.join(2.0)  # it fired and found no clock time gone: re-armed
        assert dev.uv_on and queued == []
        clock.advance_to(110.0)
        second = dev._cap_timer
        if second is not None:
            second.join(2.0)
        assert not dev.uv_on
        assert [q for q in queued if isinstance(q, UvFault)] == [UvFault(110.0, "cap_reached")]


def test_s4_the_cap_trips_at_the_cap_not_a_second_before_or_after(
    pin_factory: Any, queued: list[CaseSignal]
) -> None:
    """The timer fires half a second of clock time early (the clock ran ahead of real time):
    the shell waits out the half second, then trips exactly at the cap."""
    clock = SimClock(speed=10.0)  # the 10 s cap is 1 s of real time
    lid = pin_factory.pin(LID)
    with CaseIO(queued.append, clock, WIRING, cap_s=10.0, debounce_s=0.0) as dev:
        lid.drive_low()
        clock.advance_to(100.0)
        queued.clear()
        assert dev.set_uv(True)
        assert queued == [UvOutput(100.0, True)]  # the pin it drove, reported (H17)
        queued.clear()
        first = dev._cap_timer
        assert first is not None
        clock.advance_to(109.5)  # long before the timer fires, a second of real time away
        first.join(5.0)
        assert dev.uv_on and queued == []  # 0.5 s of the cap left: re-armed, not tripped
        clock.advance_to(110.0)
        second = dev._cap_timer
        assert second is not None and second is not first
        second.join(5.0)
        assert not dev.uv_on
        assert [q for q in queued if isinstance(q, UvFault)] == [UvFault(110.0, "cap_reached")]


@pytest.mark.parametrize("way_off", ["lid_opens", "force_off"])
def test_s2_s3_uv_switched_off_outside_the_engine_leaves_no_cap_timer_to_report_later(
    pin_factory: Any, queued: list[CaseSignal], way_off: str
) -> None:
    """The lid callback (S2) and the failsafe's ``force_off`` (S3) switch UV off without the
    engine: they cancel the cap timer too, or it would report ``cap_reached`` for an on-period
    that ended long ago."""
    clock = SimClock(speed=1000.0)
    lid = pin_factory.pin(LID)
    with CaseIO(queued.append, clock, WIRING, cap_s=10.0, debounce_s=0.0) as dev:
        lid.drive_low()
        queued.clear()
        assert dev.set_uv(True)
        timer = dev._cap_timer
        assert timer is not None
        if way_off == "lid_opens":
            lid.drive_high()
        else:
            dev.force_off()
        assert not dev.uv_on and dev._cap_timer is None
        clock.advance(20.0)  # well past the cap
        timer.join(2.0)
        assert not [q for q in queued if isinstance(q, UvFault)]


def test_s3_a_failing_uv_off_never_breaks_the_failsafe_or_the_hooks_it_wraps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chained: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda *_a: chained.append("sys"))
    monkeypatch.setattr(threading, "excepthook", lambda _a: chained.append("thread"))
    registered: list[Any] = []
    monkeypatch.setattr(case_io.atexit, "register", registered.append)

    def uv_off() -> None:
        raise OSError("the pin is gone")

    off = install_uv_failsafe(uv_off)
    off()  # no exception: the failsafe is never why a hook fails
    assert registered == [off]
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        sys.excepthook(RuntimeError, exc, exc.__traceback__)
    threading.excepthook(threading.ExceptHookArgs((RuntimeError, RuntimeError("boom"), None, None)))
    assert chained == ["sys", "thread"]


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    for thread in threading.enumerate():
        if thread.name == "uv-cap":
            thread.join(2.0)
