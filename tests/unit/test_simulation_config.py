"""A simulation goes by its own device id and MQTT client id, whatever the config says."""

from __future__ import annotations

import pytest

from dermaguard.config.load import parse_config, simulation_config
from dermaguard.mqtt.discovery import discovery_config
from dermaguard.mqtt.settings import settings_from_config


@pytest.mark.parametrize(
    ("given", "device", "client"),
    [
        ({}, "dermaguard-sim", "dermaguard-dermaguard-sim"),
        ({"device_id": "bath"}, "bath-sim", "dermaguard-bath-sim"),
        ({"mqtt": {"client_id": "kitchen-pi"}}, "dermaguard-sim", "kitchen-pi-sim"),
        (
            {"device_id": "d" * 64, "mqtt": {"client_id": "c" * 64}},
            "d" * 60 + "-sim",
            "c" * 60 + "-sim",
        ),
    ],
)
def test_topics_client_id_and_records_use_the_simulation_id(
    given: dict[str, object], device: str, client: str
) -> None:
    real = settings_from_config(parse_config(given), {})
    sim = settings_from_config(simulation_config(parse_config(given)), {})
    assert sim.topics.base == f"dermaguard/{device}"
    assert sim.topics.discovery == f"homeassistant/device/{device}/config"
    assert sim.client_id == client != real.client_id
    assert not {sim.topics.state, sim.topics.availability, sim.topics.discovery} & {
        real.topics.state,
        real.topics.availability,
        real.topics.discovery,
    }


def test_the_simulations_discovery_is_a_device_of_its_own() -> None:
    real = settings_from_config(parse_config({}), {}).topics
    sim = settings_from_config(simulation_config(parse_config({})), {}).topics
    a = discovery_config(real, device_name="dermaguard dermaguard", sw_version="1")
    b = discovery_config(sim, device_name="dermaguard dermaguard-sim", sw_version="1")
    assert a["dev"]["ids"] != b["dev"]["ids"]
    unique = {c["unique_id"] for c in a["cmps"].values()}
    assert not unique & {c["unique_id"] for c in b["cmps"].values()}
