"""The MQTT contract's JSON Schemas: valid themselves, accept real payloads, catch mistakes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from dermaguard.common.timefmt import iso_utc as iso
from dermaguard.config.params import default_session_params
from dermaguard.core.session import SessionTracker
from dermaguard.mqtt.schema_files import SCHEMA_NAMES, command_schema, load_schema
from dermaguard.mqtt.topics import COMMANDS

WALL0 = 1_790_000_000.0  # a fixed wall time in 2026
TS = "2026-11-25T10:00:00.123Z"
UUID = "3f2b8c1e-4d5a-4e6f-9a7b-1c2d3e4f5a6b"

EVENT_TYPES = (
    "daemon_started",
    "daemon_stopping",
    "session_started",
    "session_ended",
    "over_pressure",
    "over_pressure_cleared",
    "unsterile_use",
    "too_soon",
    "rest_unknown",
    "roller_replace_due",
    "sterilization_started",
    "sterilization_completed",
    "sterilization_aborted",
    "sensor_fault",
    "sensor_recovered",
    "case_fault",
    "case_fault_cleared",
    "calibration_changed",
    "command_result",
    "new_roller",
    "thread_failed",
    "clock_sync",
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def errors(name: str, payload: Any) -> list[str]:
    return [e.message for e in validator(name).iter_errors(payload)]


def ok(name: str, payload: Any) -> None:
    assert errors(name, payload) == [], payload


def bad(name: str, payload: Any) -> None:
    assert errors(name, payload), f"{name} accepted {payload!r}"


def changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def without(base: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    del out[key]
    return out


def real_summary() -> dict[str, Any]:
    """A summary made by the core itself: undock, press for two seconds, dock."""
    tracker = SessionTracker(default_session_params())
    tracker.undocked(0.0)
    started = tracker.contact(0.5, WALL0 + 0.5, sterile=True, cycle_id=3)
    assert [e.type for e in started] == ["session_started"]
    t = 0.5
    for i in range(21):
        t = 0.5 + i * 0.1
        force = 6.5 if 5 <= i <= 8 else 2.5
        tracker.sample(t, force, "over" if force > 6 else "ok")
    ended = tracker.docked(t + 1.0, WALL0 + t + 1.0)
    assert [e.type for e in ended] == ["session_ended"]
    return dict(ended[0].data)


STATE: dict[str, Any] = {
    "v": 1,
    "ts": TS,
    "state": "in_use",
    "zone": "ok",
    "force_n": 3.25,
    "sterile": False,
    "sterile_until": None,
    "uv_on": False,
    "lid_closed": False,
    "docked": False,
    "case": "open",
    "remaining_s": None,
    "session_no": 12,
    "roller_id": 2,
    "roller_uses": 4,
    "fault": None,
    "alarm": None,
    "silenced": False,
}

FORCE: dict[str, Any] = {"v": 1, "t": WALL0 + 0.25, "force_n": 3.25, "zone": "ok"}


def envelope(etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "id": UUID,
        "seq": 41,
        "device": "dermaguard",
        "type": etype,
        "ts": TS,
        "data": data,
    }


# --- every schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_load_schema_returns_a_fresh_copy_and_refuses_unknown_names() -> None:
    load_schema("state")["properties"].clear()
    assert "force_n" in load_schema("state")["properties"]
    with pytest.raises(ValueError, match="unknown schema"):
        load_schema("../../../etc/passwd")
    with pytest.raises(ValueError, match="unknown schema"):
        load_schema("state.json")


def test_the_session_summary_is_described_once_in_both_schemas_that_use_it() -> None:
    assert load_schema("event")["$defs"] == load_schema("session_last")["$defs"]


# --- state ----------------------------------------------------------------------------------


def test_state_accepts_realistic_snapshots() -> None:
    ok("state", STATE)
    sterilizing = changed(
        STATE,
        state="sterilizing",
        zone="none",
        force_n=0.0,
        uv_on=True,
        lid_closed=True,
        docked=True,
        case="sterilizing",
        remaining_s=240.0,
        session_no=None,
    )
    ok("state", sterilizing)
    ok(
        "state",
        changed(
            STATE,
            zone=None,
            force_n=None,
            fault="not_ready",
            alarm="sensor_fault",
            silenced=True,
            sterile=True,
            sterile_until="2026-11-26T10:00:00.000Z",
        ),
    )


def test_state_says_when_the_history_is_unavailable_and_why() -> None:
    from dermaguard.core.events import DeviceState
    from dermaguard.mqtt.payloads import state_payload

    problem = "cannot open the history database /var/lib/dermaguard/dermaguard.db: disk full"
    ok("state", changed(STATE, history="available", history_problem=None))
    ok("state", changed(STATE, history="unavailable", history_problem=problem))
    bad("state", changed(STATE, history="unavailable", history_problem=None))
    bad("state", changed(STATE, history="available", history_problem=problem))
    device = DeviceState(
        t=1.0,
        wall=WALL0,
        state="in_use",
        zone="over",
        force_n=5.2,
        sterile=False,
        sterile_until_t=None,
        sterile_until_wall=None,
        uv_on=False,
        lid_closed=False,
        docked=False,
        case="open",
        remaining_s=None,
        session_no=3,
        roller_id=1,
        roller_uses=2,
        fault=None,
        alarm="over_pressure",
        silenced=False,
    )
    for history_problem in (None, problem):
        payload = json.loads(state_payload(device, history_problem=history_problem))
        ok("state", payload)
        assert payload["history_problem"] == history_problem
        assert payload["history"] == ("available" if history_problem is None else "unavailable")
        assert payload["alarm"] == "over_pressure"  # the alarm is untouched by it


def test_state_carries_the_devices_own_history_and_rest_rule_and_a_view_decodes_it() -> None:
    from dataclasses import replace

    from dermaguard.core.events import DeviceState
    from dermaguard.mqtt.decode import parse_state
    from dermaguard.mqtt.payloads import state_payload

    device = DeviceState(
        t=1.0, wall=WALL0, state="in_use", zone="ok", force_n=2.0, sterile=True,
        sterile_until_t=None, sterile_until_wall=None, uv_on=False, lid_closed=False,
        docked=False, case="open", remaining_s=None, session_no=8, roller_id=1, roller_uses=2,
        fault=None, alarm=None, silenced=False, last_session_no=7,
        last_ended_wall=WALL0 - 3600.0, next_allowed_wall=WALL0 + 3600.0,
        session_sterile_at_start=True, session_too_soon=True,
    )  # fmt: skip
    payload = json.loads(state_payload(device))
    ok("state", payload)
    assert payload["last_session_ended_at"] == iso(WALL0 - 3600.0)
    assert payload["next_allowed_at"] == iso(WALL0 + 3600.0)
    snap = parse_state(payload)
    assert snap.rest_known and snap.last_session_no == 7
    assert (snap.session_sterile_at_start, snap.session_too_soon) == (True, True)
    fresh = json.loads(state_payload(replace(device, last_ended_wall=None, next_allowed_wall=None)))
    ok("state", fresh)
    assert fresh["next_allowed_at"] is None
    bad("state", changed(payload, last_session_no=-1))
    older = {k: v for k, v in payload.items() if k != "last_session_no"}
    ok("state", older)
    assert not parse_state(older).rest_known


def test_state_force_zero_and_null_are_both_valid_but_a_string_is_not() -> None:
    ok("state", changed(STATE, force_n=0, zone="none"))
    ok("state", changed(STATE, force_n=None, zone=None))
    bad("state", changed(STATE, force_n="0"))
    bad("state", changed(STATE, force_n=True))


def test_state_unknown_force_and_zone_go_together() -> None:
    bad("state", changed(STATE, force_n=None, zone="none"))  # S7: unknown is never "none"
    bad("state", changed(STATE, force_n=1.0, zone=None))


@pytest.mark.parametrize("key", sorted(STATE))
def test_state_refuses_a_missing_key(key: str) -> None:
    bad("state", without(STATE, key))


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"state": "running"},
        {"zone": "overload"},
        {"case": "closed"},
        {"alarm": "low_battery"},
        {"sterile": "true"},
        {"remaining_s": -1},
        {"session_no": 0},
        {"roller_id": 0},
        {"roller_uses": -1},
        {"roller_uses": 1.5},
        {"fault": ""},
        {"ts": "2026-11-25T10:00:00Z"},  # no milliseconds
        {"ts": "2026-11-25T10:00:00.123+00:00"},  # an offset, not Z
        {"ts": "2026-11-25 10:00:00.123Z"},
        {"sterile_until": 1790000000},
        {"extra": 1},
    ],
)
def test_state_refuses_mistakes(changes: dict[str, Any]) -> None:
    bad("state", changed(STATE, **changes))


# --- force ----------------------------------------------------------------------------------


def test_force_accepts_samples_known_and_unknown() -> None:
    ok("force", FORCE)
    ok("force", changed(FORCE, force_n=0, zone="none"))
    ok("force", changed(FORCE, force_n=-0.02, zone="none"))  # a little below the tare
    ok("force", changed(FORCE, force_n=None, zone=None))


@pytest.mark.parametrize(
    "changes",
    [
        {"force_n": "0"},
        {"force_n": None, "zone": "none"},
        {"zone": None},
        {"t": 12.5},  # monotonic seconds, not epoch
        {"t": WALL0 * 1000},  # milliseconds
        {"t": "2026-11-25T10:00:00.123Z"},
        {"v": 1.5},
        {"ts": TS},
    ],
)
def test_force_refuses_mistakes(changes: dict[str, Any]) -> None:
    bad("force", changed(FORCE, **changes))


@pytest.mark.parametrize("key", sorted(FORCE))
def test_force_refuses_a_missing_key(key: str) -> None:
    bad("force", without(FORCE, key))


# --- event ----------------------------------------------------------------------------------


def test_event_type_enum_is_the_contracts_list() -> None:
    assert tuple(load_schema("event")["properties"]["type"]["enum"]) == EVENT_TYPES


EVENT_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("daemon_started", {}),
    ("daemon_stopping", {}),
    ("over_pressure", {"force_n": 6.512, "limit_n": 6.0}),
    ("over_pressure_cleared", {"duration_s": 0.4, "peak_n": 7.1, "cause": "force_dropped"}),
    ("unsterile_use", {"last_cycle_id": None, "session_no": 3}),
    ("too_soon", {"session_no": 3, "rest_interval_s": 3600.0, "min_rest_s": 172800.0}),
    ("rest_unknown", {"session_no": 3, "reason": "clock_not_synchronized", "min_rest_s": 3600}),
    ("clock_sync", {"synced": False}),
    ("roller_replace_due", {"roller_id": 1, "uses": 10, "limit": 10}),
    ("sterilization_started", {"cycle_id": 4, "mode": "time", "trigger": "lid_closed"}),
    ("sterilization_completed", {"cycle_id": 4, "duration_s": 300.0}),
    ("sterilization_aborted", {"cycle_id": 4, "reason": "lid_opened", "after_s": 12.0}),
    ("sensor_fault", {"reason": "not_ready", "detail": "no conversion in 0.5 s"}),
    ("sensor_recovered", {"after": "not_ready"}),
    ("case_fault", {"reason": "lid_mismatch", "lid_reed": "open", "lid_contact": "closed"}),
    ("case_fault", {"reason": "uv_stuck_on"}),
    ("case_fault_cleared", {"reason": "lid_mismatch", "after_s": 12.5}),
    ("calibration_changed", {"reason": "tare", "offset": 8123.0, "shift_n": 0.01}),
    (
        "calibration_changed",
        {
            "reason": "reference",
            "old_scale_n_per_count": None,
            "new_scale_n_per_count": 2.5e-5,
            "old_offset": None,
            "offset": 80000.0,
            "complete": True,
        },
    ),
    ("command_result", {"command": "ping", "ok": True}),
    ("command_result", {"command": "silence", "ok": True, "request_id": "r1", "duration_s": 60}),
    ("command_result", {"command": "tare", "ok": False, "error": "a session is running"}),
    ("new_roller", {"roller_id": 2, "request_id": "ha-1"}),
    (
        "sterilization_aborted",
        {"cycle_id": 5, "reason": "uv_locked_out", "after_s": 3.0, "detail": "thread_failed:mqtt"},
    ),
    ("sterilization_completed", {"cycle_id": 5, "duration_s": 600.2, "uv_on_s": 600.0}),
    (
        "thread_failed",
        {"thread": "mqtt", "error": "RuntimeError('x')", "failures": 1, "restart_in_s": 1.0},
    ),
    (
        "thread_failed",
        {"thread": "uv-cap", "error": "OSError(5)", "failures": 1, "restart_in_s": None},
    ),
]


@pytest.mark.parametrize(("etype", "data"), EVENT_EXAMPLES)
def test_event_accepts_realistic_envelopes(etype: str, data: dict[str, Any]) -> None:
    ok("event", envelope(etype, data))


def test_event_accepts_the_cores_own_session_summary() -> None:
    summary = real_summary()
    ok("event", envelope("session_ended", summary))
    ok("session_last", {"v": 1, **summary})


def test_every_event_type_has_an_accepted_example() -> None:
    covered = {etype for etype, _ in EVENT_EXAMPLES} | {"session_ended", "session_started"}
    ok(
        "event",
        envelope(
            "session_started",
            {"session_no": 1, "started_at": TS, "sterile": True, "cycle_id": 1},
        ),
    )
    assert covered == set(EVENT_TYPES)


@pytest.mark.parametrize(
    ("etype", "data"),
    [
        ("command_result", {"command": "tare", "ok": False}),  # a refusal says why
        ("command_result", {"command": "tare"}),
        ("command_result", {"ok": True}),
        ("command_result", {"command": "tare", "ok": "yes"}),
        ("command_result", {"command": "tare", "ok": True, "request_id": ""}),
        ("over_pressure", {"force_n": 6.5}),
        ("over_pressure", {"force_n": None, "limit_n": 6.0}),
        ("sterilization_started", {"mode": "time"}),
        ("sterilization_completed", {"cycle_id": "4"}),
        ("sterilization_aborted", {}),
        ("sensor_fault", {}),
        ("sensor_fault", {"reason": ""}),
        ("new_roller", {}),
        ("new_roller", {"roller_id": 0}),
        ("calibration_changed", {}),
        ("calibration_changed", {"reason": "reference", "offset": 80000.0, "complete": True}),
        (
            "calibration_changed",
            {
                "reason": "undo",
                "old_scale_n_per_count": "2.5e-5",
                "new_scale_n_per_count": 2.5e-5,
                "offset": 80000.0,
                "complete": True,
            },
        ),
        ("session_ended", {"session_no": 1}),
    ],
)
def test_event_refuses_data_a_type_must_not_have(etype: str, data: dict[str, Any]) -> None:
    bad("event", envelope(etype, data))


def test_event_session_ended_needs_each_summary_key() -> None:
    summary = real_summary()
    for key in (
        "session_no",
        "started_at",
        "ended_at",
        "duration_s",
        "contact_s",
        "peak_n",
        "over_episodes",
        "end_reason",
    ):
        bad("event", envelope("session_ended", without(summary, key)))


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "pressure_high"},  # not a type of the contract
        {"id": "not-a-uuid"},
        {"id": "3f2b8c1e-4d5a-1e6f-9a7b-1c2d3e4f5a6b"},  # a UUID1
        {"seq": 0},
        {"seq": "41"},
        {"device": "Bad Device"},
        {"ts": 1790000000.0},
        {"data": None},
        {"data": []},
        {"v": 0},
        {"event_type": "over_pressure"},
    ],
)
def test_event_refuses_envelope_mistakes(changes: dict[str, Any]) -> None:
    bad("event", changed(envelope("daemon_started", {}), **changes))


@pytest.mark.parametrize("key", ["v", "id", "seq", "device", "type", "ts", "data"])
def test_event_refuses_a_missing_envelope_key(key: str) -> None:
    bad("event", without(envelope("daemon_started", {}), key))


# --- session/last ---------------------------------------------------------------------------


def test_session_last_accepts_a_summary_with_unknown_forces() -> None:
    summary = changed(real_summary(), peak_n=None, mean_n=None, contact_s=0.0, cycle_id=None)
    summary["zone_s"] = {"light": 0.0, "ok": 0.0, "high": 0.0, "over": 0.0}
    ok("session_last", {"v": 1, **summary})
    ok("session_last", {"v": 1, **changed(summary, end_reason="interrupted")})
    ok("session_last", {"v": 1, **changed(summary, end_reason="some_later_reason")})


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"session_no": 0},
        {"started_at": iso(WALL0)[:-5] + "Z"},
        {"duration_s": -1.0},
        {"peak_n": "7.1"},
        {"over_episodes": 1.5},
        {"zone_s": {"light": 1.0, "ok": 1.0, "high": 1.0}},
        {"zone_s": {"light": 1.0, "ok": 1.0, "high": 1.0, "over": 0.0, "none": 3.0}},
        {"sterile_at_start": None},
        {"roller_use": 0},
        {"end_reason": ""},
        {"extra": True},
    ],
)
def test_session_last_refuses_mistakes(changes: dict[str, Any]) -> None:
    bad("session_last", {"v": 1, **changed(real_summary(), **changes)})


def test_session_last_needs_every_summary_key_and_v() -> None:
    last = {"v": 1, **real_summary()}
    for key in last:
        bad("session_last", without(last, key))


# --- commands -------------------------------------------------------------------------------


def command_errors(name: str, payload: Any) -> list[str]:
    return [e.message for e in Draft202012Validator(command_schema(name)).iter_errors(payload)]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_payload_schema_accepting_empty_and_request_id(name: str) -> None:
    Draft202012Validator.check_schema(command_schema(name))
    assert command_errors(name, {}) == []
    assert command_errors(name, {"request_id": "ha-7f3a"}) == []
    assert command_errors(name, {"request_id": "x" * 64}) == []
    assert errors("command", {"request_id": "ha-7f3a"}) == []


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize(
    "payload",
    [
        [],
        "tare",
        None,
        {"request_id": ""},
        {"request_id": "x" * 65},
        {"request_id": 7},
        {"request_id": "line\nbreak"},
        {"request_id": "r", "unexpected": 1},
    ],
)
def test_commands_refuse_malformed_payloads(name: str, payload: Any) -> None:
    assert command_errors(name, payload)
    assert errors("command", payload)


def test_silence_takes_a_duration_between_1_and_600_s_and_nothing_else_does() -> None:
    assert command_errors("silence", {"duration_s": 1}) == []
    assert command_errors("silence", {"duration_s": 600, "request_id": "a"}) == []
    assert command_errors("silence", {"duration_s": 30.5}) == []
    for duration in (0, 0.5, 601, "60", None, True):
        assert command_errors("silence", {"duration_s": duration}), duration
    assert command_errors("silence", {"duration": 60})  # misspelt: refused, not ignored
    for name in ("tare", "sterilize", "new_roller", "ping"):
        assert command_errors(name, {"duration_s": 60}), name
    assert errors("command", {"duration_s": 60}) == []  # some command takes it


def test_command_schema_refuses_what_is_not_a_command() -> None:
    for name in ("request_id", "no_arguments", "reboot"):
        with pytest.raises(ValueError, match="no payload schema"):
            command_schema(name)


def test_the_button_payload_of_home_assistant_is_a_valid_command() -> None:
    for name in ("tare", "sterilize", "silence", "new_roller"):
        assert command_errors(name, json.loads("{}")) == []


def test_the_core_event_types_are_the_contracts_list() -> None:
    from dermaguard.core.events import EventType

    assert [t.value for t in EventType] == load_schema("event")["properties"]["type"]["enum"]


def _zone_s_schemas(node: Any) -> list[dict[str, Any]]:
    """Every ``zone_s`` object schema anywhere in ``node``."""
    if isinstance(node, list):
        return [found for item in node for found in _zone_s_schemas(item)]
    if not isinstance(node, dict):
        return []
    found = [node["zone_s"]] if isinstance(node.get("zone_s"), dict) else []
    return found + [f for value in node.values() for f in _zone_s_schemas(value)]


def test_the_core_zones_are_the_contracts_zones() -> None:
    from dermaguard.core.events import CONTACT_ZONES, ZONES

    for name in ("state", "force"):
        assert load_schema(name)["properties"]["zone"]["enum"] == [*ZONES, None], name
    for name in ("session_last", "event"):
        found = _zone_s_schemas(load_schema(name))
        assert found, name
        for zone_s in found:
            assert zone_s["required"] == list(CONTACT_ZONES), name
            assert list(zone_s["properties"]) == list(CONTACT_ZONES), name


def test_the_core_command_names_are_the_contracts_commands() -> None:
    from dermaguard.core.events import CommandName

    shapes = set(load_schema("command")["$defs"]) - {"request_id", "no_arguments"}
    assert shapes == {name.value for name in CommandName}
    assert list(COMMANDS) == list(CommandName)


def test_the_silence_bound_is_the_configs_and_the_contracts() -> None:
    from dermaguard.mqtt.commands import MAX_SILENCE_S

    silence = load_schema("command")["$defs"]["silence"]["properties"]["duration_s"]
    assert silence["maximum"] == MAX_SILENCE_S == 600.0
