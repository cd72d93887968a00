"""The shared decoder (``dermaguard.mqtt.decode``): what the views accept is what the schemas say.

The hand-written field checks alone would take these payloads; the shipped JSON Schemas refuse
them, and the refusal names the key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from dermaguard.mqtt.decode import Malformed, Snapshot, decode
from dermaguard.mqtt.topics import Topics
from dermaguard.ui.watch.model import WatchModel

TS = "2026-11-25T10:00:00.123Z"


def state(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "v": 1, "ts": TS, "state": "in_use", "zone": "ok", "force_n": 2.345, "sterile": False,
        "sterile_until": None, "uv_on": False, "lid_closed": False, "docked": False,
        "case": "open", "remaining_s": None, "session_no": 7, "roller_id": 2, "roller_uses": 4,
        "fault": None, "alarm": None, "silenced": False,
    }  # fmt: skip
    return out | changes


def event(etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1, "id": str(uuid.uuid4()), "seq": 1, "device": "bathroom", "type": etype,
        "ts": TS, "data": data,
    }  # fmt: skip


def session_last(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "v": 1, "session_no": 6, "started_at": TS, "ended_at": TS, "duration_s": 41.0,
        "contact_s": 33.79, "zone_s": {"light": 0.75, "ok": 22.05, "high": 3.47, "over": 7.51},
        "peak_n": 5.997, "mean_n": 2.857,
        "over_episodes": 2, "longest_over_s": 5.48, "sterile_at_start": True, "cycle_id": 1,
        "rest_interval_s": None, "too_soon": False, "roller_id": 2, "roller_use": 4,
        "end_reason": "docked",
    }  # fmt: skip
    return out | changes


def _bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("name", "payload", "key"),
    [
        ("state", state(state="flying"), "state"),
        ("state", state(case="ajar"), "case"),
        ("state", state(roller_uses=-1), "roller_uses"),
        ("state", state() | {"colour": "red"}, "payload"),
        ("state", state(ts="2026-11-25T10:00:00+01:00"), "ts"),
        ("event", event("over_pressure", {}) | {"id": "not-a-uuid"}, "id"),
        ("event", event("party", {}), "type"),
        ("event", event("command_result", {"ok": True}), "data"),
        ("session/last", session_last(end_reason=7), "end_reason"),
        ("force", {"v": 1, "t": 1_795_655_433.5, "force_n": 1.0, "zone": "meh"}, "zone"),
    ],
)
def test_the_schema_refuses_what_the_field_checks_would_take(
    name: Any, payload: dict[str, Any], key: str
) -> None:
    with pytest.raises(Malformed) as caught:
        decode(name, _bytes(payload), 0.0)
    assert str(caught.value).startswith(f"{key}:" if key != "payload" else "payload")


def test_a_valid_state_decodes_to_a_snapshot() -> None:
    decoded = decode("state", _bytes(state()), 5.0)
    assert isinstance(decoded.value, Snapshot)
    assert decoded.value.force_n == pytest.approx(2.345)


def test_watch_ignores_and_counts_a_payload_outside_the_schema() -> None:
    topics = Topics("bathroom")
    m = WatchModel(topics)
    assert m.ingest(topics.state, _bytes(state(state="flying")), 1.0) is False
    assert m.malformed == 1 and m.snapshot is None
    assert m.last_malformed is not None and m.last_malformed.startswith("state: state:")


def test_a_command_result_keeps_its_data_for_the_dashboard() -> None:
    data = {"command": "sterilize", "ok": False, "error": "the lid is open: close it"}
    decoded = decode("event", _bytes(event("command_result", data)), 0.0)
    assert decoded.value is not None and not isinstance(decoded.value, str)
    assert getattr(decoded.value, "data", None) == data
