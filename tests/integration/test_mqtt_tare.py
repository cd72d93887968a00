"""The ``tare`` command through the daemon on the emulated load cell: with about 1 N on the
roller it is refused with a reply saying what to do, and the calibration is left alone
(docs/CARE.md, "Calibration checks"). The dashboard's Tare button sends this same command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import daemon
from support.broker import Broker, Publisher, Received, Recorder
from support.daemon import DEVICE

pytestmark = [pytest.mark.subprocess, pytest.mark.broker]

BASE = f"dermaguard/{DEVICE}"
EVENT = f"{BASE}/event"

#: The roller rests docked with 0.95 N on it (the light zone) for the whole run.
LOADED = """
name: loaded_in_the_dock
description: 0.95 N resting on the docked roller.
duration_s: 300
sensor:
  noise_counts: 300
initial: {lid: open, dock: in}
force:
  - {t: 0, n: 0.95}
  - {t: 300, n: 0.95}
"""


def answer(messages: list[Received], request_id: str) -> dict[str, object] | None:
    """The ``command_result`` answering ``request_id``, if it came."""
    for x in messages:
        if x.topic == EVENT and x.json()["type"] == "command_result":
            data: dict[str, object] = x.json()["data"]
            if data.get("request_id") == request_id:
                return data
    return None


def test_a_tare_with_about_one_newton_on_the_roller_is_refused_through_mqtt(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.write_scenario(tmp_path / "loaded.yaml", LOADED)
    state = tmp_path / "state"
    with Recorder(broker, [f"{BASE}/#"]) as rec:
        proc = daemon.start(state, scenario, port=broker.port, speed=1)
        rec.wait_for(
            lambda m: any(x.topic == f"{BASE}/state" and x.json()["zone"] == "light" for x in m),
            timeout=60,
        )
        cal_path = state / "dermaguard" / "simulation" / "calibration.json"
        before = cal_path.read_bytes()
        reply: dict[str, object] = {}
        with Publisher(broker) as pub:
            # Just after the start the last second may not hold enough readings yet: ask again.
            for attempt in range(10):
                request = f"t-{attempt}"
                pub.publish(f"{BASE}/cmd/tare", {"request_id": request})
                got = rec.wait_for(lambda m, r=request: answer(m, r) is not None, timeout=60)
                reply = answer(got, request) or {}
                if reply.get("error") != "no recent readings from the load cell":
                    break
        rc, _, err = daemon.stop(proc)
    assert rc == 0, err
    assert reply["command"] == "tare" and reply["ok"] is False
    assert "take everything off the roller" in str(reply["error"])
    assert cal_path.read_bytes() == before
    assert json.loads(before)["scale_n_per_count"] > 0
