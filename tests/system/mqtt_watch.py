"""The subscriber outside the VM: every event the broker delivered to it with QoS 1."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Received:
    id: str
    seq: int
    type: str
    boot: int
    at: float


@dataclass
class Watcher:
    """Subscribed to ``dermaguard/+/event`` at QoS 1 through the forwarded broker port."""

    port: int
    boot: int
    events: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None
    #: When (host monotonic) the broker first granted the subscription: only events published
    #: after it reach this subscriber (its session is new on a broker that was just booted).
    subscribed_at: float | None = None

    def start(self) -> None:
        # A lasting session: what is published while the test restarts Mosquitto (the outbox
        # phase) waits for this subscriber instead of going to nobody (Debian's Mosquitto keeps
        # sessions across a clean restart). A power cut loses the broker's sessions: each boot
        # has its own client id.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"system-test-{self.boot}", clean_session=False
        )
        client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe("dermaguard/+/event", qos=1)
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 2)
        client.connect_async("127.0.0.1", self.port, keepalive=10)
        client.loop_start()
        self.client = client

    def _on_subscribe(self, *_args: object) -> None:
        with self.lock:
            if self.subscribed_at is None:
                self.subscribed_at = time.monotonic()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
            item = Received(str(data["id"]), int(data["seq"]), str(data["type"]), self.boot, 0.0)
        except (ValueError, KeyError, TypeError):
            return
        item.at = time.monotonic()
        with self.lock:
            self.events.append(item)

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
            self.client = None

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.events)

    def seen(self, after: int = 0) -> str:
        """What arrived from index ``after`` on, by type, and when the subscription began:
        the words for a phase whose event never came."""
        with self.lock:
            counts = Counter(e.type for e in self.events[after:])
            since = self.subscribed_at
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "nothing"
        if since is None:
            return f"{kinds}; the subscription was never granted"
        return f"{kinds}; subscribed {time.monotonic() - since:.0f} s ago"

    def wait_for(self, types: set[str], after: int, timeout: float) -> Received | None:
        """The first event of one of ``types`` from index ``after`` on, or None at timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.snapshot()[after:]:
                if item.type in types:
                    return item
            time.sleep(0.1)
        return None
