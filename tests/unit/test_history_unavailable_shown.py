"""The device's word that its history is unavailable reaches the dashboard: the state payload,
the decoder every viewer uses, the live stream the page reads, and the page itself."""

from __future__ import annotations

import json
from pathlib import Path

from dermaguard.core.events import DeviceState
from dermaguard.mqtt.decode import parse_state
from dermaguard.mqtt.payloads import state_payload
from dermaguard.ui.web.live import snapshot_json

STATIC = Path(__file__).resolve().parents[2] / "src" / "dermaguard" / "ui" / "web" / "static"
PROBLEM = "cannot open the history database /var/lib/dermaguard/dermaguard.db: disk I/O error"


def _device() -> DeviceState:
    return DeviceState(
        t=1.0,
        wall=1_790_000_000.0,
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


def test_the_live_stream_carries_why_the_history_is_unavailable() -> None:
    down = parse_state(json.loads(state_payload(_device(), history_problem=PROBLEM)))
    assert down.history_problem == PROBLEM
    shown = snapshot_json(down)
    assert shown is not None and shown["history_problem"] == PROBLEM
    up = parse_state(json.loads(state_payload(_device())))
    assert up.history_problem is None
    shown = snapshot_json(up)
    assert shown is not None and shown["history_problem"] is None


def test_a_state_from_before_the_field_existed_still_reads_as_available() -> None:
    old = json.loads(state_payload(_device()))
    del old["history"], old["history_problem"]
    assert parse_state(old).history_problem is None


def test_the_page_has_a_line_for_it_apart_from_the_alarm() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    assert '<div id="history-down" class="note" role="status" hidden></div>' in page
    assert '$("history-down")' in script and "st.history_problem" in script
    assert "renderHistoryDown();" in script  # rendered with everything else
