"""``silence`` mutes the alarm sounding when it is received, and no other (S11, docs/MQTT.md).

A silence sent with no alarm sounding is refused and mutes nothing later; a new alarm (another
one, or the same kind starting anew) sounds whatever silence came before it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.config.params import default_case_params, default_engine_params
from dermaguard.core.calibration import Calibration, CalibrationPoint
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine
from dermaguard.core.events import (
    Command,
    Effect,
    EmitEvent,
    Event,
    ForceRead,
    Priority,
    ReadFailed,
    Tick,
)
from dermaguard.core.filters import Median

#: The events that start an alarm the indicators show.
ALARM_REASONS = {"over_pressure", "sensor_fault", "unsterile_use", "sterilization_aborted"}
COUNTS_PER_N = 40_000
CAL = Calibration(
    offset=0.0,
    scale_n_per_count=1 / COUNTS_PER_N,
    points=(CalibrationPoint(0.0, 0.0), CalibrationPoint(5 * COUNTS_PER_N, 5.0)),
)


def engine() -> Engine:
    params = default_engine_params(
        case=default_case_params(cycle_s=60.0, auto_start=False), silence_s=120.0
    )
    return Engine(params, CAL, (Median(3),), ())


def events(effects: list[Effect]) -> list[Event]:
    return [x.event for x in effects if isinstance(x, EmitEvent)]


def result(effects: list[Effect]) -> dict[str, Any]:
    found = [e.data for e in events(effects) if e.type == "command_result"]
    assert len(found) == 1, events(effects)
    return dict(found[0])


def feed(e: Engine, t0: float, force_n: float, n: int = 8) -> float:
    for i in range(n):
        e.handle(ForceRead(t0 + i / 80, round(force_n * COUNTS_PER_N)))
    return t0 + n / 80


def fault(e: Engine, t0: float, n: int = 3) -> float:
    """The load cell stops answering: a ``not_ready`` sensor fault."""
    for i in range(n):
        e.handle(ReadFailed(t0 + i / 80, "timeout"))
    return t0 + n / 80


def test_s11_a_silence_with_no_alarm_is_refused_and_mutes_no_later_alarm() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    r = result(e.handle(Command(1.0, "silence", "s", {"duration_s": 120})))
    assert r["ok"] is False and r["error"].startswith("nothing to silence")
    assert r["request_id"] == "s"
    fault(e, 2.0)  # a sensor fault within the 120 s the silence asked for
    shown = e.indicators()
    assert shown.alarm_reason == "sensor_fault" and not shown.silenced


def test_s11_a_silence_for_over_pressure_does_not_mute_a_sensor_fault_that_follows() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    feed(e, 1.0, 6.0)
    assert e.indicators().alarm is Priority.HIGH
    r = result(e.handle(Command(2.0, "silence", None, {"duration_s": 120})))
    assert r["ok"] is True and r["alarm"] == "over_pressure"
    assert e.indicators().silenced
    fault(e, 3.0)
    # The fault is news: the buzzer sounds again (the episode's high alarm, which the fault
    # leaves open, with the fault beside it).
    shown = e.indicators()
    assert e.pressure.fault is not None and not shown.silenced
    assert shown.alarm is Priority.HIGH


def test_s11_a_silence_for_unsterile_use_does_not_mute_an_over_pressure_alarm() -> None:
    e = engine()
    e.handle(DockChanged(0.0, True))
    e.handle(DockChanged(0.5, False))
    feed(e, 1.0, 2.0)  # first contact without a disinfection: unsterile_use
    assert e.indicators().alarm_reason == "unsterile_use"
    assert result(e.handle(Command(2.0, "silence")))["ok"] is True
    assert e.indicators().silenced
    feed(e, 3.0, 6.0)
    shown = e.indicators()
    assert shown.alarm_reason == "over_pressure" and not shown.silenced


def test_s11_a_silenced_alarm_that_ends_leaves_nothing_muted() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    t = fault(e, 1.0)
    assert result(e.handle(Command(t, "silence")))["ok"] is True
    t = feed(e, t + 0.1, 0.0, n=40)  # the sensor recovers: the fault alarm ends
    assert e.indicators().alarm is None
    fault(e, t + 1.0)  # the same kind starting anew sounds
    shown = e.indicators()
    assert shown.alarm_reason == "sensor_fault" and not shown.silenced


#: What a step of the property below does: a force held for some samples, a dropped
#: conversion, the dock, a silence, or time passing.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("force"), st.sampled_from([0.0, 2.0, 6.0]), st.integers(1, 12)),
        st.tuples(st.just("timeout"), st.integers(1, 4)),
        st.tuples(st.just("dock"), st.booleans()),
        st.tuples(st.just("silence"), st.floats(1, 600)),
        st.tuples(st.just("wait"), st.floats(0.1, 200.0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_s11_the_buzzer_is_silenced_only_for_the_alarm_sounding_when_silence_came(
    plan: list[tuple[Any, ...]],
) -> None:
    """Model: an accepted silence names the alarm sounding then; it holds only while that
    alarm sounds without a break, no new alarm has started, and its time has not run out."""
    e = engine()
    t = 0.0
    muted: str | None = None  # the alarm the last accepted silence was for, while it holds
    until = 0.0
    for step in plan:
        out: list[Effect] = []
        if step[0] == "force":
            for _ in range(step[2]):
                t += 1 / 80
                out += e.handle(ForceRead(t, round(step[1] * COUNTS_PER_N)))
        elif step[0] == "timeout":
            for _ in range(step[1]):
                t += 1 / 80
                out += e.handle(ReadFailed(t, "timeout"))
        elif step[0] == "dock":
            t += 0.1
            out += e.handle(DockChanged(t, step[1]))
        elif step[0] == "silence":
            t += 0.1
            sounding = e.indicators().alarm_reason
            r = result(e.handle(Command(t, "silence", None, {"duration_s": step[1]})))
            assert r["ok"] is (sounding is not None)
            if sounding is not None:
                muted, until = sounding, t + min(step[1], 120.0)
            continue
        else:
            t += step[1]
            out += e.handle(Tick(t))
        reason = e.indicators().alarm_reason
        if any(ev.type in ALARM_REASONS for ev in events(out)) or reason != muted or t >= until:
            muted = None
        assert e.indicators().silenced == (muted is not None), (step, reason, muted)


def test_s11_a_silence_ends_when_its_time_is_up_though_the_alarm_still_sounds() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    t = feed(e, 1.0, 6.0)
    assert result(e.handle(Command(t, "silence", None, {"duration_s": 10})))["ok"] is True
    t = feed(e, t, 6.0, n=int(9.9 * 80))
    assert e.indicators().silenced and e.indicators().alarm_reason == "over_pressure"
    feed(e, t, 6.0, n=16)  # past the 10 s, the same over-pressure still sounding
    assert not e.indicators().silenced and e.silence is None


def test_s11_a_silence_answers_for_how_long_it_mutes_capped_at_the_limit() -> None:
    e = engine()
    feed(e, 0.0, 0.0)
    t = feed(e, 1.0, 6.0)
    r = result(e.handle(Command(t, "silence", None, {"duration_s": 10.1234})))
    assert r["duration_s"] == 10.123 and r["alarm"] == "over_pressure"
    r = result(e.handle(Command(t + 1, "silence", None, {"duration_s": 999})))
    assert r["duration_s"] == 120.0  # alarm.silence_s: a silence never lasts longer
