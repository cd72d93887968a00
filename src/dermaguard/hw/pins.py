"""GPIO backend selection: one gpiozero pin factory per process.

gpiozero keeps a process-wide default in the class attribute ``Device.pin_factory``; every device
built without an explicit factory uses it. The drivers here take the factory as an argument and
give it to every device they build. The default is still set (the daemon's assembly says why),
and only through :func:`install_pin_factory`: setting it from several places makes it easy to mix
a mock and a real backend in one process. The simulator's mock pins live in
:mod:`dermaguard.sim.pins`; the real shell never loads them.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from gpiozero import Device
from gpiozero.exc import NativePinFactoryFallback

log = logging.getLogger(__name__)


class PinFactoryUnavailable(RuntimeError):
    """No real GPIO backend works here (not a Raspberry Pi, or no access to its GPIO)."""


def install_pin_factory(factory: Any) -> None:
    """Make ``factory`` the process-wide default for gpiozero devices (``None`` to unset)."""
    Device.pin_factory = factory
    log.debug("gpiozero pin factory: %r", factory)


def real_pin_factory() -> Any:
    """Return gpiozero's default real backend (lgpio, RPi.GPIO, pigpio or native).

    gpiozero warns once per backend it cannot load; on a laptop that is four warnings before
    the failure. They are captured and logged at debug level, and the failure is turned into
    one message a person can act on.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # The same lookup gpiozero does on first device construction, without the side
            # effect of assigning Device.pin_factory (install_pin_factory does that).
            factory = Device._default_pin_factory()
        except Exception as exc:
            _log_fallbacks(caught)
            raise PinFactoryUnavailable(
                "No GPIO backend could be loaded: this does not look like a Raspberry Pi with "
                "GPIO access (is lgpio installed and is the user in the 'gpio' group?). "
                "Run with --simulate to use simulated hardware instead."
            ) from exc
    _log_fallbacks(caught)
    log.info("GPIO backend: %s", type(factory).__name__)
    return factory


def _log_fallbacks(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        # Falling back to the experimental native backend matters on a Pi; the rest is noise.
        native = issubclass(w.category, NativePinFactoryFallback)
        log.log(logging.WARNING if native else logging.DEBUG, "gpiozero: %s", w.message)
