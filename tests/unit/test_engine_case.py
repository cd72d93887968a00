"""The engine with both machines: UV effects first, the sterility gate (S8), case status."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dermaguard.config.params import (
    default_case_params,
    default_engine_params,
    default_zero_tracking_params,
)
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged, LidChanged, SterilizeRequested, UvSensed
from dermaguard.core.engine import CASE_TICK_S, Engine, History
from dermaguard.core.events import (
    CaseStatus,
    DeviceState,
    EmitEvent,
    Event,
    EventType,
    ForceRead,
    Priority,
    SetUv,
    ShowIndicators,
    ThreadFailed,
    Tick,
    UvLockedOut,
)
from dermaguard.core.filters import Median
from dermaguard.core.words import describe
from dermaguard.core.zero_tracking import ZERO_DRIFT
from dermaguard.mqtt.decode import check_schema
from dermaguard.mqtt.payloads import state_payload
from support.uv_echo import EchoingEngine

CAL = Calibration(offset=0.0, scale_n_per_count=1 / 40_000)


def engine(cycle_s: float = 60.0) -> Engine:
    params = default_engine_params(case=default_case_params(cycle_s=cycle_s))
    return EchoingEngine(params, CAL, (Median(3),), ())


def touch(e: Engine, t0: float, force_n: float = 2.0, n: int = 6) -> list[str]:
    types: list[str] = []
    for i in range(n):
        for eff in e.handle(ForceRead(t0 + i / 80, round(force_n * 40_000))):
            if isinstance(eff, EmitEvent):
                types.append(eff.event.type)
    return types


def test_s8_first_contact_after_undocking_without_a_cycle_raises_unsterile_use() -> None:
    e = engine()
    e.handle(DockChanged(0.0, True))
    e.handle(DockChanged(1.0, False))
    assert touch(e, 2.0).count("unsterile_use") == 1
    assert e.indicators().alarm is Priority.MEDIUM
    assert e.indicators().alarm_reason == "unsterile_use"
    # Lifting and touching again in the same use does not raise it again.
    touch(e, 3.0, force_n=0.0)
    assert "unsterile_use" not in touch(e, 4.0)
    # Docking ends the use and clears the alarm.
    e.handle(DockChanged(5.0, True))
    assert e.indicators().alarm is None


def test_s8_a_completed_cycle_makes_the_next_use_sterile_and_is_spent_by_it() -> None:
    e = engine(cycle_s=60.0)
    e.handle(DockChanged(0.0, True))
    effects = e.handle(LidChanged(1.0, True))
    assert effects[0] == SetUv(True)
    for k in range(1, 140):
        e.handle(Tick(1.0 + k * 0.5))
    assert e.case.state == "sterile"
    off = e.handle(LidChanged(71.0, False))
    assert SetUv(True) not in off
    e.handle(DockChanged(72.0, False))
    assert "unsterile_use" not in touch(e, 73.0)
    # Sterility was spent by that use: the next use without a new cycle is unsterile.
    touch(e, 76.0, force_n=0.0)
    e.handle(DockChanged(80.0, True))
    e.handle(DockChanged(81.0, False))
    assert "unsterile_use" in touch(e, 82.0)


def test_uv_off_comes_before_every_other_effect_when_the_lid_opens() -> None:
    e = engine()
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(1.0, True))
    effects = e.handle(LidChanged(5.0, False))
    assert effects[0] == SetUv(False)
    assert any(
        isinstance(x, EmitEvent) and x.event.type == "sterilization_aborted" for x in effects
    )
    shown = [x for x in effects if isinstance(x, ShowIndicators)]
    assert shown and shown[0].alarm is Priority.LOW


def test_s11_a_refused_sterilize_request_is_answered_with_its_request_id() -> None:
    e = engine()
    effects = e.handle(SterilizeRequested(0.0, "r-1"))
    results = [x.event for x in effects if isinstance(x, EmitEvent)]
    assert results and results[0].type == "command_result"
    assert results[0].data["request_id"] == "r-1" and results[0].data["ok"] is False
    assert not any(isinstance(x, SetUv) and x.on for x in effects)


def test_countdown_is_reported_every_step_while_sterilizing() -> None:
    e = engine(cycle_s=120.0)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(0.0, True))
    remaining = []
    for k in range(1, 240):
        for x in e.handle(Tick(k * 0.5)):
            if isinstance(x, CaseStatus) and x.state == "sterilizing":
                remaining.append(x.remaining_s)
    assert remaining == [90.0, 60.0, 30.0]  # every 30 s after the start


def test_s3_the_engine_starts_with_uv_off_before_any_other_effect() -> None:
    """Whatever the pin was left at (a crash, a previous run), the first thing done is UV off."""
    effects = engine().startup_effects(0.0, 1000.0)
    assert effects[0] == SetUv(False)
    assert [x for x in effects if isinstance(x, SetUv)] == [SetUv(False)]


def test_s3_the_engine_stops_with_uv_off_first_while_a_cycle_has_it_on() -> None:
    e = engine(cycle_s=600.0)
    e.handle(DockChanged(0.0, True))
    assert e.handle(LidChanged(1.0, True))[0] == SetUv(True)
    e.handle(Tick(50.0))
    effects = e.shutdown(51.0)
    assert effects[0] == SetUv(False)
    assert [x for x in effects if isinstance(x, SetUv)] == [SetUv(False)]


def test_stopping_during_a_cycle_aborts_it_and_the_last_case_status_says_so() -> None:
    e = engine(cycle_s=600.0)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(1.0, True))
    e.handle(Tick(50.0))
    effects = e.shutdown(51.0)
    assert effects[0] == SetUv(False)
    types = [x.event.type for x in effects if isinstance(x, EmitEvent)]
    assert types == ["sterilization_aborted", "daemon_stopping"]
    aborted = next(x.event for x in effects if isinstance(x, EmitEvent))
    assert aborted.data["reason"] == "daemon_stopped" and aborted.data["after_s"] == 50.0
    status = [x for x in effects if isinstance(x, CaseStatus)]
    assert status and status[-1].state == "aborted" and not status[-1].uv_on
    assert status[-1].remaining_s is None and status[-1].sterile is False


def test_stopping_with_no_cycle_running_aborts_nothing() -> None:
    e = engine()
    e.handle(DockChanged(0.0, True))
    effects = e.shutdown(5.0)
    types = [x.event.type for x in effects if isinstance(x, EmitEvent)]
    assert types == ["daemon_stopping"]


def test_s3_a_lock_out_aborts_the_cycle_uv_off_first_and_the_alarm_shows() -> None:
    e = engine(cycle_s=600.0)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(1.0, True))
    effects = e.handle(UvLockedOut(20.0, "thread_failed:mqtt"))
    assert effects[0] == SetUv(False)
    aborted = next(x.event for x in effects if isinstance(x, EmitEvent))
    assert aborted.type == "sterilization_aborted"
    assert aborted.data["reason"] == "uv_locked_out"
    assert aborted.data["detail"] == "thread_failed:mqtt"
    shown = next(x for x in effects if isinstance(x, ShowIndicators))
    assert shown.alarm is not None and shown.alarm_reason == "sterilization_aborted"
    assert e.case.sterility(700.0) == (False, None)


def test_s3_a_lock_out_with_no_cycle_is_answered_with_uv_off_to_release_the_shell() -> None:
    """The shell holds UV off after a trip until the engine commands off: it must say so even
    when it never commanded on, or the next cycle would be refused."""
    e = engine()
    effects = e.handle(UvLockedOut(1.0, "thread_failed:status-file"))
    assert effects[0] == SetUv(False)
    assert not [x for x in effects if isinstance(x, EmitEvent)]


def test_a_failed_thread_is_an_event() -> None:
    e = engine()
    effects = e.handle(ThreadFailed(3.0, "store-writer", "RuntimeError('x')", 1.23456, 1))
    [event] = [x.event for x in effects if isinstance(x, EmitEvent)]
    assert event.type == "thread_failed"
    assert dict(event.data) == {
        "thread": "store-writer",
        "error": "RuntimeError('x')",
        "failures": 1,
        "restart_in_s": 1.235,  # to the millisecond
    }
    # ... and the dashboards' state says so (published on the change).
    [state] = [x for x in effects if isinstance(x, DeviceState)]
    assert state.thread_failures == 1
    check_schema("state", json.loads(state_payload(state)))  # raises if outside the contract


def test_a_failed_thread_and_an_output_abort_are_said_in_words() -> None:
    failed = Event(
        EventType.THREAD_FAILED,
        1.0,
        {"thread": "mqtt", "error": "ValueError()", "failures": 2, "restart_in_s": 2.0},
    )
    assert (
        describe(failed)
        == "FAULT thread mqtt failed (ValueError()): UV-C off, restarting it in 2 s"
    )
    aborted = Event(
        EventType.STERILIZATION_ABORTED,
        1.0,
        {"cycle_id": 3, "reason": "uv_refused", "after_s": 0.0, "detail": "locked_out"},
    )
    assert describe(aborted) == "UV-C cycle 3 ABORTED after 0 s: uv_refused (locked_out)"


def test_h31_a_stuck_on_uv_is_a_high_alarm_on_the_dashboard_until_a_restart() -> None:
    """Light with the lid closed and UV off: the state carries the fault and the alarm."""
    params = default_engine_params(
        case=default_case_params(uv_sensor=True, uv_confirm_s=5.0, auto_start=False)
    )
    e = EchoingEngine(params, CAL, (Median(3),), ())
    e.handle(LidChanged(0.0, True))
    e.handle(UvSensed(0.5, True))
    effects = e.handle(Tick(6.0))
    faults = [x.event for x in effects if isinstance(x, EmitEvent)]
    assert [(f.type, f.data["reason"]) for f in faults] == [("case_fault", "uv_stuck_on")]
    shown = [x for x in effects if isinstance(x, ShowIndicators)]
    assert shown and shown[-1].alarm == Priority.HIGH
    state = e.device_state(6.0, 1_700_000_006.0)
    payload = json.loads(state_payload(state))
    check_schema("state", payload)
    assert (payload["case_fault"], payload["alarm"]) == ("uv_stuck_on", "case_fault")
    e.handle(LidChanged(10.0, False))
    e.handle(UvSensed(10.0, False))
    assert e.device_state(20.0, 1_700_000_020.0).case_fault == "uv_stuck_on"  # still latched


def touch_events(e: Engine, t0: float, force_n: float = 2.0, n: int = 6) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        effects = e.handle(ForceRead(t0 + i / 80, round(force_n * 40_000)))
        out += [x.event for x in effects if isinstance(x, EmitEvent)]
    return out


def test_s8_a_sterile_session_names_the_cycle_it_spent_and_an_unsterile_one_its_session() -> None:
    e = engine(cycle_s=60.0)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(1.0, True))
    for k in range(1, 140):
        e.handle(Tick(1.0 + k * 0.5))
    e.handle(LidChanged(71.0, False))
    e.handle(DockChanged(72.0, False))
    [started] = [x for x in touch_events(e, 73.0) if x.type == "session_started"]
    assert started.data["sterile"] is True and started.data["cycle_id"] == 1
    touch_events(e, 76.0, force_n=0.0)
    e.handle(DockChanged(80.0, True))
    e.handle(DockChanged(81.0, False))
    used = touch_events(e, 82.0)
    [second] = [x for x in used if x.type == "session_started"]
    assert second.data["sterile"] is False and second.data["cycle_id"] is None
    [unsterile] = [x for x in used if x.type == "unsterile_use"]
    assert unsterile.data == {"last_cycle_id": 1, "session_no": second.data["session_no"]}


def test_s3_start_up_and_shutdown_date_their_records_by_the_wall_clock_given() -> None:
    """The engine's times are monotonic; what it records and publishes carries the wall clock
    the shell passes (here 2023-11-14), never the monotonic time standing in for it."""
    wall0 = 1_700_000_000.0
    e = engine()
    [*_, state] = e.startup_effects(5.0, wall0)
    assert isinstance(state, DeviceState) and state.wall == wall0
    e.handle(DockChanged(6.0, True), wall0 + 1)
    e.handle(DockChanged(7.0, False), wall0 + 2)
    for i in range(6):
        e.handle(ForceRead(8.0 + i / 80, 80_000), wall0 + 3 + i / 80)
    effects = e.shutdown(20.0, wall0 + 15.0)
    [ended] = [
        x.event for x in effects if isinstance(x, EmitEvent) and x.event.type == "session_ended"
    ]
    assert ended.data["ended_at"] == "2023-11-14T22:13:35.000Z"
    # ... and the last snapshot, with no session open any more, is published with it.
    [last] = [x for x in effects if isinstance(x, DeviceState)]
    assert last.wall == wall0 + 15.0 and last.session_no is None and not last.uv_on


def test_s8_no_session_starts_while_the_force_is_unknown() -> None:
    """Out of the dock with the sensor failing: no contact is known, so no session and no
    unsterile use, until a good reading shows contact."""
    e = engine()
    e.handle(DockChanged(0.0, True))
    e.handle(DockChanged(1.0, False))
    failing = []
    for i in range(12):
        effects = e.handle(ForceRead(2.0 + i / 80, -(2**23)))  # pinned at the bottom
        failing += [x.event.type for x in effects if isinstance(x, EmitEvent)]
    assert "sensor_fault" in failing and e.pressure.zone is None
    assert "session_started" not in failing and "unsterile_use" not in failing


def _uv_off_time(e: Engine, t0: float, step: float, n: int) -> float | None:
    """Feed unloaded readings ``step`` apart from ``t0`` (no ``Tick``): when UV went off."""
    for k in range(1, n):
        t = t0 + k * step
        if SetUv(False) in e.handle(ForceRead(t, 0)):
            return t
    return None


def test_samples_alone_run_the_case_timers_once_every_case_tick() -> None:
    """With no ``Tick`` (the ticker is the runtime's), readings advance the case's timers, but
    only once ``CASE_TICK_S`` of input time has passed since the case last looked: readings
    come at up to 80/s and the case need not look at each. Here, with readings 1/64 s apart,
    the case looks every 4th reading, so a cycle ending between two looks (70/64 s after its
    start) is seen at the next look (72/64 s), neither sooner nor later."""
    e = engine(cycle_s=70 / 64)
    e.handle(DockChanged(0.0, True))
    assert e.handle(LidChanged(1.0, True))[0] == SetUv(True)  # the case looked at 1.0
    assert _uv_off_time(e, 1.0, 1 / 64, 300) == 1.0 + 72 / 64
    assert e.case.state == "sterile"


def test_a_reading_exactly_one_case_tick_after_the_last_look_runs_the_case_timers() -> None:
    """``CASE_TICK_S`` is a bound the reading may reach: the case looks at a reading that comes
    exactly that long after its last look (0.05 s, the cycle's end here), not at the next."""
    e = engine(cycle_s=0.05)
    e.handle(DockChanged(0.0, True))
    assert e.handle(LidChanged(0.05, True))[0] == SetUv(True)  # starts at 0.05, ends at 0.1
    assert CASE_TICK_S == 0.1 - 0.05  # exactly, in floating point
    assert SetUv(False) in e.handle(ForceRead(0.1, 0))


def test_a_new_engine_commands_uv_only_when_the_case_changes_it() -> None:
    """The engine starts believing UV off, as the shell creates it (S3): readings, ticks and
    the dock send no ``SetUv`` until a cycle switches UV on."""
    e = engine()
    effects = [
        *e.handle(ForceRead(0.0, 0)),
        *e.handle(Tick(0.5)),
        *e.handle(DockChanged(1.0, True)),
    ]
    assert not [x for x in effects if isinstance(x, SetUv)]


def test_the_state_snapshot_can_be_taken_before_any_input() -> None:
    """A daemon stopped before its first input still publishes a last snapshot: the
    indicators it shows are worked out, not taken from a previous snapshot that never was."""
    e = engine()
    [state] = [x for x in e.shutdown(1.0, 1000.0) if isinstance(x, DeviceState)]
    assert state.alarm is None and state.silenced is False and state.state == "idle"


def test_the_sterility_deadline_is_published_on_the_wall_clock_to_the_millisecond() -> None:
    """``sterile_until_wall`` is the deadline's distance from now, added to the wall clock now,
    rounded to the millisecond (docs/MQTT.md's state payload)."""
    e = engine(cycle_s=1.0)
    e.handle(DockChanged(0.0, True))
    e.handle(LidChanged(1.0, True))
    e.handle(Tick(2.0))
    assert e.case.state == "sterile"
    e.handle(LidChanged(3.0, False))
    e.handle(DockChanged(4.0, False))
    until = e.case.sterile_until(5.0)
    assert until is not None and until > 5.0
    wall = 1_790_000_000.123456
    published = e.device_state(5.0, wall).sterile_until_wall
    assert published is not None
    assert abs(published - (wall + (until - 5.0))) < 0.0005
    assert published == round(published, 3)


def test_the_case_time_never_runs_back_from_the_first_reading_on() -> None:
    """Inputs reach the engine's queue from several threads, so an edge stamped a little before
    a reading may be handled after it. The case's clock never runs back: from the very first
    reading it is at least that reading's time, and a cycle the late edge starts, starts then."""
    e = engine()
    e.handle(ForceRead(1.0, 0))
    e.handle(DockChanged(0.5, True))
    effects = e.handle(LidChanged(0.5, True))
    [started] = [
        x.event
        for x in effects
        if isinstance(x, EmitEvent) and x.event.type == "sterilization_started"
    ]
    assert started.t == 1.0


def test_a_roller_pressed_as_it_leaves_the_dock_starts_its_session_on_the_undocking() -> None:
    """Contact while docked starts nothing (S8 judges use out of the dock); a roller already
    pressed when it is taken out is in use from that moment, without waiting for a reading."""
    e = engine()
    e.handle(DockChanged(0.0, True))
    touch(e, 1.0)  # pressed in the dock: no session
    assert not e.sessions.active
    undocked = [x.event.type for x in e.handle(DockChanged(2.0, False)) if isinstance(x, EmitEvent)]
    assert "session_started" in undocked and "unsterile_use" in undocked


def test_the_zero_tracking_reports_reach_the_effects() -> None:
    """What the zero tracking has to say (here: a drift beyond its range, a sensor fault)
    goes out with the reading that caused it, like every other event."""
    params = default_engine_params(
        case=default_case_params(cycle_s=60.0, auto_start=False),
        zero_tracking=default_zero_tracking_params(max_total_n=0.05),
    )
    e = Engine(params, CAL, (Median(3),), ())
    e.handle(DockChanged(0.0, True))
    e.handle(ForceRead(0.5, 0))
    assert e.device_state(0.5, 0.5).fault is None
    faults = []
    for i in range(2400):  # twenty minutes docked, the zero 0.08 N up
        for x in e.handle(ForceRead(1.0 + i / 2, round(CAL.raw_for(0.08)))):
            if isinstance(x, EmitEvent) and x.event.type == EventType.SENSOR_FAULT:
                faults.append(x.event.data["reason"])
    assert faults == [ZERO_DRIFT]
    # ... and the published state names the fault while it stands.
    assert e.device_state(1200.0, 1200.0).fault == ZERO_DRIFT


def test_the_engine_params_and_history_cannot_change_under_it() -> None:
    """The engine and its machines keep their parameters and the stored past for their life:
    both are frozen, so no caller can move a limit or a count behind their back."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        default_engine_params().silence_s = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        History().roller_uses = 0  # type: ignore[misc]


def test_the_zero_is_followed_only_docked_and_unloaded() -> None:
    """Zero tracking follows a drift only while the roller rests in the dock with nothing on
    it (core/zero_tracking.py): out of the dock, or docked under a load, the zero stays."""
    params = default_engine_params(case=default_case_params(cycle_s=60.0, auto_start=False))
    e = Engine(params, CAL, (Median(3),), ())
    e.handle(DockChanged(0.0, False))
    for i in range(600):  # five minutes out of the dock at +0.08 N
        e.handle(ForceRead(1.0 + i / 2, round(CAL.raw_for(0.08))))
    assert e.zero.total_n == 0.0
    e.handle(DockChanged(400.0, True))
    for i in range(600):  # five minutes docked with something on it: 0.5 N
        e.handle(ForceRead(401.0 + i / 2, round(CAL.raw_for(0.5))))
    assert e.zero.total_n == 0.0 and e.pressure.calibration.offset == CAL.offset
    for i in range(600):  # five minutes docked, unloaded, the zero 0.08 N up: followed
        e.handle(ForceRead(701.0 + i / 2, round(CAL.raw_for(0.08))))
    assert e.zero.total_n > 0.0 and e.pressure.calibration.offset > CAL.offset


def test_leaving_the_dock_restarts_the_zero_trackings_block() -> None:
    """The zero is followed from blocks of steady unloaded readings in the dock (``window_s``,
    10 s by default); leaving the dock ends the block, so readings before it never count with
    those after the roller is back, nor the time away towards the correction allowed."""
    params = default_engine_params(case=default_case_params(cycle_s=60.0, auto_start=False))
    assert params.zero_tracking.window_s == 10.0
    e = Engine(params, CAL, (Median(3),), ())
    e.handle(DockChanged(0.0, True))
    for i in range(12):  # 6 s unloaded in the dock, the zero 0.08 N up
        e.handle(ForceRead(1.0 + i / 2, round(CAL.raw_for(0.08))))
    e.handle(DockChanged(7.0, False))
    for i in range(120):  # a minute out of the dock, untouched
        e.handle(ForceRead(7.5 + i / 2, round(CAL.raw_for(0.08))))
    e.handle(DockChanged(68.0, True))
    for i in range(12):  # 6 s in the dock again: less than a block since it came back
        e.handle(ForceRead(68.5 + i / 2, round(CAL.raw_for(0.08))))
    assert e.zero.total_n == 0.0 and e.pressure.calibration.offset == CAL.offset


def test_a_followed_drift_moves_the_zero_in_counts_and_is_recorded_to_a_tenth() -> None:
    """A correction of the zero by ``shift_n`` newtons moves the offset by ``shift_n`` divided
    by the scale (N per count); the ``calibration_changed`` record gives the new offset, to a
    tenth of a count like a tare's."""
    params = default_engine_params(case=default_case_params(cycle_s=60.0, auto_start=False))
    e = Engine(params, CAL, (Median(3),), ())
    e.handle(DockChanged(0.0, True))
    records = []
    for i in range(60):  # 30 s unloaded in the dock, the zero 0.08 N up
        for x in e.handle(ForceRead(1.0 + i / 2, round(CAL.raw_for(0.08)))):
            if isinstance(x, EmitEvent) and x.event.type == EventType.CALIBRATION_CHANGED:
                records.append((x.event.data, e.pressure.calibration.offset))
    assert e.zero.total_n > 0.0
    moved = e.pressure.calibration.offset - CAL.offset
    assert abs(moved - e.zero.total_n / CAL.scale_n_per_count) < 1e-6
    [(data, offset)] = records[:1]
    assert offset != round(offset, 1)  # a fraction of a count: the rounding shows
    assert data["offset"] == round(offset, 1)
