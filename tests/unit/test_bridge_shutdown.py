"""A stopping daemon whose MQTT publisher died still stops (found by the fault schedules).

The publisher thread can die (docs/ARCHITECTURE.md, "When a thread fails") and wait out its
restart back-off just as a simulation ends; the main loop that restarts it has then ended.
``MqttBridge.drain`` measured its bound on the bridge's clock, which in a simulation is the
virtual clock and no longer advances at the end: the shutdown waited for ever.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.store import Store, open_readonly


class _Client:
    """Just enough of a paho client for :class:`MqttBridge`; nothing is ever acknowledged."""

    def __init__(self) -> None:
        self.mid = 0
        self.on_connect: Any = None

    def connect_async(self, *_a: object, **_k: object) -> None: ...
    def loop_start(self) -> None: ...
    def loop_stop(self) -> None: ...
    def disconnect(self) -> None: ...

    def subscribe(self, *_a: object, **_k: object) -> tuple[int, int]:
        return (0, 1)

    def publish(self, *_a: object, **_k: object) -> SimpleNamespace:
        self.mid += 1
        return SimpleNamespace(rc=0, mid=self.mid, wait_for_publish=lambda _t: None)


def connected_bridge(tmp_path: Path, **kwargs: Any) -> MqttBridge:
    """A bridge on an empty history, connected, whose publisher thread is not running (it
    died, or was never started)."""
    db = tmp_path / "dg.db"
    Store.open(db, "dev").close()
    client = _Client()
    bridge = MqttBridge(
        MqttSettings("x", 1, "5", "c", 30, Topics("dev"), discovery=False),
        open_events=lambda: open_readonly(db),
        device_name="d",
        sw_version="0",
        client=client,  # type: ignore[arg-type]
        **kwargs,
    )
    client.on_connect(client, None, None, ReasonCode(PacketTypes.CONNACK, identifier=0))
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
