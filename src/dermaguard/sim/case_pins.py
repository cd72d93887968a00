"""The sterilizing case on gpiozero mock pins: lid and dock switches, UV-C LED, UV sensor.

The real shell (:mod:`dermaguard.hw.case_io`) opens these pins exactly as on a Pi. Here the
switches behave like switches (closed: the wired level, whatever the pull; open: the pull
decides), and the UV sensor watches the UV LED pin: it reports light when the LED is driven on
*and* the lid microswitch S1b, in series with the LED supply as in ``hardware/``, is closed,
unless the scenario made the sensor fail dark.

The lid has the two channels of ``hardware/``: a reed switch on ``lid`` (closed by the lid's
magnet) and S1b's normally-closed contact on ``lid_contact`` (through an optocoupler: low while
the contact is closed, i.e. while the lever is released). :meth:`SimCase.set_lid` moves them
together, as a lid does; :meth:`SimCase.press_lever` (a finger on the lever, a jammed lever),
:meth:`SimCase.weld_s1b` and :meth:`SimCase.short_uv_driver` (a MOSFET failed short) are the
single faults docs/SAFETY.md's H30 and H31 are about.

Create a :class:`SimCase` *before* the gpiozero devices on its pins: ``MockFactory.pin()`` returns
the existing pin object, so whoever asks first decides the pin class.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dermaguard.common.clock import Clock
from dermaguard.core.case import SterilizeRequested
from dermaguard.hw.case_io import CaseWiring
from dermaguard.sim.pins import BoundedMockPin
from dermaguard.sim.scenario import CaseEvent, CaseInitial

log = logging.getLogger(__name__)

_PULL_LEVEL = {"up": True, "down": False}


class SwitchPin(BoundedMockPin):
    """An input wired to a switch: closed, the line sits at ``closed_level`` (GND: ``False``)
    whatever the pull; open, the pull sets it (floating keeps the last level)."""

    closed_level = False
    switch_closed = False

    def _set_pull(self, value: str) -> None:
        if not self.switch_closed:
            super()._set_pull(value)
            return
        self._pull = value
        self._drive(self.closed_level)

    def set_switch(self, closed: bool) -> None:
        """Close or open the contact; the level follows at once if the pin is an input."""
        self.switch_closed = closed
        if self.function != "input":
            return
        if closed:
            self._drive(self.closed_level)
        elif self.pull in _PULL_LEVEL:
            self._drive(_PULL_LEVEL[self.pull])

    def _drive(self, level: bool) -> None:
        if level:
            self.drive_high()
        else:
            self.drive_low()


class SensorPin(BoundedMockPin):
    """The sensor's push-pull output: a pull resistor cannot change the level it drives."""

    def _set_pull(self, value: str) -> None:
        self._pull = value


class UvLedPin(BoundedMockPin):
    """The UV LED output: tells a listener whenever its level or function changes."""

    listener: Callable[[], None] | None = None

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            self._notify()
        return changed

    def _set_function(self, value: str) -> None:
        super()._set_function(value)
        self._notify()

    def _notify(self) -> None:
        listener = self.listener
        if listener is not None:
            listener()


class SimCase:
    """Plays a scenario's case events on the mock pins and emulates the UV sensor."""

    def __init__(
        self,
        factory: Any,
        clock: Clock,
        wiring: CaseWiring,
        *,
        initial: CaseInitial | None = None,
        events: Sequence[CaseEvent] = (),
    ) -> None:
        self.clock = clock
        self.wiring = wiring
        self.events = tuple(sorted(events, key=lambda e: e.t))
        self.uv_active_high = wiring.uv_active_high
        self.sensor_active_high = wiring.uv_sensor_active_high
        #: Receives the scenario's sterilize requests (the runtime queues them for the engine).
        self.request_sink: Callable[[SterilizeRequested], None] | None = None
        self.requests_dropped = 0
        self._lock = threading.RLock()
        self._next = 0
        self._sensor_dark = False
        self._requests = 0
        self.lever_pressed = False  # S1b's lever is held down (by the lid, or by a fault)
        self.s1b_welded = False  # S1b's normally-open contact is welded shut
        self.uv_driver_shorted = False  # the UV LED's MOSFET failed short
        self.uv_led_dead = False  # the LED itself failed: it emits nothing, however driven
        #: Told every time the light may have changed (with the case's lock held): a test's
        #: record of when UV-C really shone, whatever the pins and the sensor say.
        self.light_watch: Callable[[bool], None] | None = None

        self.lid = _claim(factory, wiring.lid, SwitchPin)
        contact = wiring.lid_contact
        self.lid_contact = _claim(factory, contact, SwitchPin) if contact is not None else None
        self.dock = _claim(factory, wiring.dock, SwitchPin)
        self.uv_led = _claim(factory, wiring.uv_led, UvLedPin)
        sensor = wiring.uv_sensor
        self.sensor = _claim(factory, sensor, SensorPin) if sensor is not None else None
        self.lid.closed_level = not wiring.lid_active_low
        self.dock.closed_level = not wiring.dock_active_low
        start = initial if initial is not None else CaseInitial()
        self.set_lid(start.lid_closed)
        self.dock.set_switch(start.docked)
        self.uv_led.listener = self._update_sensor
        self._update_sensor()

    # -- state ----------------------------------------------------------------------------

    @property
    def uv_driven(self) -> bool:
        """The UV LED pin is an output at its active level."""
        pin = self.uv_led
        return pin.function == "output" and bool(pin.state) == self.uv_active_high

    @property
    def s1b_closed(self) -> bool:
        """S1b's normally-open contact, in the UV-C supply, is closed."""
        return self.lever_pressed or self.s1b_welded

    @property
    def light(self) -> bool:
        """UV-C actually shines: switched on (or its driver shorted), powered through S1b, and
        the LED not dead."""
        return (
            (self.uv_driven or self.uv_driver_shorted) and self.s1b_closed and not self.uv_led_dead
        )

    # -- the lid and its faults -----------------------------------------------------------

    def set_lid(self, closed: bool) -> None:
        """Close or open the lid: the magnet works the reed switch, the lid the lever."""
        self.lid.set_switch(closed)
        self.press_lever(closed)

    def press_lever(self, pressed: bool) -> None:
        """Hold S1b's lever down, or let it go, without moving the lid or its magnet."""
        self.lever_pressed = pressed
        self._update_contacts()

    def weld_s1b(self) -> None:
        """S1b's normally-open contact welds shut: the supply stays closed, and the moving
        contact can no longer reach the normally-closed one."""
        self.s1b_welded = True
        self._update_contacts()

    def share_lock(self, lock: threading.RLock) -> None:
        """Take ``lock`` as the case's own: a recorder whose pin changes reach the case (and
        the case's reach its pins) must take both in one order, so they are one."""
        self._lock = lock

    def kill_uv_led(self, dead: bool = True) -> None:
        """The UV-C LED fails (burnt out, or a loose connector: ``dead=False`` is the contact
        made again): driven or not, it stays dark."""
        self.uv_led_dead = dead
        self._update_sensor()

    def short_uv_driver(self) -> None:
        """The UV LED's MOSFET fails short: UV shines whenever S1b is closed."""
        self.uv_driver_shorted = True
        self._update_sensor()

    def _update_contacts(self) -> None:
        if self.lid_contact is not None:
            self.lid_contact.set_switch(not self.s1b_closed)
        self._update_sensor()  # S1b powers or cuts the LED

    @property
    def sensor_lit(self) -> bool:
        """What the emulated sensor reports."""
        with self._lock:
            return self.light and not self._sensor_dark

    # -- scenario -------------------------------------------------------------------------

    def apply(self, t: float) -> None:
        """Play every event due by scenario time ``t`` that has not been played yet."""
        while self._next < len(self.events) and self.events[self._next].t <= t:
            event = self.events[self._next]
            self._next += 1
            self._play(event)

    def _play(self, event: CaseEvent) -> None:
        log.info("simulated case: %s %s at %.2f s", event.kind, event.value, event.t)
        if event.kind == "lid":
            self.set_lid(event.value == "closed")
        elif event.kind == "dock":
            self.dock.set_switch(event.value == "in")
        elif event.kind == "uv_sensor":
            with self._lock:
                self._sensor_dark = event.value == "dark"
            self._update_sensor()
        else:
            self._request()

    def _request(self) -> None:
        self._requests += 1
        sink = self.request_sink
        if sink is None:
            self.requests_dropped += 1
            log.warning("simulated sterilize request dropped: nothing receives requests")
            return
        sink(SterilizeRequested(self.clock.monotonic(), f"scenario-{self._requests}"))

    def _update_sensor(self) -> None:
        watch = self.light_watch
        if watch is not None:
            with self._lock:
                watch(self.light)
        sensor = self.sensor
        if sensor is None:
            return
        # Held across the write so two threads (the scenario's and the engine's UV command)
        # cannot leave a stale level; the sensor's callbacks only queue inputs, never lock.
        with self._lock:
            level = self.sensor_lit == self.sensor_active_high
            if sensor.function != "input":
                return
            if level:
                sensor.drive_high()
            else:
                sensor.drive_low()

    def close(self) -> None:
        """Detach from the UV LED pin."""
        self.uv_led.listener = None


def _claim(factory: Any, pin: int, cls: type[BoundedMockPin]) -> Any:
    obj = factory.pin(pin, pin_class=cls)
    if not isinstance(obj, cls):
        raise RuntimeError(
            f"pin {obj!r} already exists as {type(obj).__name__}: "
            "create the SimCase before any gpiozero device on its pins"
        )
    return obj
