"""A simulation never poses as the real device: its own device id in topics, client id and
discovery, against a real broker that also serves the real device. And a run without MQTT keeps
its events local: they are never published later as if they were happening then."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dermaguard.config.load import simulation_device_id
from support import daemon
from support.broker import Broker, Publisher, Recorder, fetch_retained

pytestmark = [pytest.mark.subprocess, pytest.mark.broker]

REAL = "dermaguard"  # the default device_id: the real device on the same broker
SIM = simulation_device_id(REAL)

#: What a real device leaves retained on its broker (the bytes are the point, not the schema).
REAL_RETAINED = {
    f"dermaguard/{REAL}/availability": b"online",
    f"dermaguard/{REAL}/state": b'{"v":1,"state":"docked","zone":"none","force_n":0.0}',
    f"dermaguard/{REAL}/session/last": b'{"v":1,"session_no":41,"peak_n":3.25}',
    f"homeassistant/device/{REAL}/config": b'{"dev":{"ids":["dermaguard_dermaguard"]}}',
}

SHORT = """
name: short
description: a light touch and a push over the limit
duration_s: 4
force:
  - {t: 0, n: 0}
  - {t: 1, n: 2.0}
  - {t: 1.5, n: 5.0}
  - {t: 2, n: 2.0}
  - {t: 3, n: 0}
  - {t: 4, n: 0}
"""


def real_device_topics(retained: dict[str, bytes]) -> dict[str, bytes]:
    return {
        t: p
        for t, p in retained.items()
        if t.startswith(f"dermaguard/{REAL}/") or t == f"homeassistant/device/{REAL}/config"
    }


def retained_now(broker: Broker) -> dict[str, bytes]:
    return {m.topic: m.payload for m in fetch_retained(broker, "#")}


def test_a_simulation_leaves_the_real_devices_retained_messages_byte_identical(
    broker: Broker, tmp_path: Path
) -> None:
    with Publisher(broker) as pub:
        for topic, payload in REAL_RETAINED.items():
            pub.publish(topic, payload, retain=True)
    assert real_device_topics(retained_now(broker)) == REAL_RETAINED
    scenario = daemon.write_scenario(tmp_path / "short.yaml", SHORT)

    # The real device is connected, as itself, while the demo runs.
    with Recorder(broker, f"dermaguard/{REAL}/#", client_id=f"dermaguard-{REAL}") as real:
        proc = daemon.start(tmp_path / "state", scenario, port=broker.port, speed=10)
        rc, out, err = daemon.finish(proc)
        assert rc == 0, err
        assert "ALARM over-pressure" in out
        # Never taken over by a client with its id, and nothing new on its topics.
        assert real.connected and real.disconnects == 0
        assert all(m.retain for m in real.messages()), real.messages()

    retained = retained_now(broker)
    assert real_device_topics(retained) == REAL_RETAINED
    # The simulation has its own topics, client id and Home Assistant device, named as one.
    assert retained[f"dermaguard/{SIM}/availability"] == b"offline"
    assert json.loads(retained[f"dermaguard/{SIM}/state"])["state"] == "idle"
    discovery = json.loads(retained[f"homeassistant/device/{SIM}/config"])
    assert discovery["dev"]["ids"] == [f"dermaguard_{SIM}"]
    assert "simulation" in discovery["dev"]["name"] and "simulation" in discovery["dev"]["mdl"]
    assert all(c["unique_id"].startswith(f"{SIM}_") for c in discovery["cmps"].values())
    assert re.search(rf"New client connected from \S+ as dermaguard-{SIM} ", broker.log_text())
    events = daemon.stored_events(tmp_path / "state")
    assert events and {e["device"] for e in events} == {SIM} == {daemon.DEVICE}
    # `watch --simulation` finds it.
    args = ["watch", "--simulation", "--once", "--mqtt", f"127.0.0.1:{broker.port}"]
    watch = subprocess.run(
        [sys.executable, "-m", "dermaguard", *args],
        capture_output=True,
        text=True,
        env=daemon.env_for(tmp_path / "state"),
        timeout=60,
        check=False,
    )
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout.startswith(f"dermaguard/{SIM} ")


def test_events_of_a_run_without_mqtt_are_never_published_later(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = daemon.write_scenario(tmp_path / "short.yaml", SHORT)
    state = tmp_path / "state"
    rc, _, err = daemon.finish(daemon.start(state, scenario, port=None, speed=10))
    assert rc == 0, err
    offline = daemon.stored_events(state)
    assert "over_pressure" in [e["type"] for e in offline]

    with Recorder(broker, f"dermaguard/{SIM}/event") as rec:
        rc, _, err = daemon.finish(daemon.start(state, scenario, port=broker.port, speed=10))
        assert rc == 0, err
        stored = daemon.stored_events(state)
        online = [e for e in stored if e["seq"] > offline[-1]["seq"]]
        rec.wait_for(lambda m: len(m) >= len(online))
        published = {body["id"] for body in rec.json()}
    assert published == {e["id"] for e in online}
    assert all(e["delivered"] for e in online)
    # The first run's events are still there, in the history, marked as kept local.
    assert [e for e in stored if e["seq"] <= offline[-1]["seq"]] == offline
    assert all(e["local_only"] and not e["delivered"] for e in offline)
