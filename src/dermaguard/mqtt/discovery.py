"""Home Assistant MQTT discovery for one device (docs/MQTT.md), in HA's device-based format.

One retained JSON document on ``homeassistant/device/<device_id>/config`` (``Topics.discovery``)
declares the device and every entity it has, so HA adds or removes them together, and a
component dropped from a later document is removed from HA. Publishing an empty retained payload
on that topic removes the device and all its entities.

What the document relies on in Home Assistant, checked against its MQTT integration:

* ``dev``, ``o``, ``cmps`` and ``p`` are abbreviations HA expands (``device``, ``origin``,
  ``components``, ``platform``), as are ``ids``/``name``/``mf``/``mdl``/``sw`` in the device and
  ``name``/``sw``/``url`` in the origin. Every other key is written out in full.
* Only these device-level options are inherited by components: ``availability*``,
  ``payload_(not_)available``, ``state_topic`` and ``command_topic`` (:data:`SHARED_OPTIONS`).
  ``qos`` is accepted at device level but *not* inherited, so each component states its own.
  Any other device-level key makes HA reject the whole document, so none is added here.
* The origin's ``url`` must be a real http(s) URL or HA rejects the whole document; it is only
  written when a support URL is given.
* A platform drops options it does not know, so the ``state_topic`` every component inherits is
  harmless on the buttons, and ``default_entity_id`` (HA 2025.10+, which replaced the removed
  ``object_id``) is simply ignored by older versions.
* Value templates are rendered to a string (``str()`` of the Jinja result, stripped). For a
  sensor or binary sensor the string ``None`` sets the state to *unknown*; for the event entity
  an empty string (or ``None``/``{}``) makes HA ignore the message, logged at debug level only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from dermaguard.core.events import ZONES, CommandName, EventType
from dermaguard.core.words import EVENT_NAMES, STATE_NAMES, ZONE_NAMES
from dermaguard.mqtt.topics import OFFLINE, ONLINE, Topics

#: Device-level options Home Assistant copies into each component that does not set them.
SHARED_OPTIONS: Final[tuple[str, ...]] = (
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "command_topic",
    "payload_available",
    "payload_not_available",
    "state_topic",
)

#: Commands that get a button in Home Assistant, and the button's name (``ping`` is for
#: scripts, not people). Names are what a person reads; the component ids keep the command's.
BUTTON_NAMES: Final[Mapping[CommandName, str]] = {
    CommandName.TARE: "Tare",
    CommandName.STERILIZE: "Disinfect",
    CommandName.SILENCE: "Silence buzzer",
    CommandName.NEW_ROLLER: "New roller",
}
BUTTON_COMMANDS: Final[tuple[CommandName, ...]] = tuple(BUTTON_NAMES)
#: Buttons shown among the device's configuration entities rather than its controls.
_CONFIG_BUTTONS: Final = frozenset({CommandName.TARE, CommandName.NEW_ROLLER})

#: Event types the ``alerts`` event entity fires; the rest of the event stream is ignored there.
ALERT_EVENT_TYPES: Final[tuple[EventType, ...]] = (
    EventType.OVER_PRESSURE,
    EventType.OVER_PRESSURE_CLEARED,
    EventType.UNSTERILE_USE,
    EventType.TOO_SOON,
    EventType.REST_UNKNOWN,
    EventType.ROLLER_REPLACE_DUE,
    EventType.SENSOR_FAULT,
    EventType.SENSOR_RECOVERED,
    EventType.CASE_FAULT,
    EventType.CASE_FAULT_CLEARED,
    EventType.STERILIZATION_COMPLETED,
    EventType.STERILIZATION_ABORTED,
    EventType.THREAD_FAILED,
)

#: The codes of the ``zone`` sensor: the pressure zones, and ``unknown`` when the force is.
ZONE_CODES: Final[tuple[str, ...]] = (*ZONES, "unknown")
#: The ``zone`` sensor's values: words for people (MQTT entities get no translations, so HA
#: shows exactly these); the code is its ``code`` attribute, for automations.
ZONE_OPTIONS: Final[tuple[str, ...]] = tuple(ZONE_NAMES[z] for z in ZONE_CODES)

#: The codes of the ``state`` sensor (the device's session/case state), and its values in words.
STATE_CODES: Final[tuple[str, ...]] = ("idle", "docked", "in_use", "sterilizing")
STATE_OPTIONS: Final[tuple[str, ...]] = tuple(STATE_NAMES[s] for s in STATE_CODES)
#: The ``alerts`` event entity's event types: the alerts' names in words (``code`` attribute:
#: the event type of the contract).
ALERT_NAMES: Final[tuple[str, ...]] = tuple(EVENT_NAMES[t] for t in ALERT_EVENT_TYPES)

ORIGIN_NAME: Final = "dermaguard"
MANUFACTURER: Final = "dermaguard"
MODEL: Final = "dermaguard roller monitor"

#: Home Assistant refuses a state longer than this.
_MAX_STATE_LEN: Final = 255

# Numeric sensors: a JSON null renders as "None", which HA turns into the state *unknown*.
# Rendering the word "unknown" instead would be taken as a non-numeric value and rejected.
_FORCE_TEMPLATE: Final = "{{ value_json.force_n }}"


def _words_template(expression: str, names: Mapping[str, str]) -> str:
    """A Jinja lookup of ``expression``'s code in ``names`` (HA renders it in its sandbox)."""
    table = "{" + ", ".join(f"'{code}': '{word}'" for code, word in names.items()) + "}"
    return "{{ " + table + "[" + expression + "] }}"


_ZONE_CODE: Final = "(value_json.zone if value_json.zone is not none else 'unknown')"
_ZONE_TEMPLATE: Final = _words_template(_ZONE_CODE, ZONE_NAMES)
_ZONE_ATTRIBUTES: Final = "{{ {'code': " + _ZONE_CODE + "} | tojson }}"
_STATE_TEMPLATE: Final = _words_template("value_json.state", STATE_NAMES)
_STATE_ATTRIBUTES: Final = "{{ {'code': value_json.state} | tojson }}"
_OVER_TEMPLATE: Final = (
    "{% if value_json.zone is none %}None"
    "{% elif value_json.zone == 'over' %}ON{% else %}OFF{% endif %}"
)
_FAULT_TEMPLATE: Final = "{{ (value_json.fault or 'none')[:" + str(_MAX_STATE_LEN) + "] }}"


def _bool_template(field: str) -> str:
    return "{{ 'ON' if value_json." + field + " else 'OFF' }}"


def _technique_template(expression: str, key: str = "passes") -> str:
    """``expression`` of the last session's technique, or None (unknown) when the session has
    no technique or the value itself is unknown (a spread needs two passes)."""
    return (
        f"{{{{ {expression} if value_json.technique and "
        f"value_json.technique.{key} is not none else None }}}}"
    )


def _alerts_template() -> str:
    """Turns the event envelope into what HA's MQTT event entity wants, or into nothing.

    HA needs ``{"event_type": ..., <attributes>}``; the envelope has ``type``, so the template
    renames it, keeps ``id``/``seq``/``ts`` (as ``event_id``/``seq``/``ts``) and lifts ``data``'s
    keys to attributes. An event whose type is not an alert renders as the empty string, which
    HA's event platform drops with a debug log; an unlisted ``event_type`` would be logged as a
    warning ("Invalid event type") on every such message.
    """
    names = "{" + ", ".join(f"'{t}': '{EVENT_NAMES[t]}'" for t in ALERT_EVENT_TYPES) + "}"
    return (
        "{% set t = value_json.type %}"
        "{% set names = " + names + " %}"
        "{% if t in names %}"
        "{{ dict(value_json.data, event_type=names[t], code=t, event_id=value_json.id,"
        " seq=value_json.seq, ts=value_json.ts) | tojson }}"
        "{% endif %}"
    )


def device_name(device_id: str, *, simulated: bool = False) -> str:
    """The device's name in Home Assistant, which starts every entity's name: short, and never
    "dermaguard dermaguard" (the default id) nor "dermaguard-sim (simulation)" twice over."""
    base = device_id.removesuffix("-sim") if simulated else device_id
    name = base if "dermaguard" in base.lower() else f"dermaguard {base}"
    return f"{name} (simulation)" if simulated else name


def entity_slug(device_id: str) -> str:
    """``device_id`` as the object part of an entity id: ``a-z 0-9 _`` only, no ``__``, no
    leading or trailing ``_`` (a device id may hold ``-`` and ``__``, an entity id may not)."""
    slug = re.sub(r"[^a-z0-9]+", "_", device_id.lower()).strip("_")
    return slug or "dermaguard"


def discovery_config(
    topics: Topics,
    *,
    device_name: str,
    sw_version: str,
    model: str = MODEL,
    support_url: str | None = None,
) -> dict[str, Any]:
    """The device-based discovery document for ``topics.device_id`` (see the module docstring).

    Component ids (the keys of ``cmps``) and ``unique_id`` values are a contract with the
    user's Home Assistant: renaming one removes an entity and its history and adds a new one.
    ``support_url`` goes into the origin only when given, as HA rejects an invalid one.
    """
    device_id = topics.device_id
    slug = entity_slug(device_id)
    components: dict[str, dict[str, Any]] = {}

    def add(key: str, platform: str, name: str, **options: Any) -> None:
        components[key] = {
            "p": platform,
            "name": name,
            "unique_id": f"{device_id}_{key}",
            "default_entity_id": f"{platform}.{slug}_{key}",
            **options,
        }

    # Live force: its own QoS 0 stream at telemetry rate, only while in use.
    add(
        "force",
        "sensor",
        "Force",
        state_topic=topics.force,
        qos=0,
        value_template=_FORCE_TEMPLATE,
        unit_of_measurement="N",
        state_class="measurement",
        suggested_display_precision=2,
    )
    # The rest of the live figures come from the retained state snapshot (shared state_topic).
    add(
        "zone",
        "sensor",
        "Pressure zone",
        qos=1,
        value_template=_ZONE_TEMPLATE,
        device_class="enum",
        options=list(ZONE_OPTIONS),
        json_attributes_topic=topics.state,
        json_attributes_template=_ZONE_ATTRIBUTES,
    )
    add(
        "state",
        "sensor",
        "State",
        qos=1,
        value_template=_STATE_TEMPLATE,
        device_class="enum",
        options=list(STATE_OPTIONS),
        json_attributes_topic=topics.state,
        json_attributes_template=_STATE_ATTRIBUTES,
    )
    # Entity names are what a person reads; object ids keep "sterile"/"sterilize" (compatibility).
    # No binary-sensor device class means "disinfected": the icon says what on means.
    add(
        "sterile",
        "binary_sensor",
        "Disinfected",
        qos=1,
        value_template=_bool_template("sterile"),
        icon="mdi:shield-check",
    )
    add(
        "over_pressure",
        "binary_sensor",
        "Over-pressure",
        qos=1,
        value_template=_OVER_TEMPLATE,
        device_class="problem",
    )
    # "running": HA shows Running / Not running rather than a bare On / Off.
    add(
        "uv_on",
        "binary_sensor",
        "UV-C lamp",
        qos=1,
        value_template=_bool_template("uv_on"),
        device_class="running",
        icon="mdi:lightbulb-fluorescent-tube",
    )
    # Uses of the current roller: counts up one per session and drops to 0 on a new roller,
    # which is what total_increasing means to HA (a drop is a reset, the long-term sum is the
    # number of sessions over all rollers). "measurement" would average a count; "total"
    # without last_reset would make the sum fall back at every reset.
    add(
        "roller_uses",
        "sensor",
        "Roller uses",
        qos=1,
        value_template="{{ value_json.roller_uses }}",
        state_class="total_increasing",
    )
    add(
        "fault",
        "sensor",
        "Fault",
        qos=1,
        value_template=_FAULT_TEMPLATE,
        entity_category="diagnostic",
    )

    # The last session's figures: one retained summary, replaced when a session ends.
    session = {"state_topic": topics.session_last, "qos": 1}
    add(
        "last_session_duration",
        "sensor",
        "Last session duration",
        **session,
        value_template="{{ value_json.duration_s }}",
        device_class="duration",
        unit_of_measurement="s",
        state_class="measurement",
        suggested_display_precision=0,
    )
    add(
        "last_session_peak_force",
        "sensor",
        "Last session peak force",
        **session,
        value_template="{{ value_json.peak_n }}",
        unit_of_measurement="N",
        state_class="measurement",
        suggested_display_precision=2,
    )
    add(
        "last_session_over_episodes",
        "sensor",
        "Last session over-pressure episodes",
        **session,
        value_template="{{ value_json.over_episodes }}",
        state_class="measurement",
    )
    add(
        "last_session_contact_time",
        "sensor",
        "Last session contact time",
        **session,
        value_template="{{ value_json.contact_s }}",
        device_class="duration",
        unit_of_measurement="s",
        state_class="measurement",
        suggested_display_precision=0,
    )
    add(
        "last_session_end",
        "sensor",
        "Last session end",
        **session,
        value_template="{{ value_json.ended_at }}",
        device_class="timestamp",
    )
    # The technique: a session from before it was measured has ``technique: null``, which
    # renders None (unknown), never 0, so long-term statistics are not dragged down by it.
    add(
        "last_session_passes",
        "sensor",
        "Last session passes",
        **session,
        value_template=_technique_template("value_json.technique.passes"),
        state_class="measurement",
    )
    add(
        "last_session_steadiness",
        "sensor",
        "Last session pass force spread",
        **session,
        value_template=_technique_template(
            "(value_json.technique.steadiness_cv * 100) | round(1)", "steadiness_cv"
        ),
        unit_of_measurement="%",
        state_class="measurement",
        suggested_display_precision=0,
    )

    # Commands: never retained (a retained command would run again at every reconnect).
    for command, button_name in BUTTON_NAMES.items():
        extra: dict[str, Any] = {}
        if command in _CONFIG_BUTTONS:
            extra["entity_category"] = "config"
        add(
            command.value,
            "button",
            button_name,
            command_topic=topics.cmd(command),
            payload_press="{}",
            qos=1,
            retain=False,
            **extra,
        )

    add(
        "alerts",
        "event",
        "Alerts",
        state_topic=topics.event,
        qos=1,
        event_types=list(ALERT_NAMES),
        value_template=_alerts_template(),
    )

    origin: dict[str, Any] = {"name": ORIGIN_NAME, "sw": sw_version}
    if support_url is not None:
        origin["url"] = support_url
    return {
        "dev": {
            "ids": [f"dermaguard_{device_id}"],
            "name": device_name,
            "mf": MANUFACTURER,
            "mdl": model,
            "sw": sw_version,
        },
        "o": origin,
        "availability": [
            {
                "topic": topics.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            }
        ],
        "state_topic": topics.state,
        "cmps": components,
    }


def discovery_payload(
    topics: Topics,
    *,
    device_name: str,
    sw_version: str,
    model: str = MODEL,
    support_url: str | None = None,
) -> bytes:
    """:func:`discovery_config` as compact UTF-8 JSON, ready to publish retained on
    ``topics.discovery``."""
    config = discovery_config(
        topics,
        device_name=device_name,
        sw_version=sw_version,
        model=model,
        support_url=support_url,
    )
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def effective_components(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each component as Home Assistant sets it up: the device-level :data:`SHARED_OPTIONS`
    it does not set itself merged in, as HA does, so tests can check what HA will see."""
    components: Mapping[str, Mapping[str, Any]] = config["cmps"]
    result: dict[str, dict[str, Any]] = {}
    for key, component in components.items():
        merged = dict(component)
        for option in SHARED_OPTIONS:
            if option in config and option not in merged:
                merged[option] = config[option]
        result[key] = merged
    return result
