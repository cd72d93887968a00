"""mqtt/link.py: what paho's callbacks mean for the link a person is shown."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.mqtt.link import LinkState


def connack(name: str) -> ReasonCode:
    return ReasonCode(PacketTypes.CONNACK, name)


def disconnect(name: str) -> ReasonCode:
    return ReasonCode(PacketTypes.DISCONNECT, name)


def test_a_broker_that_goes_away_is_a_lost_link_without_empty_detail() -> None:
    link = LinkState()
    assert link.connected(connack("Success")) == ("connected", None)
    assert link.disconnected(disconnect("Unspecified error")) == ("lost", None)
    assert link.disconnected(disconnect("Server shutting down")) == (
        "lost",
        "Server shutting down",
    )


def test_the_socket_closing_after_a_refusal_keeps_the_refusal() -> None:
    link = LinkState()
    assert link.connected(connack("Not authorized")) == ("refused", "Not authorized")
    assert link.disconnected(disconnect("Unspecified error")) is None
    assert link.connected(connack("Success")) == ("connected", None)  # a later retry works


def test_our_own_disconnect_is_not_news_about_the_broker() -> None:
    link = LinkState()
    link.connected(connack("Success"))
    link.close()
    assert link.disconnected(disconnect("Normal disconnection")) is None
