"""Two devices with one device_id on a real broker: each connection takes over the other's, and
each daemon says why in its log instead of only "lost the connection" at every retry."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.store import Store, open_readonly
from support.broker import Broker

BOUND_S = 60.0  # a bound against a hang: the reconnect back-off starts at 1 s


def device(tmp_path: Path, broker: Broker, name: str) -> MqttBridge:
    db = tmp_path / f"{name}.db"
    Store.open(db, "bathroom").close()
    client_id, topics = "dermaguard-bathroom", Topics("bathroom")
    settings = MqttSettings(broker.host, broker.port, "5", client_id, 30, topics, discovery=False)
    bridge = MqttBridge(
        settings, open_events=lambda: open_readonly(db), device_name=name, sw_version="0"
    )
    bridge.bind(put_command=lambda _c: None, mark_delivered=lambda _s: None)
    return bridge


def test_two_devices_with_one_client_id_are_told_so(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = device(tmp_path, broker, "first"), device(tmp_path, broker, "second")
    with caplog.at_level(logging.WARNING, logger="dermaguard.mqtt.bridge"):
        first.start()
        second.start()
        try:
            deadline = time.monotonic() + BOUND_S
            while not any(
                "same client id (dermaguard-bathroom)" in r.getMessage() for r in caplog.records
            ):
                assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
                time.sleep(0.05)
        finally:
            first.close()
            second.close()
