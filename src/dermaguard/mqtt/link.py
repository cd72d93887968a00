"""What a subscriber's connection to the broker is, read from paho's callbacks in their order.

``watch`` and the web dashboard both show it. paho reports a refused CONNACK and then the socket
closing (as "Protocol error"); no working connection was lost then, and saying so would hide why
the broker said no. "Unspecified error" is what paho says for a broker that went away: no
detail worth showing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paho.mqtt.reasoncodes import ReasonCode

LinkStatus = Literal["connected", "refused", "lost"]
#: Disconnect reason codes that carry nothing a person can act on (success, unspecified).
_NO_DETAIL = (0, 128)


@dataclass
class LinkState:
    """Turns connect and disconnect callbacks into the status to show, or ``None`` for none."""

    refused: bool = False
    closing: bool = False

    def close(self) -> None:
        """We are disconnecting on purpose: the socket's end is ours, not news about the broker."""
        self.closing = True

    def connected(self, reason_code: ReasonCode) -> tuple[LinkStatus, str | None]:
        """A CONNACK arrived: refused (with the broker's reason) or connected."""
        self.refused = reason_code.is_failure
        return ("refused", str(reason_code)) if self.refused else ("connected", None)

    def disconnected(self, reason_code: ReasonCode) -> tuple[LinkStatus, str | None] | None:
        """The socket closed: lost, unless it closed after a refusal (keep showing that) or
        because we closed it."""
        if self.refused or self.closing:
            return None
        return "lost", None if reason_code.value in _NO_DETAIL else str(reason_code)
