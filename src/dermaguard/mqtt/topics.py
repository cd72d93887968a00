"""The MQTT topic layout of contract version 1 (docs/MQTT.md), in one place.

Every topic the daemon publishes or listens on is built here, so the publisher, the command
handler, Home Assistant discovery, ``dermaguard watch`` and the tests can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from dermaguard.core.events import CommandName

#: Version of the payload contract, carried as ``v`` in every JSON payload.
CONTRACT_VERSION = 1

#: Commands a device accepts on ``<base>/cmd/<name>``: the core's :class:`CommandName`.
COMMANDS: tuple[CommandName, ...] = tuple(CommandName)

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topics of one device: ``<prefix>/<device_id>/...`` and its Home Assistant discovery."""

    device_id: str
    prefix: str = "dermaguard"
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def force(self) -> str:
        return f"{self.base}/force"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def session_last(self) -> str:
        return f"{self.base}/session/last"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def cmd_filter(self) -> str:
        """Subscription filter for every command (unknown names are answered, not ignored)."""
        return f"{self.base}/cmd/#"

    def command_name(self, topic: str) -> str | None:
        """The ``<name>`` part of a command topic (may be unknown or nested); ``None`` when
        the topic is not under this device's ``cmd/``."""
        head = f"{self.base}/cmd/"
        return topic[len(head) :] if topic.startswith(head) else None

    @property
    def discovery(self) -> str:
        """Home Assistant device-based discovery: one retained config for the whole device."""
        return f"{self.discovery_prefix}/device/{self.device_id}/config"

    @property
    def ha_status(self) -> str:
        """Home Assistant announces ``online`` here when it (re)starts."""
        return f"{self.discovery_prefix}/status"
