"""The emulated HX711's two pins as the Pi sees them: DOUT, an input the chip drives, and PD_SCK,
an output whose every change the chip hears (:mod:`dermaguard.sim.hx711_chip`).

While bits are being clocked out, DOUT's level changes at once, but gpiozero's edge callbacks for
it run after PD_SCK falls at the end of the read. On a Pi, lgpio reports edges from its own
thread, which cannot run Python while the reader holds the GIL; running them inside the driver's
PD_SCK write instead would about double every clock-high phase, and with it the chance that a
host pause powers the chip down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dermaguard.sim.pins import BoundedMockPin


class DataPin(BoundedMockPin):
    """DOUT as the Pi sees it: an input driven push-pull by the chip.

    A pull resistor cannot overpower a driven line, so setting the pull (gpiozero sets it to
    floating when a device opens the pin) is recorded but never changes the level.

    :meth:`shift` changes the level without running edge callbacks; :meth:`flush` (and any
    ``drive_*``) reports the level reached since, once.
    """

    _unreported = False

    def _set_pull(self, value: str) -> None:
        self._pull = value

    def shift(self, high: bool) -> None:
        """Put a data bit on the line now; its edge is reported by the next :meth:`flush`."""
        if self._change_state(high):
            self._unreported = True

    def flush(self) -> None:
        """Report the current level to gpiozero if it changed without a report."""
        if self._unreported:
            self._unreported = False
            edge = "rising" if self._state else "falling"
            if self._edges in ("both", edge) and self._when_changed is not None:
                self._call_when_changed()

    def drive_high(self) -> None:
        self._drive(True)

    def drive_low(self) -> None:
        self._drive(False)

    def _drive(self, high: bool) -> None:
        if self._change_state(high):
            self._unreported = True
        self.flush()


class ClockPin(BoundedMockPin):
    """PD_SCK: tells the attached chip about every level change."""

    listener: Callable[[bool], None] | None = None

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        listener = self.listener
        if changed and listener is not None:
            listener(bool(value))
        return changed
