"""The sterilizing case's pure state machine, on virtual time."""

from __future__ import annotations

import copy
import math
from dataclasses import FrozenInstanceError, dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dermaguard.config.params import default_case_params
from dermaguard.core.case import (
    CaseInput,
    CaseMachine,
    CaseParams,
    CaseUpdate,
    DockChanged,
    LidChanged,
    LidContactChanged,
    SterilizeRequested,
    UvFault,
    UvSensed,
)
from dermaguard.core.events import Event, Tick, UvLockedOut, UvOutput, UvRefused
from support.uv_echo import EchoingCase

CYCLE = 600.0


def docked_machine(**params: object) -> CaseMachine:
    """Roller in the dock, lid open: the usual moment before a cycle."""
    return EchoingCase(default_case_params(**params), docked=True)


def types(update: CaseUpdate) -> list[str]:
    return [e.type for e in update.events]


def only(update: CaseUpdate, kind: str) -> Event:
    [event] = [e for e in update.events if e.type == kind]
    return event


# --- cycles ---------------------------------------------------------------------------------


def test_closing_the_lid_on_a_docked_roller_starts_a_cycle() -> None:
    m = docked_machine()
    before = m.state
    assert before == "open"
    up = m.handle(LidChanged(10.0, True))
    assert up.uv_on and m.uv_on and m.state == "sterilizing"
    started = only(up, "sterilization_started")
    assert started.t == 10.0
    assert dict(started.data) == {
        "cycle_id": 1,
        "mode": "time",
        "length_s": CYCLE,
        "cap_s": pytest.approx(CYCLE * 1.1),
        "trigger": "auto",
    }
    assert m.remaining_s(100.0) == pytest.approx(CYCLE - 90.0)


def test_completion_makes_the_roller_sterile_with_its_cycle_id() -> None:
    m = docked_machine()
    m.handle(LidChanged(0.0, True))
    assert not m.handle(Tick(CYCLE - 0.01)).events
    assert m.sterility(CYCLE - 0.01) == (False, None)
    up = m.handle(Tick(CYCLE))
    done = only(up, "sterilization_completed")
    assert done.data == {"cycle_id": 1, "duration_s": CYCLE, "uv_on_s": CYCLE}
    assert not up.uv_on and m.state == "sterile"
    assert m.sterility(CYCLE + 1) == (True, 1)
    assert m.sterile_until(CYCLE + 1) is None  # docked: no deadline runs
    assert m.remaining_s(CYCLE + 1) is None
    # The next cycle gets the next id.
    m.handle(LidChanged(CYCLE + 10, False))
    up = m.handle(LidChanged(CYCLE + 20, True))
    assert only(up, "sterilization_started").data["cycle_id"] == 2


def test_s4_a_request_that_arrives_as_a_cycle_ends_does_not_keep_uv_on() -> None:
    """The cycle ends on this input: starting the next at once would leave UV on for two."""
    m = docked_machine(auto_start=False, cycle_s=5.0)
    m.handle(LidChanged(0.0, True))
    assert m.handle(SterilizeRequested(0.0)).uv_on
    up = m.handle(SterilizeRequested(5.2))
    assert types(up) == ["sterilization_completed"]
    assert up.refused == "already_sterilizing" and not up.uv_on
    assert m.handle(SterilizeRequested(5.2)).uv_on  # the next input may start one


def test_time_passes_before_an_input_acts() -> None:
    """An input first brings the timers up to its time: a cycle due to complete before the lid
    opens, with no tick in between, completed (the roller is sterile), and was not aborted by
    an opening that came after its end."""
    m = docked_machine()
    m.handle(LidChanged(0.0, True))
    up = m.handle(LidChanged(CYCLE + 1, False))
    assert types(up) == ["sterilization_completed"]
    assert only(up, "sterilization_completed").t == CYCLE + 1
    assert m.sterility(CYCLE + 1) == (True, 1)


def test_stopping_the_daemon_aborts_the_cycle_at_the_latest_time_the_case_has_seen() -> None:
    """The stop's time cannot move the abort before the last input (a late clock reading
    still stamps it at the case's own time), and a stop before any input works."""
    m = docked_machine()
    m.handle(LidChanged(10.0, True))
    m.handle(Tick(70.0))
    up = m.stop(65.0)
    aborted = only(up, "sterilization_aborted")
    assert aborted.t == 70.0
    assert aborted.data == {"cycle_id": 1, "reason": "daemon_stopped", "after_s": 60.0}
    assert not up.uv_on and m.now == 70.0
    fresh = docked_machine()
    up = fresh.stop(5.0)
    assert up.events == [] and not up.uv_on and fresh.now == 5.0


def test_a_request_that_arrives_as_a_cycle_is_cut_off_is_answered_already_sterilizing() -> None:
    """Like one that arrives as a cycle completes: the cycle it would follow ended on this very
    input (here: no report that the output was driven, at ``uv_confirm_s``)."""
    params = default_case_params(auto_start=False, uv_confirm_s=5.0, lid_contact=False)
    m = CaseMachine(params, lid_closed=True, docked=True)
    assert m.handle(SterilizeRequested(0.0)).uv_on
    up = m.handle(SterilizeRequested(5.0))
    assert types(up) == ["sterilization_aborted"] and up.refused == "already_sterilizing"
    assert m.handle(SterilizeRequested(6.0)).refused == "fault:uv_not_driven"


def test_cycle_ids_continue_a_stored_numbering() -> None:
    m = EchoingCase(default_case_params(), docked=True, last_cycle_id=41)
    assert only(m.handle(LidChanged(0.0, True)), "sterilization_started").data["cycle_id"] == 42


def test_without_auto_start_a_request_starts_the_cycle() -> None:
    m = docked_machine(auto_start=False)
    up = m.handle(LidChanged(0.0, True))
    assert not up.events and not up.uv_on and m.state == "ready"
    up = m.handle(SterilizeRequested(1.0, "r-1"))
    assert up.refused is None and up.uv_on
    data = only(up, "sterilization_started").data
    assert data["trigger"] == "command" and data["request_id"] == "r-1"
    assert m.handle(SterilizeRequested(2.0, "r-2")).refused == "already_sterilizing"


@pytest.mark.parametrize(
    ("lid", "docked", "reason"),
    [(False, True, "lid_open"), (False, False, "lid_open"), (True, False, "roller_not_docked")],
)
def test_s11_a_request_without_lid_closed_and_roller_docked_is_refused_and_uv_stays_off(
    lid: bool, docked: bool, reason: str
) -> None:
    m = EchoingCase(default_case_params(), lid_closed=lid, docked=docked)
    up = m.handle(SterilizeRequested(5.0, "r"))
    assert up.refused == reason
    assert not up.uv_on and not m.uv_on and not up.events
    assert m.state == "open"


@pytest.mark.parametrize(
    ("inp", "reason"),
    [
        (LidChanged(30.0, False), "lid_opened"),
        (DockChanged(30.0, False), "roller_removed"),
        (UvFault(30.0, "driver_overtemp"), "fault:driver_overtemp"),
    ],
)
def test_s1_anything_but_lid_closed_docked_and_no_fault_stops_uv_and_aborts(
    inp: CaseInput, reason: str
) -> None:
    m = docked_machine()
    assert m.handle(LidChanged(0.0, True)).uv_on
    up = m.handle(inp)
    assert not up.uv_on and not m.uv_on
    aborted = only(up, "sterilization_aborted")
    assert aborted.data == {"cycle_id": 1, "reason": reason, "after_s": 30.0}
    assert m.sterility(31.0) == (False, None)
    assert m.state == ("aborted" if reason != "roller_removed" else "open")
    assert m.handle(Tick(2 * CYCLE)).events == []  # nothing completes later


def test_s1_uv_is_never_commanded_before_the_lid_closes_or_without_the_roller() -> None:
    m = EchoingCase(default_case_params())
    assert not m.handle(LidChanged(0.0, True)).uv_on  # closed on an empty dock
    assert not m.handle(DockChanged(1.0, True)).uv_on  # docking with the lid shut: no start
    assert m.state == "ready"
    assert m.handle(SterilizeRequested(2.0)).uv_on  # ... but a request may start it


def test_s1_a_latched_fault_refuses_cycles_until_the_lid_is_opened() -> None:
    m = docked_machine()
    m.handle(LidChanged(0.0, True))
    m.handle(UvFault(1.0, "cap_reached"))
    assert m.fault == "cap_reached"
    up = m.handle(SterilizeRequested(2.0))
    assert up.refused == "fault:cap_reached" and not up.uv_on
    m.handle(LidChanged(3.0, False))
    assert m.fault is None
    assert m.handle(LidChanged(4.0, True)).uv_on


def test_lid_opened_abort_then_closing_again_starts_a_fresh_cycle() -> None:
    m = docked_machine()
    m.handle(LidChanged(0.0, True))
    m.handle(LidChanged(100.0, False))
    assert m.state == "aborted" and m.abort_reason == "lid_opened"
    up = m.handle(LidChanged(110.0, True))
    assert types(up) == ["sterilization_started"] and m.abort_reason is None


def test_s4_uv_on_time_is_capped_whatever_else_holds() -> None:
    """A stalled engine that only sees time again past the cap aborts, it does not complete."""
    m = docked_machine(cycle_s=100.0, cap_margin=0.1)
    m.handle(LidChanged(0.0, True))
    up = m.handle(Tick(111.0))
    aborted = only(up, "sterilization_aborted")
    assert aborted.data["reason"] == "cap_reached" and aborted.data["after_s"] == 111.0
    assert not up.uv_on and m.fault == "cap_reached"
    assert m.sterility(111.0) == (False, None)
    assert "sterilization_completed" not in types(up)


def test_s4_uv_is_off_at_the_cap_exactly_while_the_dose_is_still_short() -> None:
    """The boundary: UV on for exactly ``cap_s`` is the limit, so an input at that instant
    aborts the cycle. Dose mode with a flickering light keeps the cycle from completing first."""
    params = default_case_params(
        uv_sensor=True, irradiance_mw_cm2=2.0, dose_mj_cm2=400.0, uv_confirm_s=5.0
    )
    cap = params.cap_s
    m = EchoingCase(params, docked=True)
    m.handle(LidChanged(0.0, True))
    t = 0.0
    while t + 20.0 < cap:  # lit 6 s in every 10: dark spells shorter than uv_confirm_s
        m.handle(UvSensed(t + 0.5, True))
        m.handle(UvSensed(t + 6.5, False))
        t += 10.0
    m.handle(UvSensed(t + 0.5, True))
    assert m.handle(Tick(math.nextafter(cap, 0.0))).uv_on  # on for just under the cap
    up = m.handle(Tick(cap))
    assert not up.uv_on and not m.uv_on
    assert only(up, "sterilization_aborted").data["reason"] == "cap_reached"
    assert m.fault == "cap_reached"


def test_s4_cap_in_dose_mode_follows_the_dose_time() -> None:
    params = default_case_params(uv_sensor=True, irradiance_mw_cm2=2.0, dose_mj_cm2=400.0)
    assert params.dose_mode and params.length_s == 200.0
    assert params.cap_s == pytest.approx(220.0)
    m = EchoingCase(params, docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(1.0, True))
    m.handle(UvSensed(50.0, False))  # dark: the dose stops growing
    m.handle(UvSensed(52.0, True))
    # Lit for 49 + 150 s < 200 s by t = 202: the dose is not there yet.
    assert m.handle(Tick(201.0)).events == []
    assert m.remaining_s(201.0) == pytest.approx(200.0 - 49.0 - 149.0)
    up = m.handle(Tick(203.0))
    done = only(up, "sterilization_completed")
    assert done.data["dose_mj_cm2"] == pytest.approx(400.0)
    assert done.data["duration_s"] == 203.0


def test_s4_dose_mode_still_capped_when_the_light_keeps_failing() -> None:
    params = default_case_params(
        uv_sensor=True, irradiance_mw_cm2=2.0, dose_mj_cm2=400.0, uv_confirm_s=5
    )
    m = EchoingCase(params, docked=True)
    m.handle(LidChanged(0.0, True))
    t = 0.0
    for _ in range(60):  # flickers: 3 s dark in every 5 s, never long enough to be uv_dark
        m.handle(UvSensed(t + 0.5, True))
        m.handle(UvSensed(t + 2.5, False))
        t += 5.0
        if not m.uv_on:
            break
    assert m.abort_reason == "cap_reached"


def test_s5_no_light_within_the_confirm_time_aborts_as_uv_dark_and_not_sterile() -> None:
    m = docked_machine(uv_sensor=True, uv_confirm_s=5.0)
    assert m.handle(LidChanged(0.0, True)).uv_on
    assert m.handle(Tick(4.9)).uv_on
    up = m.handle(Tick(5.0))
    aborted = only(up, "sterilization_aborted")
    assert aborted.data["reason"] == "uv_dark"
    assert not up.uv_on and m.fault == "uv_dark"
    m.handle(Tick(CYCLE * 2))
    assert m.sterility(CYCLE * 2) == (False, None) and m.state == "aborted"
    assert m.handle(SterilizeRequested(CYCLE * 2)).refused == "fault:uv_dark"


def test_s5_a_sensor_stuck_lit_does_not_confirm_uv() -> None:
    """The sensor read lit before UV went on: with no change after, there is no proof."""
    m = EchoingCase(default_case_params(uv_sensor=True), docked=True, uv_lit=True)
    m.handle(LidChanged(0.0, True))
    assert only(m.handle(Tick(5.0)), "sterilization_aborted").data["reason"] == "uv_dark"


def test_s5_a_dark_report_before_any_light_is_no_light() -> None:
    """A sensor that reports dark (again) while the cycle waits for light proves nothing."""
    m = docked_machine(uv_sensor=True, uv_confirm_s=5.0)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(1.0, False))
    assert m.handle(Tick(4.9)).uv_on
    assert only(m.handle(Tick(5.0)), "sterilization_aborted").data["reason"] == "uv_dark"
    assert m.sterility(CYCLE) == (False, None)


def test_s5_light_lost_mid_cycle_aborts_after_the_grace() -> None:
    m = docked_machine(uv_sensor=True, uv_confirm_s=5.0)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(0.2, True))
    m.handle(UvSensed(100.0, False))
    assert m.handle(Tick(104.9)).uv_on
    up = m.handle(Tick(105.0))
    assert only(up, "sterilization_aborted").data["reason"] == "uv_dark"


def test_s5_light_back_within_the_grace_continues_the_cycle() -> None:
    """It continues, and the dark stretch (and the sensor's lag at the start) is made up."""
    m = docked_machine(uv_sensor=True, uv_confirm_s=5.0)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(0.2, True))
    m.handle(UvSensed(100.0, False))
    m.handle(UvSensed(102.0, True))
    assert m.handle(Tick(CYCLE)).events == []
    assert m.remaining_s(CYCLE) == pytest.approx(2.2)
    assert m.handle(Tick(CYCLE + 2.1)).events == []
    assert types(m.handle(Tick(CYCLE + 2.2))) == ["sterilization_completed"]


def test_s5_a_cycle_with_all_its_light_completes_on_the_very_report_that_it_is_lit() -> None:
    """Enough light and enough driven time, but the sensor reads dark when both are due: the
    cycle completes on the report of light itself, not at some later input."""
    params = default_case_params(uv_sensor=True, uv_confirm_s=5.0, lid_contact=False)
    m = CaseMachine(params, docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(0.1, True))  # light seen before the shell's report of driving it
    m.handle(UvOutput(3.0, True))  # the driven time counts from here
    m.handle(UvSensed(CYCLE + 1.0, False))  # lit CYCLE + 0.9 s; driven CYCLE - 2 s
    assert m.handle(Tick(CYCLE + 3.5)).events == []  # both due now, but dark
    assert types(m.handle(UvSensed(CYCLE + 4.0, True))) == ["sterilization_completed"]


def test_s5_a_flickering_led_completes_no_cycle_on_the_time_it_was_dark() -> None:
    """Lit 0.5 s in every 4.5 s, each dark spell shorter than the grace: 11 % of the UV. Its
    dark time must not count, so the cycle never reaches its length and ends at the cap."""
    m = docked_machine(uv_sensor=True, uv_confirm_s=5.0)
    m.handle(LidChanged(0.0, True))
    ended: list[Event] = []
    t = 0.0
    while not ended and t < 2 * CYCLE:
        for when, lit in ((t + 0.1, True), (t + 0.6, False)):
            up = m.handle(UvSensed(when, lit))
            ended += [e for e in up.events if e.type != "sterilization_started"]
        t += 4.5
    [end] = ended
    assert end.type == "sterilization_aborted" and end.data["reason"] == "cap_reached"
    assert m.sterility(t) == (False, None)


def test_dark_reported_before_the_lid_still_aborts_as_lid_opened() -> None:
    """The series interlock darkens the LED as the lid opens: either report may come first."""
    m = docked_machine(uv_sensor=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(0.1, True))
    assert m.handle(UvSensed(50.0, False)).events == []
    up = m.handle(LidChanged(50.001, False))
    assert only(up, "sterilization_aborted").data["reason"] == "lid_opened"
    assert m.fault is None


def test_s5_a_time_cycle_with_a_sensor_completes_only_while_lit() -> None:
    m = docked_machine(uv_sensor=True, uv_confirm_s=5.0)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(1.0, True))
    m.handle(UvSensed(CYCLE - 1, False))
    assert m.handle(Tick(CYCLE + 1)).events == []  # due, but dark: wait for light or the grace
    assert m.handle(UvSensed(CYCLE + 2, True)).events == []  # lit again: 598 s of light so far
    assert types(m.handle(Tick(CYCLE + 4))) == ["sterilization_completed"]


@pytest.mark.parametrize("dose", [False, True], ids=["time", "dose"])
def test_the_time_left_counts_down_to_zero_and_never_below(dose: bool) -> None:
    """The status shows the time left: in the last second it is what is left, and asked
    between inputs after the length has passed (the completion comes with the next input) it
    is none, not a negative time."""
    if dose:  # 60 mJ/cm² at 0.5 mW/cm²: 120 s of light
        params = default_case_params(uv_sensor=True, irradiance_mw_cm2=0.5, dose_mj_cm2=60.0)
    else:
        params = default_case_params(cycle_s=120.0)
    m = EchoingCase(params, docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvSensed(0.0, True))
    assert m.remaining_s(119.5) == 0.5
    assert m.remaining_s(125.0) == 0.0


def test_the_time_left_stands_still_while_the_output_is_not_reported_driven() -> None:
    """UV time is what the shell reported driving (H17): before its first report, and while it
    reports the output off, the time left does not move."""
    m = CaseMachine(default_case_params(lid_contact=False), docked=True)
    m.handle(LidChanged(0.0, True))
    assert m.remaining_s(0.5) == CYCLE
    m.handle(UvOutput(1.0, True))
    m.handle(UvOutput(101.0, False))
    assert m.remaining_s(101.5) == CYCLE - 100.0


# --- sterility ------------------------------------------------------------------------------


def sterile_machine(validity_s: float = 1800.0) -> CaseMachine:
    m = docked_machine(validity_after_undock_s=validity_s)
    m.handle(LidChanged(0.0, True))
    m.handle(Tick(CYCLE))
    m.handle(LidChanged(CYCLE + 5, False))
    assert m.sterility(CYCLE + 5) == (True, 1)  # opening the lid over a docked roller: still
    return m


def test_s8_sterility_stays_while_docked_and_expires_exactly_the_validity_after_undocking() -> None:
    m = sterile_machine(validity_s=1800.0)
    assert m.sterility(10_000.0) == (True, 1)
    undock = 10_000.0
    m.handle(DockChanged(undock, False))
    assert m.sterility(undock + 1799.9) == (True, 1)
    assert m.sterile_until(undock + 1) == undock + 1800.0
    assert m.sterility(undock + 1800.0) == (False, None)
    assert m.sterile_until(undock + 1800.0) is None
    m.handle(Tick(undock + 1800.0))
    assert m.state == "open"


def test_s8_docking_again_does_not_stop_the_validity_clock() -> None:
    m = sterile_machine(validity_s=60.0)
    m.handle(DockChanged(1000.0, False))
    m.handle(DockChanged(1010.0, True))
    assert m.sterility(1059.0) == (True, 1)
    assert m.sterility(1060.0) == (False, None)
    m.handle(DockChanged(1020.0, False))  # out again: the clock that runs is the first one
    assert m.sterility(1059.0) == (True, 1)
    assert m.sterility(1060.0) == (False, None)


def test_s8_a_session_spends_sterility_once_and_says_which_cycle_it_spent() -> None:
    m = sterile_machine()
    m.handle(DockChanged(1000.0, False))
    assert m.consume(1001.0) == 1
    assert m.sterility(1001.0) == (False, None)
    assert m.consume(1002.0) is None
    assert m.state == "open"


def test_s8_an_expired_sterility_spends_no_cycle() -> None:
    m = sterile_machine(validity_s=60.0)
    m.handle(DockChanged(1000.0, False))
    assert m.consume(1060.0) is None


def test_an_aborted_new_cycle_leaves_the_previous_sterility_of_a_docked_roller() -> None:
    m = sterile_machine()
    m.handle(LidChanged(700.0, True))  # a new cycle starts ...
    m.handle(LidChanged(710.0, False))  # ... and is aborted: the roller never left the dock
    assert m.state == "aborted"
    assert m.sterility(711.0) == (True, 1)


# --- dose mode ------------------------------------------------------------------------------


def test_dose_mode_needs_the_sensor_and_an_irradiance() -> None:
    assert not default_case_params(irradiance_mw_cm2=1.0, dose_mj_cm2=100.0).dose_mode
    assert not default_case_params(uv_sensor=True).dose_mode
    assert default_case_params(uv_sensor=True, irradiance_mw_cm2=1.0, dose_mj_cm2=100.0).dose_mode
    # The default target, 40 mJ/cm² (docs/CARE.md), at 0.5 mW/cm² takes 80 s of light.
    assert default_case_params(uv_sensor=True, irradiance_mw_cm2=0.5).length_s == 80.0
    with pytest.raises(ValueError, match="dose_mj_cm2 must be > 0"):
        default_case_params(uv_sensor=True, irradiance_mw_cm2=1.0, dose_mj_cm2=0.0)
    with pytest.raises(ValueError, match="cycle_s"):
        default_case_params(cycle_s=0)


def test_dose_mode_reports_its_target_and_the_delivered_dose() -> None:
    params = default_case_params(uv_sensor=True, irradiance_mw_cm2=0.5, dose_mj_cm2=60.0)
    m = EchoingCase(params, docked=True)
    up = m.handle(LidChanged(0.0, True))
    data = only(up, "sterilization_started").data
    assert data["mode"] == "dose" and data["length_s"] == 120.0
    assert data["dose_target_mj_cm2"] == 60.0
    m.handle(UvSensed(1.0, True))
    m.handle(UvSensed(31.0, False))
    aborted = only(m.handle(LidChanged(32.0, False)), "sterilization_aborted")
    assert aborted.data["dose_mj_cm2"] == pytest.approx(15.0)


def test_a_dose_cycle_reports_its_times_and_doses_to_3_places() -> None:
    """The history and MQTT get every time (s) and dose (mJ/cm²) of a cycle to 3 decimals:
    60 mJ/cm² at 0.7 mW/cm² is 85.714… s of light, capped at 94.285… s."""
    params = default_case_params(uv_sensor=True, irradiance_mw_cm2=0.7, dose_mj_cm2=60.0)
    m = EchoingCase(params, docked=True)
    started = only(m.handle(LidChanged(2.0, True)), "sterilization_started")
    assert (started.data["length_s"], started.data["cap_s"]) == (85.714, 94.286)
    m.handle(UvSensed(2.5, True))
    done = only(m.handle(Tick(92.1234)), "sterilization_completed")
    assert done.data == {
        "cycle_id": 1,
        "duration_s": 90.123,
        "uv_on_s": 90.123,
        "dose_mj_cm2": 62.736,  # 0.7 * 89.6234 s lit
    }
    m.handle(UvSensed(92.2, False))  # the LED went off
    m.handle(LidChanged(100.0, False))
    m.handle(LidChanged(110.0, True))  # the next cycle ...
    m.handle(UvSensed(110.5, True))
    aborted = only(m.handle(LidChanged(150.1234, False)), "sterilization_aborted")  # ... opened
    assert aborted.data == {
        "cycle_id": 2,
        "reason": "lid_opened",
        "after_s": 40.123,
        "dose_mj_cm2": 27.736,  # 0.7 * 39.6234 s lit
    }


# --- evidence that UV shone (docs/SAFETY.md, H17) -------------------------------------------


def test_s5_a_cycle_whose_output_is_never_reported_driven_never_completes() -> None:
    """The shell refusing silently (the old lock-out) must not let the command stand for UV."""
    # No shell reports.
    m = CaseMachine(default_case_params(uv_confirm_s=5.0, lid_contact=False), docked=True)
    assert m.handle(LidChanged(0.0, True)).uv_on
    assert m.handle(Tick(4.9)).events == []
    up = m.handle(Tick(5.0))
    aborted = only(up, "sterilization_aborted")
    assert aborted.data == {"cycle_id": 1, "reason": "uv_not_driven", "after_s": 5.0}
    assert not up.uv_on and m.fault == "uv_not_driven"
    assert m.handle(Tick(CYCLE + 1)).events == []
    assert m.sterility(CYCLE + 1) == (False, None)


def test_s5_a_cycle_completes_only_once_the_reported_uv_time_reaches_its_length() -> None:
    m = CaseMachine(default_case_params(uv_confirm_s=5.0, lid_contact=False), docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvOutput(1.0, True))  # the pin went high a second after the command
    m.handle(UvOutput(100.0, False))  # and low for 3 s (within the grace)
    m.handle(UvOutput(103.0, True))
    assert m.remaining_s(103.0) == pytest.approx(CYCLE - 99.0)
    assert m.handle(Tick(CYCLE + 3.99)).events == []  # 599.99 s of UV: not yet
    assert m.sterility(CYCLE + 3.99) == (False, None)
    done = only(m.handle(Tick(CYCLE + 4.0)), "sterilization_completed")
    assert done.data == {"cycle_id": 1, "duration_s": CYCLE + 4.0, "uv_on_s": CYCLE}
    assert m.sterility(CYCLE + 5.0) == (True, 1)


def test_s5_an_off_report_before_the_output_was_driven_is_no_uv() -> None:
    m = CaseMachine(default_case_params(uv_confirm_s=5.0, lid_contact=False), docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvOutput(1.0, False))  # the shell says the pin is low: still no evidence of UV
    assert m.handle(Tick(4.9)).events == []
    assert only(m.handle(Tick(5.0)), "sterilization_aborted").data["reason"] == "uv_not_driven"


def test_s5_an_on_report_repeated_while_driven_keeps_counting_uv_time() -> None:
    m = CaseMachine(default_case_params(uv_confirm_s=5.0, lid_contact=False), docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvOutput(0.0, True))
    m.handle(UvOutput(50.0, True))  # said again (a re-sync): the output never went low
    assert m.handle(Tick(CYCLE - 0.01)).events == []
    done = only(m.handle(Tick(CYCLE)), "sterilization_completed")
    assert done.data["uv_on_s"] == CYCLE


def test_s5_uv_reported_off_for_longer_than_the_grace_aborts_as_not_driven() -> None:
    m = CaseMachine(default_case_params(uv_confirm_s=5.0, lid_contact=False), docked=True)
    m.handle(LidChanged(0.0, True))
    m.handle(UvOutput(0.0, True))
    m.handle(UvOutput(50.0, False))
    up = m.handle(Tick(55.0))
    assert only(up, "sterilization_aborted").data["reason"] == "uv_not_driven"
    assert m.sterility(CYCLE) == (False, None)


@pytest.mark.parametrize(
    ("inp", "reason", "detail"),
    [
        (UvRefused(30.0, "locked_out"), "uv_refused", "locked_out"),
        (UvRefused(30.0, "cap_latched"), "uv_refused", "cap_latched"),
        (UvLockedOut(30.0, "thread_failed:mqtt"), "uv_locked_out", "thread_failed:mqtt"),
    ],
)
def test_s3_a_refusal_or_lock_out_aborts_the_cycle_with_its_reason_and_latches_a_fault(
    inp: CaseInput, reason: str, detail: str
) -> None:
    m = docked_machine()
    m.handle(LidChanged(0.0, True))
    up = m.handle(inp)
    assert not up.uv_on
    aborted = only(up, "sterilization_aborted")
    assert aborted.data == {"cycle_id": 1, "reason": reason, "after_s": 30.0, "detail": detail}
    assert m.fault == reason and m.state == "aborted"
    assert m.handle(SterilizeRequested(31.0)).refused == f"fault:{reason}"
    assert m.handle(Tick(2 * CYCLE)).events == []
    assert m.sterility(2 * CYCLE) == (False, None)
    m.handle(LidChanged(2 * CYCLE + 1, False))  # opening the case acknowledges it
    assert m.fault is None


def test_a_refusal_because_the_lid_reads_open_is_the_lid_abort_not_an_output_fault() -> None:
    m = docked_machine()
    m.handle(LidChanged(0.0, True))
    up = m.handle(UvRefused(2.0, "lid_open"))
    assert only(up, "sterilization_aborted").data["reason"] == "lid_opened"
    assert m.fault is None


def test_a_lock_out_with_no_cycle_running_aborts_nothing() -> None:
    m = docked_machine()
    assert m.handle(UvLockedOut(1.0, "thread_failed:status-file")).events == []
    assert m.fault is None
    assert m.handle(LidChanged(2.0, True)).uv_on


# --- the starting state ---------------------------------------------------------------------


def test_the_switch_levels_to_start_from_must_be_named() -> None:
    """``CaseMachine(params, True)`` could mean the lid or the dock: the levels are keywords."""
    with pytest.raises(TypeError):
        CaseMachine(default_case_params(), True)  # type: ignore[misc]


@pytest.mark.parametrize("closed", [False, True])
def test_both_lid_channels_start_at_the_level_given(closed: bool) -> None:
    """Started with the lid open (or closed), the microswitch's contact counts as reporting
    the same as the reed switch: the reed switch reporting that level again, alone, is no
    disagreement, however long no contact report follows."""
    params = default_case_params(lid_contact=True, lid_mismatch_s=1.0, auto_start=False)
    m = CaseMachine(params, lid_closed=closed)
    m.handle(LidChanged(0.0, closed))
    assert types(m.handle(Tick(10.0))) == [] and m.case_fault is None
    assert m.lid_closed is closed


def test_a_fresh_case_has_seen_no_light_and_no_uv_output_driven() -> None:
    """Until the shell reports otherwise, the sensor is dark and the output undriven: a case
    started with the lid closed does not take a light it never saw for a stuck-on LED, and
    ``uv_driven`` (the shell's last report) is false until a report says "on"."""
    params = default_case_params(uv_sensor=True, uv_confirm_s=5.0, auto_start=False)
    m = CaseMachine(params, lid_closed=True, docked=True)
    assert not m.uv_lit and not m.uv_driven
    m.handle(Tick(0.0))
    assert types(m.handle(Tick(60.0))) == [] and m.case_fault is None
    m.handle(UvOutput(61.0, True))
    assert m.uv_driven
    m.handle(UvOutput(62.0, False))
    assert not m.uv_driven


# --- parameters -----------------------------------------------------------------------------

TIMES = ("cycle_s", "validity_after_undock_s", "uv_confirm_s", "lid_mismatch_s")


@pytest.mark.parametrize("name", TIMES)
def test_every_case_time_must_be_positive_and_a_fraction_of_a_second_is_one(name: str) -> None:
    """A zero time would make its timer fire at once (a cycle, a sterility or a grace that
    lasts no time at all), so it is refused when the parameters are built, not found out in a
    cycle; any positive time, however short, is a setting the case can run."""
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match=name):
            default_case_params(**{name: bad})
    assert getattr(default_case_params(**{name: 0.5}), name) == 0.5


def test_the_cap_margin_may_be_zero_but_never_negative() -> None:
    """S4's margin over the cycle: none at all is a valid (strict) cap, a negative one would cap
    UV before the cycle could ever complete."""
    assert default_case_params(cap_margin=0.0).cap_s == default_case_params().cycle_s
    with pytest.raises(ValueError, match="cap_margin"):
        default_case_params(cap_margin=-0.01)


def test_the_case_parameters_cannot_change_once_checked() -> None:
    """They are checked once, when built (above); S4's cap is worked out from them at every
    input, so a margin changed afterwards would move the cap past any check."""
    params = default_case_params()
    with pytest.raises(FrozenInstanceError):
        params.cap_margin = -1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "inp",
    [
        LidChanged(1.0, True),
        LidContactChanged(1.0, True),
        DockChanged(1.0, True),
        UvSensed(1.0, True),
        SterilizeRequested(1.0, "r-1"),
        UvFault(1.0, "cap_reached"),
    ],
    ids=lambda inp: type(inp).__name__,
)
def test_an_input_cannot_change_once_made(inp: CaseInput) -> None:
    """The hardware shell makes these in its pin callbacks' threads (and its cap timer's) and
    queues them for the engine's thread: one changed after it was queued would reach the case
    as something that never happened."""
    with pytest.raises(FrozenInstanceError):
        inp.t = 99.0  # type: ignore[misc]


# --- properties -----------------------------------------------------------------------------

_kinds = st.sampled_from(["lid", "contact", "dock", "uv", "request", "tick", "fault"])


@st.composite
def scripts(draw: st.DrawFn) -> tuple[CaseParams, list[CaseInput]]:
    dose = draw(st.booleans())
    sensor = dose or draw(st.booleans())
    params = CaseParams(
        cycle_s=draw(st.floats(5.0, 120.0)),
        auto_start=draw(st.booleans()),
        validity_after_undock_s=draw(st.floats(1.0, 300.0)),
        uv_sensor=sensor,
        uv_confirm_s=draw(st.floats(0.5, 10.0)),
        irradiance_mw_cm2=2.0 if dose else None,
        dose_mj_cm2=draw(st.floats(10.0, 200.0)),
        lid_contact=draw(st.booleans()),
        lid_mismatch_s=draw(st.floats(0.05, 5.0)),
        cap_margin=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )
    t = 0.0
    inputs: list[CaseInput] = []
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.floats(0.0, 40.0))
        kind = draw(_kinds)
        flag = draw(st.booleans())
        if kind == "lid":
            inputs.append(LidChanged(t, flag))
        elif kind == "contact":  # the microswitch alone: a finger, a jammed or welded lever
            inputs.append(LidContactChanged(t, flag))
        elif kind == "dock":
            inputs.append(DockChanged(t, flag))
        elif kind == "uv":
            inputs.append(UvSensed(t, flag))
        elif kind == "request":
            inputs.append(SterilizeRequested(t))
        elif kind == "tick":
            inputs.append(Tick(t))
        elif draw(st.integers(0, 9)) == 0:  # faults are rare, so cycles get to finish
            inputs.append(
                draw(
                    st.sampled_from(
                        [UvFault(t, "test"), UvRefused(t, "locked_out"), UvLockedOut(t, "test")]
                    )
                )
            )
    return params, inputs


@dataclass
class Observer:
    """Replays a script through the machine and checks the safety invariants at every step."""

    params: CaseParams
    machine: CaseMachine = field(init=False)
    lid: bool = False
    contact: bool = False
    docked: bool = False
    on_since: float | None = None
    started: list[int] = field(default_factory=list)
    ended: dict[int, str] = field(default_factory=dict)
    #: Light the sensor reported in the running cycle, counted here apart from the machine.
    lit_s: float = 0.0
    lit_since: float | None = None

    def __post_init__(self) -> None:
        self.machine = EchoingCase(self.params)

    def _count_light(self, inp: CaseInput, up: CaseUpdate) -> None:
        ended = any(
            e.type in ("sterilization_completed", "sterilization_aborted") for e in up.events
        )
        if "sterilization_started" in types(up):
            self.lit_s, self.lit_since = 0.0, None
        if not isinstance(inp, UvSensed) or (self.machine.cycle_id is None and not ended):
            return
        if inp.lit and self.lit_since is None:
            self.lit_since = inp.t
        elif not inp.lit and self.lit_since is not None:
            self.lit_s += inp.t - self.lit_since
            self.lit_since = None

    def feed(self, inp: CaseInput) -> CaseUpdate:
        up = self.machine.handle(inp)
        self._count_light(inp, up)
        if isinstance(inp, LidChanged):
            self.lid = self.contact = inp.closed  # a working lid moves both channels
        elif isinstance(inp, LidContactChanged):
            self.contact = inp.shut
        elif isinstance(inp, DockChanged):
            self.docked = inp.docked
        assert up.uv_on == self.machine.uv_on
        if up.uv_on:  # S1, on both lid channels (H30)
            assert self.lid and self.docked and self.machine.fault is None
            assert self.contact or not self.params.lid_contact
            assert self.machine.case_fault is None
            assert self.machine.state == "sterilizing"
            if self.on_since is None:
                self.on_since = inp.t
            assert inp.t - self.on_since < self.params.cap_s  # S4
            # S4 between inputs too: whatever comes next, at the cap at the latest UV is off.
            at_cap = self.on_since + self.params.cap_s
            while at_cap - self.on_since < self.params.cap_s:  # the sum may round down
                at_cap = math.nextafter(at_cap, math.inf)
            probe = copy.deepcopy(self.machine)
            assert not probe.handle(Tick(at_cap)).uv_on
        else:
            self.on_since = None
        for event in up.events:
            if event.type in ("case_fault", "case_fault_cleared"):
                continue  # about the case, not a cycle
            cycle_id = event.data["cycle_id"]
            if event.type == "sterilization_completed":  # only on UV reported driven (H17)
                # The event gives it to the ms, and rounding keeps the order (a 5.5625 s cycle
                # completes with "uv_on_s": 5.562).
                assert event.data["uv_on_s"] >= round(self.params.length_s, 3)
                if self.params.uv_sensor:  # S5: and lit for as long, dark spells not counted
                    since = self.lit_since
                    lit = self.lit_s + (inp.t - since if since is not None else 0.0)
                    assert lit >= self.params.length_s - 1e-9
            if event.type == "sterilization_started":
                assert cycle_id not in self.started
                self.started.append(cycle_id)
            else:
                assert cycle_id in self.started and cycle_id not in self.ended
                self.ended[cycle_id] = event.type
        if isinstance(inp, SterilizeRequested) and up.refused is None:
            assert types(up) == ["sterilization_started"] or "sterilization_started" in types(up)
        return up


@settings(max_examples=400, deadline=None)
@given(scripts())
def test_property_uv_never_on_with_lid_open_or_roller_out_and_never_past_the_cap(
    script: tuple[CaseParams, list[CaseInput]],
) -> None:
    params, inputs = script
    obs = Observer(params)
    for inp in inputs:
        obs.feed(inp)


#: Once found at random: the completed event's on-time, to the ms, is below the exact length.
_ROUNDED_LENGTH = (
    default_case_params(cycle_s=5.5625, auto_start=False, lid_contact=False),
    [
        LidChanged(0.0, True),
        DockChanged(0.0, True),
        SterilizeRequested(0.0),
        LidChanged(5.5625, False),
    ],
)


@settings(max_examples=400, deadline=None)
@given(scripts())
@example(_ROUNDED_LENGTH)
def test_property_every_started_cycle_ends_completed_or_aborted(
    script: tuple[CaseParams, list[CaseInput]],
) -> None:
    params, inputs = script
    obs = Observer(params)
    for inp in inputs:
        obs.feed(inp)
    end = (inputs[-1].t if inputs else 0.0) + params.cap_s + 1.0
    obs.feed(Tick(end))
    obs.feed(LidChanged(end + 1.0, False))
    assert not obs.machine.uv_on
    assert set(obs.started) == set(obs.ended)
    assert obs.machine.state in ("open", "sterile", "aborted")


@settings(max_examples=300, deadline=None)
@given(scripts())
def test_property_a_sterile_roller_had_a_completed_cycle_and_sensor_confirmation(
    script: tuple[CaseParams, list[CaseInput]],
) -> None:
    params, inputs = script
    obs = Observer(params)
    lit_seen: set[int] = set()
    for inp in inputs:
        running = obs.machine.cycle_id
        up = obs.feed(inp)
        if isinstance(inp, UvSensed) and inp.lit and running is not None:
            lit_seen.add(running)
        for event in up.events:
            if event.type == "sterilization_completed" and params.uv_sensor:
                assert event.data["cycle_id"] in lit_seen  # S5
        valid, cycle_id = obs.machine.sterility(inp.t)
        if valid:
            assert cycle_id is not None and obs.ended.get(cycle_id) == "sterilization_completed"


# --- case faults (docs/SAFETY.md, H30, H31) -------------------------------------------------


def test_h30_a_lid_closing_slowly_is_no_mismatch_but_a_lasting_one_is() -> None:
    m = CaseMachine(default_case_params(lid_mismatch_s=1.0), docked=True)
    m.handle(LidContactChanged(0.0, True))  # the lever goes down first...
    up = m.handle(LidChanged(0.8, True))  # ...the magnet reaches the reed switch 0.8 s later
    assert m.case_fault is None and types(up) == ["sterilization_started"]
    m.handle(LidChanged(5.0, False))
    up = m.handle(Tick(6.0))  # the contact still says "shut" a second later
    assert m.case_fault == "lid_mismatch" and "case_fault" in types(up)


def test_h31_light_with_the_lid_open_is_daylight_not_a_fault() -> None:
    params = default_case_params(uv_sensor=True, uv_confirm_s=5.0, auto_start=False)
    m = EchoingCase(params, docked=True)
    m.handle(UvSensed(0.0, True))
    m.handle(Tick(60.0))
    assert m.case_fault is None
    m.handle(LidChanged(61.0, True))  # the lid shuts on a light the LED is not commanded to give
    m.handle(Tick(64.0))
    assert m.case_fault is None  # within uv_confirm_s: a "dark" may be on its way
    assert types(m.handle(Tick(67.0))) == ["case_fault"]


def test_h30_a_mismatch_clears_only_when_both_channels_read_open_together() -> None:
    """Both channels reading closed again (the reed switch catching up with a lever held down)
    does not clear it: only the lid opened with the microswitch seen to release does."""
    m = CaseMachine(default_case_params(lid_mismatch_s=1.0, auto_start=False), docked=True)
    m.handle(LidContactChanged(0.0, True))  # the lever is down, the reed switch says open
    assert types(m.handle(Tick(2.0))) == ["case_fault"] and m.case_fault == "lid_mismatch"
    up = m.handle(LidChanged(3.0, True))
    assert types(up) == [] and m.case_fault == "lid_mismatch"
    assert m.handle(SterilizeRequested(4.0)).refused == "fault:lid_mismatch"
    assert types(m.handle(LidChanged(5.0, False))) == []  # the lever is still down
    up = m.handle(LidContactChanged(6.1234, False))  # latched for 4.1234 s: given to the ms
    assert only(up, "case_fault_cleared").data == {"reason": "lid_mismatch", "after_s": 4.123}
    assert m.case_fault is None


def test_h30_h31_each_case_fault_latches_at_exactly_its_time() -> None:
    """A disagreement of the lid's channels for ``lid_mismatch_s``, and light with the lid
    closed and UV off for ``uv_confirm_s``, are faults at that time, not one input later; the
    first says what each channel reads."""
    m = CaseMachine(default_case_params(lid_mismatch_s=1.0, auto_start=False), docked=True)
    m.handle(LidContactChanged(10.0, True))
    assert types(m.handle(Tick(10.75))) == []
    up = m.handle(Tick(11.0))
    assert types(up) == ["case_fault"] and up.events[0].t == 11.0
    # It says which channel reads what: the lever is down, the magnet is not at the reed.
    assert up.events[0].data == {
        "reason": "lid_mismatch",
        "lid_reed": "open",
        "lid_contact": "closed",
    }
    params = default_case_params(uv_sensor=True, uv_confirm_s=5.0, auto_start=False)
    m = EchoingCase(params, docked=True, lid_closed=True)
    m.handle(UvSensed(10.0, True))
    assert types(m.handle(Tick(14.75))) == []
    up = m.handle(Tick(15.0))
    assert types(up) == ["case_fault"] and m.case_fault == "uv_stuck_on"
