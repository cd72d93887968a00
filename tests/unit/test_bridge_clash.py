"""A broker that keeps dropping the connection right after accepting it is, most likely,
letting another client with the same client id take over (a second device with this one's
device_id): the bridge says so once, with the remedy, and not for drops of long connections."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.store import Store
from support.fake_paho import FakeClient, fake_bridge

CLASH = "another client is probably connected with the same client id"


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def bridge(tmp_path: Path) -> tuple[MqttBridge, FakeClient, _Clock]:
    db = tmp_path / "dg.db"
    Store.open(db, "dev").close()
    client, clock = FakeClient(), _Clock()
    b = fake_bridge(db, client, real_monotonic=clock)
    return b, client, clock


def connection(client: FakeClient, clock: _Clock, lasting_s: float) -> None:
    client.connected()
    clock.t += lasting_s
    client.dropped()
    clock.t += 1.0  # the reconnect back-off


def clash_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if CLASH in r.getMessage()]


def test_three_short_connections_in_a_row_name_the_client_id_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b, client, clock = bridge(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dermaguard.mqtt.bridge"):
        connection(client, clock, 1.2)
        connection(client, clock, 0.8)
        assert clash_warnings(caplog) == []
        connection(client, clock, 4.9)
        (said,) = clash_warnings(caplog)
        assert "(dermaguard-dev)" in said and "device_id" in said and "3 times" in said
        for _ in range(5):  # once, not at every drop
            connection(client, clock, 0.5)
        assert len(clash_warnings(caplog)) == 1
    assert b.connects == 8


def test_a_long_connection_between_short_ones_starts_the_count_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, client, clock = bridge(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dermaguard.mqtt.bridge"):
        for lasting in (1.0, 1.0, 5.0, 1.0, 1.0, 600.0, 2.0, 2.0):
            connection(client, clock, lasting)
        assert clash_warnings(caplog) == []
        connection(client, clock, 2.0)
        assert len(clash_warnings(caplog)) == 1
