"""The JSON Schemas (draft 2020-12) of the MQTT contract, shipped as package data.

They live in ``dermaguard/mqtt/schemas/*.json`` so that tests, the views (``dermaguard watch``
and ``dermaguard web``, through :mod:`dermaguard.mqtt.decode`) and anyone consuming the topics
can check payloads against one written contract. Loading needs only the standard library; the
decoder validates with ``jsonschema``; the daemon's publishing path never imports it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Final

#: Every schema shipped, by name (the file is ``<name>.json``).
SCHEMA_NAMES: Final[tuple[str, ...]] = (
    "state",
    "force",
    "event",
    "session_last",
    "command",
    "discovery",
)


@cache
def _text(name: str) -> str:
    return resources.files("dermaguard.mqtt").joinpath("schemas", f"{name}.json").read_text("utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (one of :data:`SCHEMA_NAMES`), as a fresh dict the caller may change.

    Only known names are accepted, so a name from outside can never reach another file.
    """
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    schema: dict[str, Any] = json.loads(_text(name))
    return schema


def command_schema(command: str) -> dict[str, Any]:
    """The exact payload schema of one command (``command.json``'s ``$defs/<command>``).

    The topic, not the payload, names the command, so ``command.json`` itself only says what
    any command may carry; this narrows it to what ``command`` takes.
    """
    root = load_schema("command")
    defs: dict[str, Any] = root["$defs"]
    if command not in defs or command in ("request_id", "no_arguments"):
        raise ValueError(f"no payload schema for command {command!r}")
    return {"$schema": root["$schema"], "$defs": defs, "$ref": f"#/$defs/{command}"}
