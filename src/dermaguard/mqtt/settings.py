"""The broker connection as the client needs it, resolved from the config at start-up.

Resolving early means a missing password file or certificate stops the daemon with a clear
message before it runs, instead of failing quietly in the network thread later. The password
is held here only; ``repr`` hides it, so it cannot reach a log by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dermaguard.config.load import Config
from dermaguard.mqtt.topics import Topics

PASSWORD_ENV = "DERMAGUARD_MQTT_PASSWORD"


class MqttSettingsError(Exception):
    """The MQTT settings cannot be used as given; the message names the key."""


@dataclass(frozen=True)
class TlsFiles:
    ca_file: str | None
    cert_file: str | None
    key_file: str | None


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    version: str
    client_id: str
    keepalive_s: int
    topics: Topics
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None
    discovery: bool = True
    telemetry_hz: float = 10.0
    commands_per_min: int = 30

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def settings_from_config(config: Config, environ: Mapping[str, str] | None = None) -> MqttSettings:
    m = config.mqtt
    env = os.environ if environ is None else environ
    password = _password(m.password, m.password_file, env)
    if password is not None and m.username is None:
        raise MqttSettingsError(
            "mqtt.username: null is not allowed: a password is set (mqtt.password, "
            f"mqtt.password_file or ${PASSWORD_ENV}), so a user name is needed too"
        )
    tls: TlsFiles | None = None
    if m.tls.enabled:
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(m.tls, key)
            if value is not None and not Path(value).expanduser().is_file():
                raise MqttSettingsError(f"mqtt.tls.{key}: {value} does not exist or is no file")
        tls = TlsFiles(
            *(
                None if v is None else str(Path(v).expanduser())
                for v in (m.tls.ca_file, m.tls.cert_file, m.tls.key_file)
            )
        )
    return MqttSettings(
        host=m.host,
        port=m.port,
        version=m.version,
        client_id=m.client_id or f"dermaguard-{config.device_id}",
        keepalive_s=m.keepalive_s,
        topics=Topics(config.device_id, m.base_topic, m.discovery_prefix),
        username=m.username,
        password=password,
        tls=tls,
        discovery=m.discovery,
        telemetry_hz=m.telemetry_hz,
        commands_per_min=m.commands_per_min,
    )


def _password(inline: str | None, file: str | None, env: Mapping[str, str]) -> str | None:
    """$DERMAGUARD_MQTT_PASSWORD, else the first line of password_file, else password."""
    from_env = env.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if file is not None:
        path = Path(file).expanduser()
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise MqttSettingsError(f"mqtt.password_file: {file}: {reason}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise MqttSettingsError(f"mqtt.password_file: {file}: the first line is empty")
        return lines[0]
    return inline
