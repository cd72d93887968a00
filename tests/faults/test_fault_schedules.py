"""Seeded fault schedules against the whole daemon, judged by invariants (docs/RELIABILITY.md,
"Fault schedules"). The fast set for every run; ``bench/faults.py`` runs a thousand.

The set is one single-fault schedule of each kind, then ``DERMAGUARD_FAULT_SCHEDULES`` (14)
drawn from every kind, seeds from ``DERMAGUARD_FAULT_FIRST`` (1) on.
``DERMAGUARD_FAULT_KINDS`` / ``DERMAGUARD_FAULT_EXCLUDE`` (comma-separated) choose the kinds.
A failure lists each failing seed with the one-line command that replays it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from harness.catalogue import INPROC_KINDS, KINDS, PROC_KINDS, Fault, Schedule, make_schedule
from harness.inproc import CALIBRATION, WATCHDOG_S, RunResult, harness_config, run_schedule
from harness.invariants import (
    case_light,
    check,
    completed_means_uv,
    over_pressure_alarm,
    uv_interlocks,
)
from harness.record import Applied, Light, PinChange, Read, Recording
from harness.runner import describe, harness, run_drawn
from pytest_mock import MockerFixture

import dermaguard.daemon.run as run_module
from dermaguard.config.load import default_config
from dermaguard.core.events import Event, EventType
from dermaguard.daemon.sd_notify import Notifier

pytestmark = pytest.mark.faults

#: The fast set: one single-fault schedule of each kind in the catalogue, then this many drawn
#: from all of them (about 1 min in all on two cores).
RANDOM_SCHEDULES = int(os.environ.get("DERMAGUARD_FAULT_SCHEDULES", "14"))
FIRST = int(os.environ.get("DERMAGUARD_FAULT_FIRST", "1"))


def _kinds() -> tuple[str, ...]:
    chosen = os.environ.get("DERMAGUARD_FAULT_KINDS")
    dropped = set(filter(None, os.environ.get("DERMAGUARD_FAULT_EXCLUDE", "").split(",")))
    kinds = tuple(chosen.split(",")) if chosen else KINDS
    return tuple(k for k in kinds if k not in dropped)


def test_a_seed_draws_the_same_schedule_and_every_kind_is_drawn() -> None:
    assert make_schedule(1234) == make_schedule(1234)
    drawn = {k for seed in range(1, 1001) for k in make_schedule(seed).kinds}
    assert drawn == set(KINDS)
    assert all(make_schedule(s, PROC_KINDS).kinds[0] in PROC_KINDS for s in range(50))
    assert all(set(make_schedule(s, INPROC_KINDS).kinds) <= set(INPROC_KINDS) for s in range(50))


def _synthetic(pins: list[tuple[int, bool, float]], events: list[tuple[str, float]]) -> RunResult:
    """A recording as a run would leave it: pin changes and applied events in one order."""
    config = default_config()
    rec = Recording()
    items: list[tuple[float, object]] = [(t, (p, lv)) for p, lv, t in pins]
    items += [(t, e) for e, t in events]
    for seq, (t, item) in enumerate(sorted(items, key=lambda x: x[0]), start=1):
        if isinstance(item, tuple):
            rec.pins.append(PinChange(seq, item[0], item[1], t, t))
        else:
            rec.applied.append(Applied(seq, Event(EventType(item), t), t, t))
    return RunResult(make_schedule(1), config, rec, finished=True)


def test_the_invariants_catch_uv_with_the_lid_open_and_a_cycle_completed_in_the_dark() -> None:
    """The checker itself: a recording that breaks S1 and a dark 'completed' cycle is caught."""
    c = default_config()
    uv, lid, dock = c.pins.uv_led, c.pins.lid, c.pins.dock
    closed, docked = not c.case.lid_active_low, not c.case.dock_active_low
    dark = _synthetic(
        [(lid, closed, 0.0), (dock, docked, 0.0), (uv, False, 0.0)],
        [("sterilization_started", 0.1), ("sterilization_completed", 1.6)],
    )
    assert [v.invariant for v in completed_means_uv(dark)] == ["completed_means_uv"]
    lit_open = _synthetic(
        [(lid, closed, 0.0), (dock, docked, 0.0), (uv, True, 0.1), (lid, not closed, 0.5)],
        [("sterilization_started", 0.1)],
    )
    assert any("UV off never after" in v.detail for v in uv_interlocks(lit_open))
    good = _synthetic(
        [(lid, closed, 0.0), (dock, docked, 0.0), (uv, True, 0.1), (uv, False, 1.6)],
        [("sterilization_started", 0.1), ("sterilization_completed", 1.6)],
    )
    assert check(good) == []


def _with_light(
    pins: list[tuple[int, bool, float]],
    events: list[tuple[str, float, dict[str, str]]],
    light: list[tuple[bool, float]],
) -> RunResult:
    """A run with a UV sensor: pins, applied events and the LED's real light, in one order."""
    r = _synthetic(pins, [])
    r.config = harness_config(Path("unused"), None, uv_sensor=True)
    for seq, (kind, t, data) in enumerate(events, start=1000):
        r.recording.applied.append(Applied(seq, Event(EventType(kind), t, data), t, t))
    r.recording.applied.sort(key=lambda a: a.t)
    r.recording.light.extend(Light(on, t, t) for on, t in light)
    return r


def test_the_case_light_invariant_catches_dark_cycles_open_lids_and_stuck_leds() -> None:
    """The checker itself, on what the LED really did: each break is caught, a sound run is not."""
    c = harness_config(Path("unused"), None, uv_sensor=True)
    uv, lid = c.pins.uv_led, c.pins.lid
    shut, on = not c.case.lid_active_low, c.case.uv_active_high
    cycle = [("sterilization_started", 0.1, {}), ("sterilization_completed", 1.6, {})]
    lit_cycle = [(lid, shut, 0.0), (uv, on, 0.1), (uv, not on, 1.6), (lid, not shut, 2.0)]
    good = _with_light(lit_cycle, cycle, [(False, 0.0), (True, 0.1), (False, 1.6)])
    assert case_light(good) == []
    flicker = [(False, 0.0), (True, 0.1), (False, 0.5), (True, 1.0), (False, 1.6)]
    assert "shining 1.000 s" in case_light(_with_light(lit_cycle, cycle, flicker))[0].detail
    lid_open = [(False, 0.0), (True, 0.1), (False, 1.6), (True, 2.1), (False, 2.5)]
    assert "lid open" in case_light(_with_light(lit_cycle, cycle, lid_open))[0].detail
    late_off = [(False, 0.0), (True, 0.1), (False, 2.2)]  # 200 ms after the lid opened
    assert "lid open" in case_light(_with_light(lit_cycle, cycle, late_off))[0].detail
    # Lit on after the cycle (the output off) until the lid opens 1.4 s later.
    long_shut = [(lid, shut, 0.0), (uv, on, 0.1), (uv, not on, 1.6), (lid, not shut, 3.0)]
    stuck = [(False, 0.0), (True, 0.1), (False, 3.0)]
    [v] = case_light(_with_light(long_shut, cycle, stuck))
    assert "no uv_stuck_on fault" in v.detail
    reported = [*cycle, ("case_fault", 1.95, {"reason": "uv_stuck_on"})]
    assert case_light(_with_light(long_shut, reported, stuck)) == []


def _pressed(pings: list[float], alarm: tuple[float, float] | None = None) -> RunResult:
    """80 reads a second for 20 s (real time running as virtual), 6 N from t=2, WATCHDOG=1 at
    ``pings``, and the over-pressure alarm stamped at ``alarm[0]`` and applied at ``alarm[1]``."""
    r = _synthetic([], [])
    if alarm is not None:
        event = Event(EventType.OVER_PRESSURE, alarm[0])
        r.recording.applied.append(Applied(1, event, alarm[0], alarm[1]))
    period = 1 / r.config.hx711.rate_sps
    for i in range(int(20 / period)):
        t = i * period
        force = 6.0 if t >= 2.0 else 0.0
        raw = round(CALIBRATION.offset + force / CALIBRATION.scale_n_per_count)
        r.recording.reads.append(Read(t, t, raw))
    r.recording.pings.extend(pings)
    return r


def test_the_over_pressure_invariant_catches_missing_and_late_alarms_if_the_watchdog_is_fed() -> (
    None
):
    """The checker itself: force over the limit with no alarm, or one applied late, is caught
    while the watchdog goes on being fed; a watchdog starved for its timeout from when the
    alarm was due (systemd would restart the daemon) excuses it."""
    fed = [i * WATCHDOG_S / 4 for i in range(round(20 / (WATCHDOG_S / 4)) + 1)]
    due = 2.0 + 2 / 80  # the third read over the limit
    assert over_pressure_alarm(_pressed(fed, (due, due + 0.01))) == []
    [missing] = over_pressure_alarm(_pressed(fed))
    assert "t=2.025, no over-pressure alarm" in missing.detail
    [late] = over_pressure_alarm(_pressed(fed, (due, due + 1.5)))
    assert "late while the watchdog kept being fed" in late.detail
    # No ping from just before the alarm was due to past WATCHDOG_S after it: excused.
    starved = [t for t in fed if t < due or t > due + WATCHDOG_S + 0.05]
    assert over_pressure_alarm(_pressed(starved, (due, due + 1.5))) == []
    # A gap short of the timeout, counted from when the alarm was due, excuses nothing.
    short = [t for t in fed if t < due or t > due + WATCHDOG_S - 0.05]
    assert over_pressure_alarm(_pressed(short, (due, due + 1.5)))
    # An alarm path that failed with no alarm given: the watchdog's expiry restarts the daemon
    # in time if WATCHDOG=1 stopped; still fed, only its exit would, 5 s on: too late.
    for pings, broken in (([t for t in fed if t < due], False), (fed, True)):
        failed = _pressed(pings)
        failed.failed_at, failed.exited = due + 3.0, due + 5.0
        assert bool(over_pressure_alarm(failed)) is broken


def test_fault_schedules_break_no_invariant() -> None:
    kinds = _kinds()
    each = [(FIRST + i, (kind,)) for i, kind in enumerate(kinds)]
    drawn = [(FIRST + len(kinds) + i, kinds) for i in range(RANDOM_SCHEDULES)]
    tally = run_drawn([*each, *drawn])
    failing = tally.failing()
    assert not failing, (
        f"{len(failing)} of {len(tally.outcomes)} schedules broke an invariant:\n"
        + ("\n".join(describe(o) for o in failing))
    )


#: Schedules that once broke an invariant, kept as regressions (docs/RELIABILITY.md): 453, an
#: engine stall in an over-pressure episode pinned high (the queued fault ended the alarm);
#: 587, an engine stall then the sampler's death (STOPPING=1 ended the watchdog before the
#: stalled engine was down, so nothing bounded the silent stretch); 80075, an engine stall
#: ended by the engine's own death (STOPPING=1 came at once, then the exit waited 2 s for the
#: emulated chip's lockstep read, and nothing bounded the silent stretch).
REGRESSION_SEEDS = (453, 587, 80075)
#: The kinds they were drawn from: a seed draws the same schedule from these as it did then
#: (the case's kinds, drawn last, came later; harness/catalogue.py).
REGRESSION_KINDS = INPROC_KINDS + PROC_KINDS


def test_the_schedules_that_once_broke_the_over_pressure_alarm_hold_it_now() -> None:
    tally = run_drawn([(seed, REGRESSION_KINDS) for seed in REGRESSION_SEEDS])
    failing = tally.failing()
    assert not failing, "\n".join(describe(o) for o in failing)


def test_a_daemon_whose_engine_failed_says_stopping_only_as_it_exits(
    mocker: MockerFixture,
) -> None:
    """After an internal error no alarm can sound until systemd restarts the daemon: the
    outbox is not drained (it replays after the restart), and STOPPING=1 goes out only once
    MQTT and the history are closed, so the watchdog still bounds a shutdown that hangs. (No
    WATCHDOG=1 once it failed: tests/unit/test_sd_notify.py, on the heartbeat's decisions.)"""
    closed: list[tuple[bool, float]] = []
    real_close = run_module.close_mqtt

    def close_mqtt(bridge: object, sink: object, *, drain: bool = True) -> None:
        real_close(bridge, sink, drain=drain)  # type: ignore[arg-type]
        closed.append((drain, time.perf_counter()))

    sent: list[tuple[float, tuple[str, ...]]] = []
    real_send = Notifier.send

    def send(self: Notifier, *lines: str) -> bool:
        sent.append((time.perf_counter(), lines))  # when it goes, not when the harness reads it
        return real_send(self, *lines)

    mocker.patch.object(run_module, "close_mqtt", close_mqtt)
    mocker.patch.object(Notifier, "send", send)
    schedule = Schedule(1, (Fault("exc_engine", 7.0),), ((2.9, 3.0), (4.2, 3.0)), False, 6.0)
    with harness() as (base, watchdog, broker):
        r = run_schedule(schedule, base, broker, watchdog)
    assert r.exit_code == 70 and r.failed_real is not None and r.exited is not None
    pings = [t for t, lines in sent if "WATCHDOG=1" in lines]
    stopping = [t for t, lines in sent if "STOPPING=1" in lines]
    assert pings and pings[0] < r.failed_real  # it was fed while it worked
    assert len(closed) == 1
    drained, mqtt_closed = closed[0]
    assert drained is False
    assert len(stopping) == 1 and mqtt_closed < stopping[0] <= r.exited
