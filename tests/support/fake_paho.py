"""A stand-in for a paho client, for tests of :class:`MqttBridge`'s own logic (its threads,
batches and callbacks) where a real broker would only add timing: it records what is published
and acknowledges nothing by itself. Tests that need MQTT itself use ``support.broker``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.store import open_readonly

#: Settings for a bridge on a fake client: nothing ever connects to this address.
SETTINGS = MqttSettings(
    "broker.lan", 1883, "5", "dermaguard-dev", 30, Topics("dev"), discovery=False
)


class FakeClient:
    """Just enough of ``paho.mqtt.client.Client`` for the bridge. ``publish_s``: how long each
    publish takes (a busy host)."""

    def __init__(self, publish_s: float = 0.0) -> None:
        self.publish_s = publish_s
        self.lock = threading.Lock()
        self.mid = 0
        #: Message ids of the events published (topic ``…/event``), in order.
        self.events: list[int] = []
        self.on_connect: Any = None
        self.on_connect_fail: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.on_message: Any = None

    def connect_async(self, *_a: object, **_k: object) -> None: ...
    def loop_start(self) -> None: ...
    def loop_stop(self) -> None: ...
    def disconnect(self) -> None: ...

    def subscribe(self, *_a: object, **_k: object) -> tuple[int, int]:
        return (0, 1)

    def publish(self, topic: str, *_a: object, **_k: object) -> SimpleNamespace:
        if self.publish_s:
            time.sleep(self.publish_s)
        with self.lock:
            self.mid += 1
            if topic.endswith("/event"):
                self.events.append(self.mid)
            return SimpleNamespace(rc=0, mid=self.mid, wait_for_publish=lambda _t: None)

    # -- what paho's network thread would call -----------------------------------------------

    def connected(self) -> None:
        self.on_connect(self, None, None, ReasonCode(PacketTypes.CONNACK, identifier=0))

    def dropped(self) -> None:
        lost = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
        self.on_disconnect(self, None, None, lost, None)

    def ack(self, mid: int) -> None:
        self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, identifier=0), None)


def fake_bridge(db: Path, client: FakeClient, **kwargs: Any) -> MqttBridge:
    """A bridge on ``client`` over the history in ``db`` (``kwargs``: the bridge's own)."""
    return MqttBridge(
        SETTINGS,
        open_events=lambda: open_readonly(db),
        device_name="d",
        sw_version="0",
        client=client,  # type: ignore[arg-type]
        **kwargs,
    )
