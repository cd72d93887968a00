"""The one decoder of what a device publishes: ``dermaguard watch`` and ``dermaguard web`` both
read the MQTT topics through it, so a payload either view accepts fits the shipped JSON Schemas
(``dermaguard/mqtt/schemas``) and means the same in both.

Every payload is checked in two steps: against its schema (types, enums, required and unknown
keys, timestamp format), then field by field into the small frozen records below (finite
numbers, parsed times). Anything that does not fit raises :class:`Malformed` with a message that
names the key, never another exception: the network's bytes must not crash a view.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator

from dermaguard.common.timefmt import parse_utc
from dermaguard.mqtt.schema_files import load_schema
from dermaguard.mqtt.topics import CONTRACT_VERSION, OFFLINE, ONLINE, Topics

#: A contract payload is a few hundred bytes; anything this large is not one.
MAX_PAYLOAD: Final = 64 * 1024
_SUMMARY_MAX: Final = 90

#: The topics a view reads, by the short name used in messages and in :func:`decode`.
TopicName = Literal["state", "force", "event", "session/last", "availability"]


def topic_names(topics: Topics) -> dict[str, TopicName]:
    """Each topic a view reads, mapped to its short name."""
    return {
        topics.state: "state",
        topics.force: "force",
        topics.event: "event",
        topics.session_last: "session/last",
        topics.availability: "availability",
    }


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def check_schema(name: str, obj: Any) -> None:
    """Raise :class:`Malformed` naming the first key of ``obj`` that ``name``'s schema refuses."""
    error = next(iter(_validator(name).iter_errors(obj)), None)
    if error is None:
        return
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    raise Malformed(f"{where}: {_short(error.message, 80)}")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The fields of a ``…/state`` payload the view shows."""

    ts: datetime
    state: str
    zone: str | None
    force_n: float | None
    sterile: bool
    sterile_until: datetime | None
    uv_on: bool
    lid_closed: bool
    docked: bool
    case: str
    remaining_s: float | None
    session_no: int | None
    roller_id: int
    roller_uses: int
    fault: str | None
    alarm: str | None
    silenced: bool
    thread_failures: int = 0
    #: Why the device's history is unavailable (its alarm and interlocks still work).
    history_problem: str | None = None
    #: Passes so far in the open session and the force of the latest (None: unknown).
    passes: int | None = None
    pass_force_n: float | None = None
    #: The device's own history and rest rule; ``rest_known`` is False for a device that
    #: predates these keys (a view then cannot judge the rest).
    rest_known: bool = False
    last_session_no: int = 0
    last_session_ended_at: datetime | None = None
    next_allowed_at: datetime | None = None
    session_sterile_at_start: bool | None = None
    session_too_soon: bool | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """The latest force, from ``…/force`` or ``…/state`` (whichever arrived last)."""

    force_n: float | None
    zone: str | None
    received: float
    #: The device's epoch time of a ``…/force`` sample (None from a ``…/state``).
    t: float | None = None


@dataclass(frozen=True, slots=True)
class LastSession:
    """The figures of ``…/session/last`` the view shows; optional ones may be ``None``."""

    session_no: int
    ended_at: datetime
    duration_s: float
    contact_s: float
    peak_n: float | None
    mean_n: float | None
    over_episodes: int
    longest_over_s: float | None
    sterile_at_start: bool | None
    too_soon: bool | None
    roller_id: int | None
    roller_use: int | None
    end_reason: str
    #: False when the session was dated by an unsynchronised clock: the rest after it is unknown.
    clock_synced: bool = True
    #: The technique (None: not measured, as for a session from before it was).
    passes: int | None = None
    pass_force_n: float | None = None
    steadiness_cv: float | None = None


@dataclass(frozen=True, slots=True)
class EventLine:
    """One event as listed: its one-line summary is made once, when it arrives."""

    id: str
    seq: int
    type: str
    ts: datetime
    summary: str
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)


class Malformed(Exception):
    """A payload that does not fit the contract; the message says which key and why."""


_Kind = Literal["number", "integer", "string", "boolean", "timestamp"]


def _field(obj: Mapping[str, Any], key: str, kind: _Kind, *, null: bool = False) -> Any:
    """``obj[key]`` checked against ``kind`` (``null``: may be null); raises ``Malformed``."""
    if key not in obj:
        raise Malformed(f"{key} is missing")
    return _check(key, obj[key], kind, null)


def _optional(obj: Mapping[str, Any], key: str, kind: _Kind) -> Any:
    """Like :func:`_field` for a key the view can do without: missing or null gives None."""
    return _check(key, obj.get(key), kind, True)


def _check(key: str, value: Any, kind: _Kind, null: bool) -> Any:
    if value is None:
        if null:
            return None
        raise Malformed(f"{key} is null")
    ok = {
        # bool is an int in Python, never a number in JSON.
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "timestamp": isinstance(value, str),
    }[kind]
    if not ok:
        raise Malformed(f"{key} is not a {kind}: {_short(repr(value), 40)}")
    if kind == "number":
        try:
            number = float(value)
        except OverflowError:  # an integer past float's range
            number = math.inf
        if not math.isfinite(number):  # 1e999 parses as inf
            raise Malformed(f"{key} is not finite")
        return number
    if kind == "timestamp":
        try:
            moment = parse_utc(value)
        except OverflowError:  # year 1 with an offset
            moment = None
        if moment is None:
            raise Malformed(f"{key} is not a UTC timestamp: {_short(repr(value), 40)}")
        return moment
    return value


def _reject_constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def json_object(payload: bytes, schema: str | None = None) -> dict[str, Any]:
    """The payload as a JSON object of this contract version, checked against ``schema``."""
    if len(payload) > MAX_PAYLOAD:
        raise Malformed(f"{len(payload)} bytes, too large for a contract payload")
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Malformed("not JSON") from None
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    if obj.get("v") != CONTRACT_VERSION:
        raise Malformed(f"contract version {obj.get('v')!r}, this reader knows {CONTRACT_VERSION}")
    if schema is not None:
        check_schema(schema, obj)
    return obj


def parse_state(obj: Mapping[str, Any]) -> Snapshot:
    force = _field(obj, "force_n", "number", null=True)
    zone = _field(obj, "zone", "string", null=True)
    return Snapshot(
        ts=_field(obj, "ts", "timestamp"),
        state=_field(obj, "state", "string"),
        zone=None if force is None else zone,
        force_n=force,
        sterile=_field(obj, "sterile", "boolean"),
        sterile_until=_field(obj, "sterile_until", "timestamp", null=True),
        uv_on=_field(obj, "uv_on", "boolean"),
        lid_closed=_field(obj, "lid_closed", "boolean"),
        docked=_field(obj, "docked", "boolean"),
        case=_field(obj, "case", "string"),
        remaining_s=_field(obj, "remaining_s", "number", null=True),
        session_no=_field(obj, "session_no", "integer", null=True),
        roller_id=_field(obj, "roller_id", "integer"),
        roller_uses=_field(obj, "roller_uses", "integer"),
        fault=_field(obj, "fault", "string", null=True),
        alarm=_field(obj, "alarm", "string", null=True),
        silenced=_field(obj, "silenced", "boolean"),
        thread_failures=_optional(obj, "thread_failures", "integer") or 0,
        history_problem=_optional(obj, "history_problem", "string"),
        passes=_optional(obj, "passes", "integer"),
        pass_force_n=_optional(obj, "pass_force_n", "number"),
        rest_known="last_session_no" in obj,
        last_session_no=_optional(obj, "last_session_no", "integer") or 0,
        last_session_ended_at=_optional(obj, "last_session_ended_at", "timestamp"),
        next_allowed_at=_optional(obj, "next_allowed_at", "timestamp"),
        session_sterile_at_start=_optional(obj, "session_sterile_at_start", "boolean"),
        session_too_soon=_optional(obj, "session_too_soon", "boolean"),
    )


def parse_force(obj: Mapping[str, Any], now: float) -> Reading:
    t = _field(obj, "t", "number")
    force = _field(obj, "force_n", "number", null=True)
    zone = _field(obj, "zone", "string", null=True)
    return Reading(force, None if force is None else zone, now, t)


def parse_session(obj: Mapping[str, Any]) -> LastSession:
    technique = obj.get("technique")
    if technique is not None and not isinstance(technique, dict):
        raise Malformed("technique is not an object")
    technique = technique or {}
    return LastSession(
        session_no=_field(obj, "session_no", "integer"),
        ended_at=_field(obj, "ended_at", "timestamp"),
        duration_s=_field(obj, "duration_s", "number"),
        contact_s=_field(obj, "contact_s", "number"),
        peak_n=_field(obj, "peak_n", "number", null=True),
        mean_n=_optional(obj, "mean_n", "number"),
        over_episodes=_field(obj, "over_episodes", "integer"),
        longest_over_s=_optional(obj, "longest_over_s", "number"),
        sterile_at_start=_optional(obj, "sterile_at_start", "boolean"),
        too_soon=_optional(obj, "too_soon", "boolean"),
        roller_id=_optional(obj, "roller_id", "integer"),
        roller_use=_optional(obj, "roller_use", "integer"),
        end_reason=_field(obj, "end_reason", "string"),
        clock_synced=_optional(obj, "clock_synced", "boolean") is not False,
        passes=_check("technique.passes", technique.get("passes"), "integer", True),
        pass_force_n=_check(
            "technique.pass_force_n", technique.get("pass_force_n"), "number", True
        ),
        steadiness_cv=_check(
            "technique.steadiness_cv", technique.get("steadiness_cv"), "number", True
        ),
    )


def parse_event(obj: Mapping[str, Any]) -> EventLine:
    data = obj.get("data")
    if not isinstance(data, dict):
        raise Malformed("data is not an object")
    event_id = _field(obj, "id", "string")
    if not event_id:
        raise Malformed("id is empty")
    etype = _field(obj, "type", "string")
    return EventLine(
        id=event_id,
        seq=_field(obj, "seq", "integer"),
        type=etype,
        ts=_field(obj, "ts", "timestamp"),
        summary=event_summary(etype, data),
        data=data,
    )


def event_summary(etype: str, data: Mapping[str, Any]) -> str:
    """One short line for an event, worded like the daemon's own terminal output.

    The daemon's templates trust their data; here the data came over the network, so any
    failure falls back to ``key=value`` pairs rather than raising.
    """
    from dermaguard.core.words import describe_data

    text: str | None
    try:
        text = describe_data(etype, dict(data))
    except Exception:  # the network's data, the daemon's templates: never fatal here
        text = None
    if text is None or text == f"{etype} {dict(data)}":
        text = " ".join(f"{k}={_scalar(v)}" for k, v in data.items())
    elif text == etype or text.startswith(f"{etype} "):
        text = text[len(etype) :]  # no template: the type is in its own column already
    return _short(" ".join(text.split()), _SUMMARY_MAX)


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return "…"
    return str(value)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Decoded:
    """One message, decoded: ``value`` is a :class:`Snapshot`, :class:`Reading`,
    :class:`LastSession`, :class:`EventLine`, an availability word, or ``None`` when an empty
    retained message cleared the topic (or the availability is not known)."""

    name: TopicName
    value: Snapshot | Reading | LastSession | EventLine | str | None


_SCHEMA_OF: Final[Mapping[str, str]] = {
    "state": "state",
    "force": "force",
    "event": "event",
    "session/last": "session_last",
}


def decode(name: TopicName, payload: bytes, now: float) -> Decoded:
    """The message on topic ``name``, received at ``now`` (monotonic); raises :class:`Malformed`."""
    if name == "availability":
        text = payload.decode("utf-8", errors="replace").strip()
        if text not in (ONLINE, OFFLINE, ""):
            raise Malformed(f"{_short(repr(text), 30)} is neither {ONLINE} nor {OFFLINE}")
        return Decoded(name, text or None)
    if not payload and name in ("state", "session/last"):
        # An empty retained message deletes the retained one: the device's data is gone.
        return Decoded(name, None)
    obj = json_object(payload, _SCHEMA_OF[name])
    if name == "state":
        return Decoded(name, parse_state(obj))
    if name == "force":
        return Decoded(name, parse_force(obj, now))
    if name == "session/last":
        return Decoded(name, parse_session(obj))
    return Decoded(name, parse_event(obj))
