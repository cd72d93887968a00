"""The device's words for people: what each event says, and what the case's states are called.

One place for the wording, so the terminal, the status file, ``watch`` and the web dashboard say
the same thing about the same event. Pure: templates and formatting only.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from dermaguard.common.timefmt import format_span, local_time, parse_utc
from dermaguard.core.events import Event, EventType
from dermaguard.core.zero_tracking import ZERO_DRIFT, ZERO_TRACKING

#: Words a person reads for the case's states. The state names stay as MQTT, the status file
#: and the history have them, but a UV-C cycle disinfects a roller; it does not make it sterile
#: (docs/CARE.md).
CASE_WORDS: dict[str, str] = {"sterilizing": "disinfecting", "sterile": "disinfected"}


def case_word(state: str) -> str:
    """The case state as a person reads it."""
    return CASE_WORDS.get(state, state)


#: Each event type's name as a person reads it (the dashboard's event list, Home Assistant's
#: alerts); the type names themselves stay in the MQTT payloads, for machines.
EVENT_NAMES: Mapping[str, str] = {
    EventType.DAEMON_STARTED: "Started",
    EventType.DAEMON_STOPPING: "Stopping",
    EventType.SESSION_STARTED: "Session started",
    EventType.SESSION_ENDED: "Session ended",
    EventType.OVER_PRESSURE: "Over-pressure",
    EventType.OVER_PRESSURE_CLEARED: "Over-pressure cleared",
    EventType.UNSTERILE_USE: "Used without disinfection",
    EventType.TOO_SOON: "Too soon",
    EventType.REST_UNKNOWN: "Rest cannot be checked",
    EventType.ROLLER_REPLACE_DUE: "Roller replacement due",
    EventType.STERILIZATION_STARTED: "UV-C cycle started",
    EventType.STERILIZATION_COMPLETED: "UV-C cycle completed",
    EventType.STERILIZATION_ABORTED: "UV-C cycle aborted",
    EventType.SENSOR_FAULT: "Sensor fault",
    EventType.SENSOR_RECOVERED: "Sensor recovered",
    EventType.CASE_FAULT: "Case fault",
    EventType.CASE_FAULT_CLEARED: "Case fault cleared",
    EventType.CALIBRATION_CHANGED: "Calibration changed",
    EventType.COMMAND_RESULT: "Command answered",
    EventType.NEW_ROLLER: "New roller",
    EventType.THREAD_FAILED: "Part of the daemon failed",
    EventType.CLOCK_SYNC: "Clock synchronisation changed",
}

#: The device's state (``state`` in ``…/state``) as a person reads it.
STATE_NAMES: Mapping[str, str] = {
    "idle": "Idle",
    "docked": "In the dock",
    "in_use": "In use",
    "sterilizing": "Disinfecting",
}

#: The pressure zones as a person reads them; ``unknown``: the force is unknown (a fault).
ZONE_NAMES: Mapping[str, str] = {
    "none": "No contact",
    "light": "Light",
    "ok": "OK",
    "high": "High",
    "over": "Over",
    "unknown": "Force unknown",
}


#: What each event says, by type; ``{x:local}`` and ``{x:span}``: see :class:`_Readable`.
_EVENT_TEXT: Mapping[str, str] = {
    EventType.DAEMON_STARTED: "started",
    # The alarm acts on the force before smoothing (it never waits for it); zones and the gauge
    # show the smoothed force: each line says which one it is.
    EventType.OVER_PRESSURE: (
        "ALARM over-pressure: {force_n:.2f} N before smoothing (limit {limit_n:.2f} N)"
    ),
    EventType.OVER_PRESSURE_CLEARED: (
        "alarm cleared: over-pressure lasted {duration_s:.1f} s, peak {peak_n:.2f} N"
    ),
    EventType.SENSOR_FAULT: "FAULT force sensor: {reason} (force unknown)",
    EventType.SENSOR_RECOVERED: "force sensor recovered",
    EventType.CASE_FAULT: "ALARM UV-C case fault: {reason} (UV off; check the case)",
    EventType.CASE_FAULT_CLEARED: "UV-C case fault cleared: {reason}",
    EventType.STERILIZATION_STARTED: "UV-C cycle {cycle_id} started ({mode}, {length_s:.0f} s)",
    EventType.STERILIZATION_COMPLETED: (
        "UV-C cycle {cycle_id} completed after {duration_s:.0f} s: roller disinfected"
    ),
    EventType.STERILIZATION_ABORTED: (
        "UV-C cycle {cycle_id} ABORTED after {after_s:.0f} s: {reason}"
    ),
    EventType.UNSTERILE_USE: (
        "ALARM use without disinfection: the roller touched skin without a valid UV-C cycle"
    ),
    EventType.COMMAND_RESULT: "command {command}: {error}",
    EventType.NEW_ROLLER: "roller {roller_id} is in use (0 uses)",
    EventType.CALIBRATION_CHANGED: "calibration changed ({reason})",
    EventType.SESSION_STARTED: "session {session_no} started (roller use {roller_use})",
    EventType.SESSION_ENDED: (
        "session {session_no} ended ({end_reason}): {duration_s:.0f} s, "
        "{contact_s:.0f} s in contact, {over_episodes} over-pressure episode(s)"
    ),
    # The useful part first: a narrow view that cuts the line keeps it.
    EventType.TOO_SOON: (
        "WARNING too soon: next allowed {next_allowed_at:local} "
        "(only {rest_interval_s:span} since the last session)"
    ),
    EventType.REST_UNKNOWN: (
        "WARNING rest not checked: {reason:rest} (wait {min_rest_s:span} after the last "
        "session yourself)"
    ),
    EventType.CLOCK_SYNC: "clock synchronised: times are real from now on",
    EventType.ROLLER_REPLACE_DUE: (
        "WARNING roller {roller_id} has {uses} uses (limit {limit}): replace it"
    ),
    EventType.DAEMON_STOPPING: "stopping",
    EventType.THREAD_FAILED: (
        "FAULT thread {thread} failed ({error}): UV-C off, restarting it in {restart_in_s:g} s"
    ),
}
_COMMAND_OK = "command {command}: ok"
_CLOCK_UNSYNCED = (
    "WARNING the clock is not synchronised: times are guesses and the rest between sessions "
    "cannot be checked until it is"
)
#: Why the rest could not be checked, for people (``rest_unknown``'s ``reason``).
_REST_WHY: Mapping[str, str] = {
    "clock_not_synchronized": "the clock is not synchronised yet",
    "last_session_time_unknown": "the last session was dated before the clock was synchronised",
}
_FAULT_DETAIL = "FAULT force sensor: {reason}, {detail} (force unknown)"
_ABORT_DETAIL = "UV-C cycle {cycle_id} ABORTED after {after_s:.0f} s: {reason} ({detail})"
_THREAD_ONCE = "FAULT thread {thread} failed ({error}): UV-C off"
#: A reading pinned at the top of the range: the force is known to be high, not unknown; a
#: zero drifted beyond the tracking range: the force is known, but off by the drift.
_FAULT_PINNED_HIGH = "FAULT force sensor: {reason}, {detail}"
_ZERO_TRACKED = "zero followed a drift: {shift_n:+.3f} N ({total_n:+.3f} N since the last tare)"


#: A session whose passes were measured (core/passes.py) says how many.
_SESSION_PASSES = (
    "session {session_no} ended ({end_reason}): {duration_s:.0f} s, "
    "{contact_s:.0f} s in contact, {technique[passes]} passes, "
    "{over_episodes} over-pressure episode(s)"
)


def _template(etype: str, data: Mapping[str, Any]) -> str | None:
    """The wording for this event, where its data picks a variant (an accepted command, a
    fault with a detail)."""
    if etype == EventType.COMMAND_RESULT and data.get("ok") is True:
        return _COMMAND_OK
    if etype == EventType.SENSOR_FAULT and "detail" in data:
        known = "at_least_n" in data or data.get("reason") == ZERO_DRIFT
        return _FAULT_PINNED_HIGH if known else _FAULT_DETAIL
    if etype == EventType.CALIBRATION_CHANGED and data.get("reason") == ZERO_TRACKING:
        return _ZERO_TRACKED
    if etype == EventType.STERILIZATION_ABORTED and "detail" in data:
        return _ABORT_DETAIL
    if etype == EventType.THREAD_FAILED and data.get("restart_in_s") is None:
        return _THREAD_ONCE
    if etype == EventType.CLOCK_SYNC and data.get("synced") is not True:
        return _CLOCK_UNSYNCED
    if etype == EventType.SESSION_ENDED and isinstance(data.get("technique"), Mapping):
        one = data["technique"].get("passes") == 1
        return _SESSION_PASSES.replace("passes,", "pass,") if one else _SESSION_PASSES
    return _EVENT_TEXT.get(etype)


class _Readable(string.Formatter):
    """``{x:local}`` shows an ISO-8601 UTC stamp as local time (``Sat 5 Dec 09:02``),
    ``{x:span}`` seconds as a human span (``12 min``): times for people, never raw UTC; and
    ``{x:rest}`` why a rest is unknown, in words."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "local":
            moment = parse_utc(value)
            if moment is None:
                raise ValueError(f"not a timestamp: {value!r}")
            return local_time(moment.timestamp(), self.tz)
        if format_spec == "span":
            return format_span(float(value))
        if format_spec == "rest":
            return _REST_WHY.get(str(value), str(value))
        return str(super().format_field(value, format_spec))


def describe(event: Event, tz: tzinfo | None = None) -> str:
    """One line for a person; ``tz`` overrides the machine's zone for times (tests)."""
    return describe_data(event.type, event.data, tz)


def describe_data(etype: str, data: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """:func:`describe` for an event known only by its type name and data (one received over
    MQTT, of a type this version may not know)."""
    template = _template(etype, data)
    if template is None:
        extra = " ".join(f"{k}={v}" for k, v in data.items())
        return f"{etype} {extra}".strip()
    try:
        return _Readable(tz).format(template, **data)
    except (KeyError, ValueError, TypeError):
        return f"{etype} {dict(data)}"
