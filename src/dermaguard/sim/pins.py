"""Mock pins for the simulator: gpiozero's ``MockPin`` with a bounded history.

Every emulated device (:mod:`dermaguard.sim.hx711_pins`, :mod:`dermaguard.sim.case_pins`) builds
its pins on these, and :func:`mock_factory` makes them the default, so a simulation that runs for
hours keeps a fixed amount of pin history. The real shell (``hw/``) never imports this module.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin, PinState

#: Pin-change history kept per mock pin. Enough for a test to inspect a whole HX711 read.
STATE_HISTORY = 256


class BoundedMockPin(MockPin):  # type: ignore[misc]
    """A ``MockPin`` that keeps only its last :data:`STATE_HISTORY` state changes.

    ``MockPin`` appends every change to ``states`` forever; at 27 edges per HX711 read and 80
    reads a second that is a leak in any simulation that runs for more than a few minutes.
    """

    def clear_states(self) -> None:
        self._last_change = time.monotonic()
        self.states: deque[Any] = deque(
            [PinState(0.0, self._state)],
            maxlen=STATE_HISTORY,
        )


def mock_factory() -> MockFactory:
    """A fresh mock factory whose pins keep a bounded history."""
    return MockFactory(pin_class=BoundedMockPin)
