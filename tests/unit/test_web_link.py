"""How the dashboard reports its broker connection, fed paho's callbacks in paho's order."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.config.load import ZonesConfig, parse_config
from dermaguard.mqtt.settings import settings_from_config
from dermaguard.ui.web.live import Hub

SETTINGS = settings_from_config(parse_config({}), {})
CONNECTED = mqtt.ConnectFlags(session_present=False)
DROPPED = mqtt.DisconnectFlags(is_disconnect_packet_from_server=False)
PROTOCOL_ERROR = ReasonCode(PacketTypes.DISCONNECT, "Protocol error")
REFUSED = ReasonCode(PacketTypes.CONNACK, "Not authorized")


def link_after(*calls: tuple[str, ReasonCode]) -> tuple[str, str | None]:
    """Feed the hub's paho callbacks, then let the event loop apply what they handed it."""

    async def run() -> tuple[str, str | None]:
        hub = Hub(SETTINGS, ZonesConfig())
        hub._loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)  # never connected: subscribe is a no-op
        for kind, code in calls:
            if kind == "connack":
                hub._on_connect(client, None, CONNECTED, code, None)
            else:
                hub._on_disconnect(client, None, DROPPED, code, None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return hub.link, hub.link_detail

    return asyncio.run(run())


def test_a_refusal_stays_the_reason_when_the_broker_then_closes_the_socket() -> None:
    """A wrong password must read as refused, not as a broker that went away."""
    assert link_after(("connack", REFUSED), ("disconnect", PROTOCOL_ERROR)) == (
        "refused",
        "Not authorized",
    )


def test_a_working_connection_that_drops_is_reported_lost() -> None:
    success = ReasonCode(PacketTypes.CONNACK, "Success")
    calls = (("connack", REFUSED), ("connack", success), ("disconnect", PROTOCOL_ERROR))
    assert link_after(*calls) == ("lost", "Protocol error")
