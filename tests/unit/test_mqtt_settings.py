"""Broker settings from the config: credentials' precedence, clear errors, no leaked password."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermaguard.config.load import parse_config
from dermaguard.mqtt.settings import (
    PASSWORD_ENV,
    MqttSettings,
    MqttSettingsError,
    settings_from_config,
)


def settings(mqtt: dict[str, object], env: dict[str, str] | None = None) -> MqttSettings:
    return settings_from_config(parse_config({"mqtt": mqtt}), env or {})


def test_defaults_name_the_client_after_the_device() -> None:
    s = settings_from_config(parse_config({"device_id": "bath"}), {})
    assert (s.host, s.port, s.version, s.client_id) == ("localhost", 1883, "5", "dermaguard-bath")
    assert s.topics.base == "dermaguard/bath" and s.username is None and s.password is None


def test_password_precedence_env_then_file_then_inline(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored second line\n")
    assert settings({"username": "u", "password": "inline"}).password == "inline"
    assert settings({"username": "u", "password_file": str(secret)}).password == "from-file"
    env = {PASSWORD_ENV: "from-env"}
    assert settings({"username": "u", "password_file": str(secret)}, env).password == "from-env"


def test_a_password_is_never_in_the_settings_repr() -> None:
    s = settings({"username": "u", "password": "hunter2"})
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"password": "x"}, "mqtt.username: null is not allowed: a password is set"),
        (
            {"username": "u", "password_file": "/nonexistent/pw"},
            "mqtt.password_file: /nonexistent/pw",
        ),
        ({"tls": {"enabled": True, "ca_file": "/nonexistent/ca.pem"}}, "mqtt.tls.ca_file"),
    ],
)
def test_unusable_settings_stop_the_start_with_the_key_named(
    mqtt: dict[str, object], message: str
) -> None:
    with pytest.raises(MqttSettingsError, match="^" + message.replace(".", r"\.")):
        settings(mqtt)


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(MqttSettingsError, match="the first line is empty"):
        settings({"username": "u", "password_file": str(empty)})


def test_config_errors_never_echo_a_password() -> None:
    from dermaguard.config.load import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config({"mqtt": {"password": 123456789}})
    assert "123456789" not in str(err.value) and "mqtt.password" in str(err.value)
