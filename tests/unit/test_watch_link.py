"""How the watcher reports its connection, fed the callbacks paho makes, in paho's order."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.config.load import ZonesConfig, parse_config
from dermaguard.mqtt.settings import settings_from_config
from dermaguard.ui.watch.model import WatchModel
from dermaguard.ui.watch.subscriber import _drain, _Inbox, _Subscriber

SETTINGS = settings_from_config(parse_config({}), {})
CONNECTED = mqtt.ConnectFlags(session_present=False)
DROPPED = mqtt.DisconnectFlags(is_disconnect_packet_from_server=False)
PROTOCOL_ERROR = ReasonCode(PacketTypes.DISCONNECT, "Protocol error")


def link_after(sub: _Subscriber, inbox: _Inbox) -> WatchModel:
    """Everything queued so far, applied in one go, as a busy view would."""
    model = WatchModel(SETTINGS.topics, zones=ZonesConfig(), address=SETTINGS.address)
    _drain(inbox, model, 0.0)
    return model


def test_a_refusal_stays_the_reason_when_the_broker_then_closes_the_socket() -> None:
    """A refused CONNACK is followed by the socket closing; both can reach the view in one
    batch, and the view must still say why the broker said no, not 'Protocol error'."""
    inbox: _Inbox = queue.SimpleQueue()
    sub = _Subscriber(SETTINGS, inbox, connect_timeout=1.0)
    refused = ReasonCode(PacketTypes.CONNACK, "Not authorized")
    sub._on_connect(sub.client, None, CONNECTED, refused, None)
    sub._on_disconnect(sub.client, None, DROPPED, PROTOCOL_ERROR, None)
    model = link_after(sub, inbox)
    assert model.link == "refused"
    assert model.link_detail == "Not authorized"


def test_a_working_connection_that_drops_is_reported_lost() -> None:
    inbox: _Inbox = queue.SimpleQueue()
    sub = _Subscriber(SETTINGS, inbox, connect_timeout=1.0)
    refused = ReasonCode(PacketTypes.CONNACK, "Not authorized")
    sub._on_connect(sub.client, None, CONNECTED, refused, None)
    sub._on_connect(sub.client, None, CONNECTED, ReasonCode(PacketTypes.CONNACK, "Success"), None)
    sub._on_disconnect(sub.client, None, DROPPED, PROTOCOL_ERROR, None)
    model = link_after(sub, inbox)
    assert model.link == "lost"
    assert model.link_detail == "Protocol error"
