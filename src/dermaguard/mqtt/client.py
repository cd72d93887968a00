"""A paho-mqtt 2.x client configured from :class:`MqttSettings`.

Protocol MQTT 5 (or 3.1.1), last will ``offline`` retained on ``…/availability``, credentials,
TLS and reconnect back-off. The caller sets the callbacks and starts the network loop.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import OFFLINE

#: Reconnect back-off, seconds: doubles from the first to the last.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: QoS 1 messages paho keeps on the wire at once (the outbox window bounds the rest).
MAX_INFLIGHT = 100


def connection_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A client with the configured protocol, credentials, TLS and back-off, and no identity.

    Sessions are clean: the device's outbox is durable on our side, so a broker session would
    only replay stale commands (a command must be fresh to be acted on), and a watcher keeps
    nothing between connections.
    """
    v5 = settings.version == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls is not None:
        client.tls_set(
            ca_certs=settings.tls.ca_file,
            certfile=settings.tls.cert_file,
            keyfile=settings.tls.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def make_client(settings: MqttSettings) -> mqtt.Client:
    """The device's client: its own id, and the last will ``offline`` on availability."""
    client = connection_client(settings, settings.client_id)
    client.will_set(settings.topics.availability, OFFLINE, qos=1, retain=True)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    return client
