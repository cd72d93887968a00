"""The engine's input queue policy: bounded for force samples, never for anything else."""

from __future__ import annotations

import logging
from queue import Empty

import pytest

from dermaguard.core.case import DockChanged, LidChanged
from dermaguard.core.events import Command, ForceRead, ReadFailed, Tick
from dermaguard.daemon.input_queue import MIN_BOUND, InputQueue, sample_bound
from dermaguard.daemon.sd_notify import EngineProgress


def test_the_bound_holds_at_least_a_second_of_samples_at_the_highest_rate() -> None:
    assert sample_bound(80) >= 80 and sample_bound(10) >= 80 == MIN_BOUND
    assert sample_bound(80) == 160  # two real seconds on the device
    assert sample_bound(80, speed=10.0) == 1600  # a fast simulation brings more per second


def test_a_full_queue_drops_force_samples_only_counts_them_and_raises_one_fault(
    caplog: pytest.LogCaptureFixture,
) -> None:
    q = InputQueue(4)
    with caplog.at_level(logging.WARNING, logger="dermaguard.daemon.input_queue"):
        for i in range(10):
            q.put(ForceRead(i, 100 + i))
            if i == 6:  # a person opens the lid, docks, sends a command while it is stuck
                q.put(LidChanged(6.5, closed=False))
                q.put(DockChanged(6.6, docked=True))
                q.put(Command(6.7, "silence"))
            assert q.samples_waiting <= q.bound
    assert q.dropped == 6 and q.peak == 4
    assert len([r for r in caplog.records if "not keeping up" in r.getMessage()]) == 1
    got = [q.get(0) for _ in range(q.qsize())]
    # Order kept; the first dropped sample's time stamps the one fault; nothing else lost.
    fault = got[4]
    assert isinstance(fault, ReadFailed) and "4 force samples behind" in fault.detail
    assert got == [
        ForceRead(0, 100),
        ForceRead(1, 101),
        ForceRead(2, 102),
        ForceRead(3, 103),
        ReadFailed(4, "engine_stalled", fault.detail),
        LidChanged(6.5, closed=False),
        DockChanged(6.6, docked=True),
        Command(6.7, "silence"),
    ]
    with pytest.raises(Empty):
        q.get(0)
    assert "2 force samples were dropped" not in caplog.text
    assert "6 force samples were dropped" in caplog.text  # the spell ended as it drained
    assert q.summary() == "6 force samples dropped (engine stalled)"


def test_a_new_spell_raises_a_new_fault_only_after_the_queue_drained_to_half() -> None:
    q = InputQueue(4)
    for i in range(6):
        q.put(ForceRead(i, i))
    q.get(0)  # three samples left: above half, still the same spell
    q.put(ForceRead(6, 6))
    q.put(ForceRead(7, 7))  # full again: dropped without a second fault
    faults = [i for i in (q.get(0) for _ in range(q.qsize())) if isinstance(i, ReadFailed)]
    assert len(faults) == 1 and q.dropped == 3
    for i in range(8, 13):
        q.put(ForceRead(i, i))
    faults = [i for i in (q.get(0) for _ in range(q.qsize())) if isinstance(i, ReadFailed)]
    assert len(faults) == 1 and faults[0].t == 12  # a new spell, a new fault


def test_ticks_are_coalesced_and_never_counted_as_drops() -> None:
    q = InputQueue(4)
    for t in range(5):
        q.put(Tick(t))
    assert q.qsize() == 1 and q.dropped == 0
    assert q.get(0) == Tick(0)
    q.put(Tick(9))
    assert q.get(0) == Tick(9)


def test_progress_says_when_the_engine_took_its_input_and_none_while_it_waits() -> None:
    now = [10.0]
    q = InputQueue(4, now=lambda: now[0])
    assert q.progress() == EngineProgress(busy_since=None, queued=0, bound=4)
    q.put(ForceRead(0, 0))
    q.put(ForceRead(1, 1))
    assert q.get(0) == ForceRead(0, 0)
    now[0] = 11.0
    assert q.progress() == EngineProgress(busy_since=10.0, queued=1, bound=4)
    q.get(0)
    assert q.progress() == EngineProgress(busy_since=11.0, queued=0, bound=4)
    with pytest.raises(Empty):
        q.get(0)  # waiting for input: idle, not stuck
    assert q.progress().busy_since is None


def test_the_stop_marker_always_gets_in() -> None:
    q = InputQueue(1)
    q.put(ForceRead(0, 0))
    q.put(ForceRead(1, 1))
    q.put(None)
    assert [q.get(0) for _ in range(q.qsize())][-1] is None


def test_a_zero_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="bound"):
        InputQueue(0)
