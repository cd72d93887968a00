"""Incoming commands on ``…/cmd/<name>``: validation and rate limiting, before the engine.

Everything here runs on the MQTT network thread and must never raise: a malformed command
becomes a :class:`~dermaguard.core.events.Command` with ``error`` set, which the engine answers
with a ``command_result`` event, so the sender always learns what was wrong. Only a flood past
the reply budget is dropped unanswered (and counted), so a misbehaving client cannot fill the
event log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dermaguard.config.messages import show
from dermaguard.config.sections.pressure import SILENCE_MAX_S
from dermaguard.core.events import Command, CommandName
from dermaguard.mqtt.topics import COMMANDS, Topics

#: Largest accepted payload (bytes).
MAX_PAYLOAD = 1024
#: ``request_id``: a string of 1 to this many characters.
MAX_REQUEST_ID = 64
#: Longest command name echoed back in an answer (characters).
MAX_NAME = 64
#: Longest silence a command may ask for (seconds): the config's upper bound for
#: alarm.silence_s, whose configured value caps it further (in the engine).
MAX_SILENCE_S = float(SILENCE_MAX_S)
#: Refusals answered per minute beyond the command budget; past this they are only counted.
REPLIES_PER_MIN = 60
#: Commands taken at once before the per-minute rate applies (mqtt.commands_per_min, when lower).
COMMAND_BURST = 10

#: The answer to a retained command (it may be old; it would run again at every start).
RETAINED = (
    "not run: a retained message (a command acts only when it is fresh); publish it without "
    "the retain flag, and clear the retained one by publishing an empty retained message"
)

#: Extra fields each command accepts, besides ``request_id`` (none but ``silence``'s).
ARGS: Mapping[str, tuple[str, ...]] = {
    name: ("duration_s",) if name == CommandName.SILENCE else () for name in CommandName
}


@dataclass
class TokenBucket:
    """``rate_per_min`` tokens a minute, at most ``burst`` saved up."""

    rate_per_min: float
    burst: float
    tokens: float = field(default=-1.0)
    last: float | None = None

    def take(self, now: float) -> bool:
        if self.last is None:
            self.tokens = self.burst
        else:
            elapsed = max(0.0, now - self.last)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_min / 60.0)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class CommandParser:
    """Turns (topic, payload) into a :class:`Command` for the engine, or ``None`` (dropped)."""

    def __init__(self, topics: Topics, commands_per_min: int) -> None:
        self.topics = topics
        self.limit = commands_per_min
        self._commands = TokenBucket(commands_per_min, burst=min(commands_per_min, COMMAND_BURST))
        self._replies = TokenBucket(REPLIES_PER_MIN, burst=REPLIES_PER_MIN)
        #: Commands dropped without a reply (a flood past both budgets).
        self.dropped = 0

    def parse(
        self, topic: str, payload: bytes, t: float, *, retained: bool = False
    ) -> Command | None:
        """``retained``: the broker delivered a stored message (MQTT's retain flag), not a live one.

        A retained command was sent some time ago, perhaps before the last start: acting on it
        would run it again at every start (docs/MQTT.md: a command acts only when it is fresh).
        It is refused with an answer, never cleared: the retained message is not the daemon's.
        """
        name = self.topics.command_name(topic)
        # The answer must name something: a message on the bare .../cmd/ topic has no name.
        # Echoed in the answer, so bounded: a 60 KB topic must not become a 60 KB event.
        shown_name = (
            (name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…") if name else "(none)"
        )
        if not self._commands.take(t):
            if not self._replies.take(t):
                self.dropped += 1
                return None
            burst = min(self.limit, COMMAND_BURST)
            error = (
                f"rate limit: {burst} commands at once, then one every "
                f"{60 / self.limit:g} s ({self.limit} a minute); try again shortly"
            )
            return Command(t, shown_name, _request_id(payload), error=error)
        if retained:
            return Command(t, shown_name, _request_id(payload), error=RETAINED)
        request_id: str | None = None
        try:
            if name not in COMMANDS:
                known = ", ".join(COMMANDS)
                raise _Refused(f"unknown command {show(name)}: known commands are {known}")
            args = _payload_object(payload)
            request_id = _check_request_id(args)
            _check_args(name, args)
        except _Refused as exc:
            if request_id is None:
                request_id = _request_id(payload)
            return Command(t, shown_name, request_id, error=str(exc))
        rest = {k: v for k, v in args.items() if k != "request_id"}
        return Command(t, name, request_id, rest)


class _Refused(Exception):
    pass


def _payload_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise _Refused(f"payload too large: {len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("payload is not UTF-8 text") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _Refused(
            f"payload is not JSON ({_first_line(exc)}): send {{}} or a JSON object"
        ) from None
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        raise _Refused(f"payload must be a JSON object, got {_json_kind(kind)}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _json_kind(py_kind: str) -> str:
    return {
        "list": "an array",
        "str": "a string",
        "int": "a number",
        "float": "a number",
        "bool": "a boolean",
        "null": "null",
    }.get(py_kind, py_kind)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__


def _check_request_id(args: Mapping[str, Any]) -> str | None:
    if "request_id" not in args:
        return None
    rid = args["request_id"]
    if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_REQUEST_ID or not rid.isprintable():
        raise _Refused(
            f"request_id {show(rid)} is not allowed: "
            f"must be a string of 1 to {MAX_REQUEST_ID} printable characters"
        )
    return rid


def _check_args(name: str, args: Mapping[str, Any]) -> None:
    allowed = ARGS[name]
    for key in args:
        if key != "request_id" and key not in allowed:
            extra = ", ".join(("request_id", *allowed))
            raise _Refused(f"{name}: unknown field {show(key)} (allowed: {extra})")
    if "duration_s" in args:
        value = args["duration_s"]
        # Compare before any float conversion: an int too large for a float (10**400) must be
        # refused, not raise OverflowError.
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value))
            and 1 <= value <= MAX_SILENCE_S
        )
        if not ok:
            raise _Refused(
                f"{CommandName.SILENCE}: duration_s {show(value)} is not allowed: "
                f"must be a number of seconds from 1 to {MAX_SILENCE_S:g}"
            )


def _request_id(payload: bytes) -> str | None:
    """Best effort: echo a valid request_id even when the rest of the command is refused."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        value = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
        return _check_request_id(value) if isinstance(value, dict) else None
    except (ValueError, RecursionError, _Refused):
        return None
