"""JSON payloads of contract version 1 (docs/MQTT.md); ``schemas/`` holds a JSON Schema for each.

Compact UTF-8 JSON, times in UTC ISO-8601 with milliseconds (``…Z``) except the live force's
``t`` (epoch seconds, for plotting). ``null`` means unknown: a force is never reported as 0
when it is not known (S7).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dermaguard.common.timefmt import iso_utc
from dermaguard.core.events import DeviceState, ForceSample
from dermaguard.mqtt.topics import CONTRACT_VERSION


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def event_envelope(
    *, seq: int, event_id: str, device: str, etype: str, ts: str, data: Mapping[str, Any]
) -> bytes:
    """The ``…/event`` payload; consumers de-duplicate by ``id`` and order by ``seq``."""
    return dumps(
        {
            "v": CONTRACT_VERSION,
            "id": event_id,
            "seq": seq,
            "device": device,
            "type": etype,
            "ts": ts,
            "data": dict(data),
        }
    )


def newtons(force: float | None) -> float | None:
    """A force as published: to the millinewton, and never ``-0.0`` (a tare's noise rounds to
    it; Home Assistant and people read it as a negative force)."""
    return None if force is None else round(force, 3) + 0.0


def _iso_or_none(wall: float | None) -> str | None:
    return None if wall is None else iso_utc(wall)


def state_payload(state: DeviceState, *, history_problem: str | None = None) -> bytes:
    """The retained ``…/state`` snapshot; ``history_problem`` says why the history is
    unavailable (the device still runs its alarm and interlocks; events wait in memory)."""
    return dumps(
        {
            "v": CONTRACT_VERSION,
            "ts": iso_utc(state.wall),
            "state": state.state,
            "zone": state.zone,
            "force_n": newtons(state.force_n),
            "sterile": state.sterile,
            "sterile_until": (
                None if state.sterile_until_wall is None else iso_utc(state.sterile_until_wall)
            ),
            "uv_on": state.uv_on,
            "lid_closed": state.lid_closed,
            "docked": state.docked,
            "case": state.case,
            "remaining_s": None if state.remaining_s is None else round(state.remaining_s, 1),
            "session_no": state.session_no,
            "roller_id": state.roller_id,
            "roller_uses": state.roller_uses,
            "fault": state.fault,
            "alarm": state.alarm,
            "silenced": state.silenced,
            "thread_failures": state.thread_failures,
            "passes": state.passes,
            "pass_force_n": None if state.pass_force_n is None else round(state.pass_force_n, 3),
            "last_session_no": state.last_session_no,
            "last_session_ended_at": _iso_or_none(state.last_ended_wall),
            "next_allowed_at": _iso_or_none(state.next_allowed_wall),
            "session_sterile_at_start": state.session_sterile_at_start,
            "session_too_soon": state.session_too_soon,
            "case_fault": state.case_fault,
            "history": "available" if history_problem is None else "unavailable",
            "history_problem": history_problem,
        }
    )


def force_payload(sample: ForceSample, wall: float) -> bytes:
    """A live ``…/force`` message (QoS 0, not retained)."""
    return dumps(
        {
            "v": CONTRACT_VERSION,
            "t": round(wall, 3),
            "force_n": newtons(sample.force_n),
            "zone": sample.zone,
        }
    )


def session_last_payload(summary: Mapping[str, Any]) -> bytes:
    """The retained ``…/session/last``: the summary a ``session_ended`` event carries.

    A summary from before passes were measured has no ``technique``: it is sent as ``null``,
    unknown, so the payload always has every key.
    """
    return dumps({"v": CONTRACT_VERSION, **summary, "technique": summary.get("technique")})
