"""A stopping daemon whose MQTT publisher died still stops (found by the fault schedules).

The publisher thread can die (docs/ARCHITECTURE.md, "When a thread fails") and wait out its
restart back-off just as a simulation ends; the main loop that restarts it has then ended.
``MqttBridge.drain`` measured its bound on the bridge's clock, which in a simulation is the
virtual clock and no longer advances at the end: the shutdown waited for ever.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.store import Store
from support.fake_paho import FakeClient, fake_bridge


def connected_bridge(tmp_path: Path, **kwargs: Any) -> MqttBridge:
    """A bridge on an empty history, connected, whose publisher thread is not running (it
    died, or was never started)."""
    db = tmp_path / "dg.db"
    Store.open(db, "dev").close()
    client = FakeClient()
    bridge = fake_bridge(db, client, **kwargs)
    client.connected()
    return bridge


def test_drain_with_a_dead_publisher_and_a_stopped_clock_returns_false(tmp_path: Path) -> None:
    # a simulation's clock after its scenario ended
    bridge = connected_bridge(tmp_path, monotonic=lambda: 100.0)
    assert bridge.connected and not bridge.alive

    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(bridge.drain(0.5)), daemon=True)
    waiter.start()
    waiter.join(timeout=10.0)  # a bound for a hang, not a measure of speed
    assert not waiter.is_alive(), "drain() never returned: the shutdown would hang"
    assert answers == [False]


def test_a_restarted_publisher_drains_what_the_dead_one_left(tmp_path: Path) -> None:
    """``close_mqtt`` starts a dead publisher again before it drains (daemon/app.py)."""
    bridge = connected_bridge(tmp_path)
    assert not bridge.alive
    bridge.restart()
    try:
        assert bridge.alive
        assert bridge.drain(10.0)  # nothing stored: the running publisher is soon idle
    finally:
        bridge.close(timeout=2.0)
