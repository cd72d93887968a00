"""Home Assistant device-based discovery: shape, topics, and what HA makes of our payloads.

The value templates are rendered with Jinja2's immutable sandbox, as Home Assistant renders
them (``value`` and ``value_json`` set, the result stripped), and the rendered text is then
interpreted the way HA's MQTT platforms do: for a sensor ``None`` means unknown and a numeric
sensor needs a number; a binary sensor takes ``ON``/``OFF``/``None``; the event entity drops an
empty result and otherwise needs a JSON object whose ``event_type`` it declared.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import Any

import jinja2.sandbox
import pytest
from jsonschema import Draft202012Validator

from dermaguard.mqtt.discovery import (
    ALERT_EVENT_TYPES,
    ALERT_NAMES,
    BUTTON_COMMANDS,
    SHARED_OPTIONS,
    STATE_CODES,
    STATE_OPTIONS,
    ZONE_OPTIONS,
    device_name,
    discovery_config,
    discovery_payload,
    effective_components,
    entity_slug,
)
from dermaguard.mqtt.schema_files import load_schema
from dermaguard.mqtt.topics import COMMANDS, OFFLINE, ONLINE, Topics

TOPICS = Topics("dermaguard")
TS = "2026-11-25T10:00:00.123Z"
#: Home Assistant's rule for entity ids (homeassistant.core.valid_entity_id).
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")

STATE: dict[str, Any] = {
    "v": 1,
    "ts": TS,
    "state": "in_use",
    "zone": "ok",
    "force_n": 3.25,
    "sterile": True,
    "sterile_until": "2026-11-26T10:00:00.000Z",
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
SESSION_LAST: dict[str, Any] = {
    "v": 1,
    "session_no": 12,
    "started_at": "2026-11-25T09:55:00.000Z",
    "ended_at": TS,
    "duration_s": 300.12,
    "contact_s": 210.5,
    "zone_s": {"light": 20.0, "ok": 180.0, "high": 10.0, "over": 0.5},
    "peak_n": 6.512,
    "mean_n": 3.1,
    "over_episodes": 1,
    "longest_over_s": 0.5,
    "sterile_at_start": True,
    "cycle_id": 7,
    "rest_interval_s": 200000.0,
    "too_soon": False,
    "roller_id": 2,
    "roller_use": 4,
    "end_reason": "docked",
    "technique": None,
}


def config(topics: Topics = TOPICS, **kwargs: Any) -> dict[str, Any]:
    return discovery_config(topics, device_name="Dermaguard", sw_version="0.1.0", **kwargs)


def comps(topics: Topics = TOPICS) -> dict[str, dict[str, Any]]:
    return effective_components(config(topics))


def with_state(**changes: Any) -> bytes:
    payload = {**STATE, **changes}
    assert list(Draft202012Validator(load_schema("state")).iter_errors(payload)) == []
    return json.dumps(payload).encode()


def envelope(etype: str, data: dict[str, Any]) -> bytes:
    payload = {
        "v": 1,
        "id": "3f2b8c1e-4d5a-4e6f-9a7b-1c2d3e4f5a6b",
        "seq": 41,
        "device": "dermaguard",
        "type": etype,
        "ts": TS,
        "data": data,
    }
    assert list(Draft202012Validator(load_schema("event")).iter_errors(payload)) == []
    return json.dumps(payload).encode()


# --- rendering as Home Assistant does ------------------------------------------------------


def render(template: str, payload: bytes) -> str:
    """HA's ``Template.async_render_with_possible_json_value``: the text, stripped."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    value = payload.decode("utf-8")
    variables: dict[str, Any] = {"value": value}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json.loads(value)
    return str(env.from_string(template).render(variables)).strip()


def sensor_state(component: dict[str, Any], payload: bytes) -> Any:
    """What HA's MQTT sensor stores for ``payload``, or raises what it would refuse."""
    text = render(component["value_template"], payload)
    if text == "None":
        return None  # unknown
    if "state_class" in component or "unit_of_measurement" in component:
        return float(text)  # HA refuses a non-numeric state for a numeric sensor
    if component.get("device_class") == "enum":
        assert text in component["options"], text
        return text
    if component.get("device_class") == "timestamp":
        moment = datetime.fromisoformat(text)
        assert moment.tzinfo is not None
        return moment
    assert 0 < len(text) <= 255
    return text


def binary_state(component: dict[str, Any], payload: bytes) -> bool | None:
    text = render(component["value_template"], payload)
    assert text in ("ON", "OFF", "None"), text
    return None if text == "None" else text == "ON"


def event_fired(component: dict[str, Any], payload: bytes) -> dict[str, Any] | None:
    """The event HA's MQTT event entity fires, or ``None`` when it drops the message quietly."""
    text = render(component["value_template"], payload)
    if not text or text in ("None", "{}"):
        return None
    fired = json.loads(text)
    assert isinstance(fired, dict)
    assert fired["event_type"] in component["event_types"]
    return fired


# --- shape ----------------------------------------------------------------------------------


def test_the_config_validates_against_the_discovery_schema() -> None:
    validator = Draft202012Validator(load_schema("discovery"))
    assert [e.message for e in validator.iter_errors(config())] == []
    with_url = config(support_url="https://example.org/dermaguard")
    assert [e.message for e in validator.iter_errors(with_url)] == []


def test_the_discovery_schema_catches_what_home_assistant_would_reject() -> None:
    validator = Draft202012Validator(load_schema("discovery"))
    good = config()
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "o"},  # origin is required by HA
        {**good, "name": "top-level keys HA does not know reject the whole document"},
        {**good, "dev": {**good["dev"], "ids": []}},
        {**good, "o": {**good["o"], "url": "not a url"}},
        {**good, "availability_topic": TOPICS.availability},  # exclusive with availability
        {**good, "cmps": {"x": {"p": "sensor"}}},  # no unique_id
        {**good, "cmps": {"x": {"unique_id": "x"}}},  # no platform
        {**good, "cmps": {"x": {"p": "button", "unique_id": "x"}}},  # no command topic
        {**good, "cmps": {"x": {"p": "event", "unique_id": "x"}}},  # no event types
        {**good, "cmps": {"x": {"p": "sensor", "unique_id": "x", "device_class": "enum"}}},
    ]
    for doc in broken:
        assert list(validator.iter_errors(doc)), doc


def test_device_and_origin() -> None:
    doc = config(model="test model")
    assert doc["dev"] == {
        "ids": ["dermaguard_dermaguard"],
        "name": "Dermaguard",
        "mf": "dermaguard",
        "mdl": "test model",
        "sw": "0.1.0",
    }
    assert doc["o"] == {"name": "dermaguard", "sw": "0.1.0"}  # no url unless one is given
    assert config(support_url="https://example.org")["o"]["url"] == "https://example.org"


def test_every_component_has_a_platform_and_a_unique_stable_id() -> None:
    components = config()["cmps"]
    ids = [c["unique_id"] for c in components.values()]
    assert len(ids) == len(set(ids))
    for key, component in components.items():
        assert component["p"] in ("sensor", "binary_sensor", "button", "event")
        assert component["unique_id"] == f"dermaguard_{key}"
        assert component["default_entity_id"] == f"{component['p']}.dermaguard_{key}"
        assert ENTITY_ID.match(component["default_entity_id"])
        assert component["name"]
        assert component["qos"] in (0, 1)  # HA does not pass a device-level qos down


def test_the_expected_entities_are_there() -> None:
    expected = {
        "force": "sensor",
        "zone": "sensor",
        "state": "sensor",
        "sterile": "binary_sensor",
        "over_pressure": "binary_sensor",
        "uv_on": "binary_sensor",
        "roller_uses": "sensor",
        "fault": "sensor",
        "last_session_duration": "sensor",
        "last_session_peak_force": "sensor",
        "last_session_over_episodes": "sensor",
        "last_session_contact_time": "sensor",
        "last_session_end": "sensor",
        "last_session_passes": "sensor",
        "last_session_steadiness": "sensor",
        "tare": "button",
        "sterilize": "button",
        "silence": "button",
        "new_roller": "button",
        "alerts": "event",
    }
    assert {k: c["p"] for k, c in config()["cmps"].items()} == expected


@pytest.mark.parametrize(
    "topics",
    [TOPICS, Topics("roller-2__b", prefix="dg/home", discovery_prefix="ha")],
    ids=["default", "custom"],
)
def test_every_topic_referenced_is_one_of_the_devices_topics(topics: Topics) -> None:
    doc = config(topics)
    subscribed = {topics.state, topics.force, topics.event, topics.session_last}
    commands = {topics.cmd(name) for name in COMMANDS}
    for key, component in effective_components(doc).items():
        if component["p"] == "button":
            assert component["command_topic"] in commands, key
        else:
            assert component["state_topic"] in subscribed, key
            assert "command_topic" not in component, key
        assert component.get("json_attributes_topic", topics.state) == topics.state, key
        assert "availability_topic" not in component
    assert all(option in SHARED_OPTIONS for option in doc if option not in ("dev", "o", "cmps"))
    for component in doc["cmps"].values():
        assert ENTITY_ID.match(component["default_entity_id"]), component["default_entity_id"]
        assert component["unique_id"].startswith(f"{topics.device_id}_")


def test_each_stream_feeds_the_right_entities() -> None:
    c = comps()
    assert c["force"]["state_topic"] == TOPICS.force
    assert c["force"]["qos"] == 0
    for key in ("zone", "state", "sterile", "over_pressure", "uv_on", "roller_uses", "fault"):
        assert c[key]["state_topic"] == TOPICS.state, key
    for key in c:
        if key.startswith("last_session_"):
            assert c[key]["state_topic"] == TOPICS.session_last, key
    assert c["alerts"]["state_topic"] == TOPICS.event


def test_buttons_send_an_empty_object_to_their_command_topic_unretained() -> None:
    c = comps()
    assert set(BUTTON_COMMANDS) == {"tare", "sterilize", "silence", "new_roller"}
    for name in BUTTON_COMMANDS:
        button = c[name]
        assert button["p"] == "button"
        assert button["command_topic"] == TOPICS.cmd(name)
        assert button["payload_press"] == "{}"
        assert button["retain"] is False
        assert button["qos"] == 1
    assert c["tare"]["entity_category"] == "config"
    assert c["new_roller"]["entity_category"] == "config"
    assert "entity_category" not in c["sterilize"]
    assert "entity_category" not in c["silence"]
    assert c["fault"]["entity_category"] == "diagnostic"


def test_availability_is_wired_to_the_birth_and_last_will_topic() -> None:
    wanted = [
        {
            "topic": TOPICS.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        }
    ]
    assert config()["availability"] == wanted
    for key, component in comps().items():
        assert component["availability"] == wanted, key
    assert (ONLINE, OFFLINE) == ("online", "offline")


def test_the_discovery_topic() -> None:
    assert TOPICS.discovery == "homeassistant/device/dermaguard/config"
    assert Topics("r2", discovery_prefix="ha").discovery == "ha/device/r2/config"


def test_the_payload_is_compact_utf8_json_of_the_config() -> None:
    topics = Topics("kitchen")
    payload = discovery_payload(topics, device_name="Küche roller", sw_version="1.2.3")
    doc = discovery_config(topics, device_name="Küche roller", sw_version="1.2.3")
    assert json.loads(payload.decode("utf-8")) == doc
    assert payload == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert "Küche".encode() in payload
    assert b"\n" not in payload


def test_the_device_name_is_short_and_never_says_dermaguard_twice() -> None:
    assert device_name("dermaguard") == "dermaguard"
    assert device_name("dermaguard-sim", simulated=True) == "dermaguard (simulation)"
    assert device_name("bathroom") == "dermaguard bathroom"
    assert device_name("bathroom-sim", simulated=True) == "dermaguard bathroom (simulation)"


def test_a_force_that_rounds_to_zero_is_published_as_0_never_minus_0() -> None:
    from dermaguard.core.events import ForceSample
    from dermaguard.mqtt.payloads import force_payload

    payload = force_payload(ForceSample(1.0, -0.0002, "none"), 1_790_000_000.0)
    assert b'"force_n":0.0,' in payload and b"-0.0" not in payload


def test_entity_slug_makes_valid_entity_ids() -> None:
    assert entity_slug("dermaguard") == "dermaguard"
    assert entity_slug("roller-2") == "roller_2"
    assert entity_slug("a__b--c_") == "a_b_c"
    assert entity_slug("-_-") == "dermaguard"


# --- templates, rendered as Home Assistant does ----------------------------------------------


def test_force_sensor_reports_numbers_and_unknown_never_zero() -> None:
    force = comps()["force"]
    assert force["unit_of_measurement"] == "N"
    assert force["state_class"] == "measurement"
    assert force["suggested_display_precision"] == 2
    sample = {"v": 1, "t": 1_790_000_000.25, "force_n": 3.25, "zone": "ok"}
    assert sensor_state(force, json.dumps(sample).encode()) == 3.25
    assert sensor_state(force, json.dumps({**sample, "force_n": 0, "zone": "none"}).encode()) == 0
    unknown = json.dumps({**sample, "force_n": None, "zone": None}).encode()
    assert render(force["value_template"], unknown) == "None"
    assert sensor_state(force, unknown) is None


def attributes(component: dict[str, Any], payload: bytes) -> Any:
    return json.loads(render(component["json_attributes_template"], payload))


def test_zone_sensor_says_every_zone_in_words_and_keeps_the_code_as_an_attribute() -> None:
    zone = comps()["zone"]
    assert zone["options"] == list(ZONE_OPTIONS)
    words = {"none": "No contact", "light": "Light", "ok": "OK", "high": "High", "over": "Over"}
    for value, word in words.items():
        force = 0.0 if value == "none" else 2.0
        assert sensor_state(zone, with_state(zone=value, force_n=force)) == word
        assert attributes(zone, with_state(zone=value, force_n=force)) == {"code": value}
    # An unknown force is a word of its own, never HA's own "unknown" (no data).
    assert sensor_state(zone, with_state(zone=None, force_n=None)) == "Force unknown"
    assert attributes(zone, with_state(zone=None, force_n=None)) == {"code": "unknown"}


def test_state_sensor_says_every_state_of_the_contract_in_words() -> None:
    state = comps()["state"]
    schema_states = load_schema("state")["properties"]["state"]["enum"]
    assert list(STATE_CODES) == schema_states
    assert (
        state["options"] == list(STATE_OPTIONS) == ["Idle", "In the dock", "In use", "Disinfecting"]
    )
    for value, word in zip(schema_states, STATE_OPTIONS, strict=True):
        assert sensor_state(state, with_state(state=value)) == word
        assert attributes(state, with_state(state=value)) == {"code": value}


def test_binary_sensors() -> None:
    c = comps()
    assert binary_state(c["sterile"], with_state(sterile=True)) is True
    assert binary_state(c["sterile"], with_state(sterile=False)) is False
    assert binary_state(c["uv_on"], with_state(uv_on=True, lid_closed=True)) is True
    assert binary_state(c["uv_on"], with_state(uv_on=False)) is False
    # What on means, shown by HA: Running / Not running, and a shield for disinfected.
    assert c["uv_on"]["device_class"] == "running"
    assert c["sterile"]["icon"] == "mdi:shield-check"
    over = c["over_pressure"]
    assert over["device_class"] == "problem"
    assert binary_state(over, with_state(zone="over", force_n=7.0)) is True
    assert binary_state(over, with_state(zone="high", force_n=5.0)) is False
    assert binary_state(over, with_state(zone="none", force_n=0.0)) is False
    assert binary_state(over, with_state(zone=None, force_n=None)) is None


def test_roller_uses_and_fault() -> None:
    c = comps()
    assert c["roller_uses"]["state_class"] == "total_increasing"
    assert sensor_state(c["roller_uses"], with_state(roller_uses=4)) == 4
    assert sensor_state(c["roller_uses"], with_state(roller_uses=0)) == 0
    fault = c["fault"]
    assert sensor_state(fault, with_state(fault=None)) == "none"
    assert sensor_state(fault, with_state(fault="not_ready")) == "not_ready"
    assert len(sensor_state(fault, with_state(fault="x" * 1000))) == 255


def test_last_session_sensors() -> None:
    c = comps()
    payload = json.dumps(SESSION_LAST).encode()
    errors = list(Draft202012Validator(load_schema("session_last")).iter_errors(SESSION_LAST))
    assert errors == []
    assert c["last_session_duration"]["device_class"] == "duration"
    assert c["last_session_duration"]["unit_of_measurement"] == "s"
    assert sensor_state(c["last_session_duration"], payload) == 300.12
    assert c["last_session_contact_time"]["device_class"] == "duration"
    assert sensor_state(c["last_session_contact_time"], payload) == 210.5
    assert c["last_session_peak_force"]["unit_of_measurement"] == "N"
    assert sensor_state(c["last_session_peak_force"], payload) == 6.512
    assert sensor_state(c["last_session_over_episodes"], payload) == 1
    end = c["last_session_end"]
    assert end["device_class"] == "timestamp"
    assert sensor_state(end, payload) == datetime.fromisoformat("2026-11-25T10:00:00.123+00:00")
    no_force = json.dumps({**SESSION_LAST, "peak_n": None, "mean_n": None}).encode()
    assert sensor_state(c["last_session_peak_force"], no_force) is None


def test_last_session_passes_and_steadiness_with_long_term_statistics() -> None:
    c = comps()
    passes, spread = c["last_session_passes"], c["last_session_steadiness"]
    assert passes["state_class"] == spread["state_class"] == "measurement"
    assert spread["unit_of_measurement"] == "%"
    technique = {
        "passes": 46,
        "pass_force_n": 1.92,
        "steadiness_cv": 0.1534,
        "zone_share": {"light": 0.05, "ok": 0.85, "high": 0.1, "over": 0.0},
        "passes_high": 5,
        "passes_over": 0,
        "longest_ok_s": 12.4,
    }
    measured = {**SESSION_LAST, "technique": technique}
    assert list(Draft202012Validator(load_schema("session_last")).iter_errors(measured)) == []
    payload = json.dumps(measured).encode()
    assert sensor_state(passes, payload) == 46
    assert sensor_state(spread, payload) == 15.3
    # One pass: no spread; an old session: nothing known. Unknown, never 0.
    one = {**technique, "passes": 1, "steadiness_cv": None}
    single = json.dumps({**SESSION_LAST, "technique": one}).encode()
    assert (sensor_state(passes, single), sensor_state(spread, single)) == (1, None)
    old = json.dumps({**SESSION_LAST, "technique": None}).encode()
    assert (sensor_state(passes, old), sensor_state(spread, old)) == (None, None)


def test_alerts_event_entity_fires_alerts_with_their_data() -> None:
    alerts = comps()["alerts"]
    assert alerts["event_types"] == list(ALERT_NAMES)
    assert "Used without disinfection" in ALERT_NAMES
    contract_types = load_schema("event")["properties"]["type"]["enum"]
    assert set(ALERT_EVENT_TYPES) <= set(contract_types)
    fired = event_fired(alerts, envelope("over_pressure", {"force_n": 6.512, "limit_n": 6.0}))
    assert fired == {
        "event_type": "Over-pressure",
        "code": "over_pressure",
        "event_id": "3f2b8c1e-4d5a-4e6f-9a7b-1c2d3e4f5a6b",
        "seq": 41,
        "ts": TS,
        "force_n": 6.512,
        "limit_n": 6.0,
    }
    fault = event_fired(alerts, envelope("sensor_fault", {"reason": "not_ready"}))
    assert fault is not None
    assert (fault["event_type"], fault["code"]) == ("Sensor fault", "sensor_fault")
    assert fault["reason"] == "not_ready"


def test_alerts_event_entity_ignores_every_other_event_quietly() -> None:
    alerts = comps()["alerts"]
    samples: dict[str, dict[str, Any]] = {
        "session_ended": {k: v for k, v in SESSION_LAST.items() if k != "v"},
        "sterilization_started": {"cycle_id": 1},
        "new_roller": {"roller_id": 3},
        "command_result": {"command": "ping", "ok": True},
        "calibration_changed": {"reason": "tare", "offset": 8123.0, "shift_n": 0.01},
        "clock_sync": {"synced": True},
    }
    contract_types = load_schema("event")["properties"]["type"]["enum"]
    for etype in contract_types:
        data = samples.get(etype, {})
        if etype in ALERT_EVENT_TYPES:
            continue
        assert render(alerts["value_template"], envelope(etype, data)) == "", etype
        assert event_fired(alerts, envelope(etype, data)) is None, etype


def test_alert_data_cannot_override_the_event_type() -> None:
    alerts = comps()["alerts"]
    payload = envelope("too_soon", {"session_no": 3, "event_type": "daemon_started"})
    fired = event_fired(alerts, payload)
    assert fired is not None
    assert (fired["event_type"], fired["code"]) == ("Too soon", "too_soon")
