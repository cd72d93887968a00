"""The network side: the MQTT broker and its topics, and the local web dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dermaguard.config.fields import NON_EMPTY, meta
from dermaguard.config.messages import join_path, not_allowed

MqttVersion = Literal["5", "3.1.1"]
_TOPIC_LEVEL = r"^[^#+/\x00]+(/[^#+/\x00]+)*$"
_TOPIC_DOC = "topic levels separated by /, without + or #"


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker; with no ca_file the system's trusted CAs are used."""

    enabled: bool = field(default=False, metadata=meta(doc="Connect with TLS."))
    ca_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="CA certificate(s) (PEM) to trust; null: the system's CAs.",
        ),
    )
    cert_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY, pattern_doc="a non-empty path", doc="Client certificate (PEM)."
        ),
    )
    key_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY, pattern_doc="a non-empty path", doc="Client certificate's key."
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A client certificate needs its key, and a key its certificate."""
        if (self.cert_file is None) != (self.key_file is None):
            given = "cert_file" if self.cert_file is not None else "key_file"
            missing = "key_file" if given == "cert_file" else "cert_file"
            value = getattr(self, given)
            requirement = f"needs {join_path(path, missing)} too"
            return [not_allowed(join_path(path, given), value, requirement)]
        return []


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker, the topics (docs/MQTT.md) and Home Assistant discovery."""

    enabled: bool = field(
        default=True, metadata=meta(doc="Publish to a broker; the local alarm never needs it.")
    )
    host: str = field(
        default="localhost",
        metadata=meta(pattern=r"^[^\s/]+$", pattern_doc="a host name or address", doc="Broker."),
    )
    port: int = field(default=1883, metadata=meta(min=1, max=65535, doc="Broker port."))
    version: MqttVersion = field(
        default="5", metadata=meta(doc='MQTT protocol version: "5" or "3.1.1" (quote it).')
    )
    client_id: str | None = field(
        default=None,
        metadata=meta(
            pattern=r"^[0-9A-Za-z_.-]{1,64}$",
            pattern_doc="1 to 64 of A-Z a-z 0-9 _ . -",
            doc="MQTT client id; null: dermaguard-<device_id>.",
        ),
    )
    keepalive_s: int = field(
        default=30, metadata=meta(min=5, max=3600, doc="Keepalive: how fast a dead link shows.")
    )
    username: str | None = field(
        default=None,
        metadata=meta(pattern=NON_EMPTY, pattern_doc="a non-empty name", doc="User name."),
    )
    password: str | None = field(
        default=None,
        metadata=meta(
            doc="Password; prefer password_file or $DERMAGUARD_MQTT_PASSWORD. Never logged.",
            secret=True,
        ),
    )
    password_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="File whose first line is the password (e.g. a systemd credential).",
        ),
    )
    tls: TlsConfig = field(default_factory=TlsConfig, metadata=meta(doc="TLS to the broker."))
    base_topic: str = field(
        default="dermaguard",
        metadata=meta(
            pattern=_TOPIC_LEVEL,
            pattern_doc=_TOPIC_DOC,
            doc="Topics are <base_topic>/<device_id>/...",
        ),
    )
    discovery: bool = field(
        default=True, metadata=meta(doc="Announce the device to Home Assistant.")
    )
    discovery_prefix: str = field(
        default="homeassistant",
        metadata=meta(
            pattern=_TOPIC_LEVEL, pattern_doc=_TOPIC_DOC, doc="Home Assistant's discovery prefix."
        ),
    )
    telemetry_hz: float = field(
        default=10.0,
        metadata=meta(min=1, max=80, doc="Rate of live force messages while in use."),
    )
    commands_per_min: int = field(
        default=30,
        metadata=meta(
            min=1,
            max=600,
            doc="Commands accepted per minute after a burst of up to 10; more are refused.",
        ),
    )

    def _check(self, path: str) -> list[str]:
        if self.password is not None and self.password_file is not None:
            requirement = f"give either it or {join_path(path, 'password')}, not both"
            return [not_allowed(join_path(path, "password_file"), self.password_file, requirement)]
        return []


@dataclass(frozen=True)
class WebConfig:
    """``dermaguard web``: the local dashboard, a process apart from the daemon."""

    listen: str = field(
        default="0.0.0.0",
        metadata=meta(
            pattern=r"^[^\s/]+$",
            pattern_doc="an address to listen on (0.0.0.0: every interface, 127.0.0.1: this Pi)",
            doc="Address the dashboard listens on.",
        ),
    )
    port: int = field(default=8080, metadata=meta(min=1, max=65535, doc="Dashboard port."))
    tls_cert_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Certificate chain (PEM) to serve HTTPS; null: plain HTTP on the home network.",
        ),
    )
    tls_key_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY, pattern_doc="a non-empty path", doc="The certificate's key (PEM)."
        ),
    )
    token_file: str | None = field(
        default=None,
        metadata=meta(
            pattern=NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Access token (made at first start, mode 0600); null: web-token in state_dir.",
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A certificate needs its key, and a key its certificate."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given = "tls_cert_file" if self.tls_cert_file is not None else "tls_key_file"
            missing = "tls_key_file" if given == "tls_cert_file" else "tls_cert_file"
            requirement = f"needs {join_path(path, missing)} too"
            return [not_allowed(join_path(path, given), getattr(self, given), requirement)]
        return []
