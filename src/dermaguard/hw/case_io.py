"""The sterilizing case's hardware: lid and dock switches, the UV-C LED, an optional UV sensor.

The engine decides when UV shines; this shell only applies its command, and adds the software
defences that must not depend on the engine thread being alive or its queue being empty:

* S2: the lid-open callback switches UV off itself, *before* it queues ``LidChanged``. The lid
  has two software channels (docs/SAFETY.md, H30): the reed switch on ``lid`` and, when wired,
  the microswitch's normally-closed contact on ``lid_contact`` (``LidContactChanged``); either
  one reading open switches UV off the same way.
* S11: :meth:`CaseIO.set_uv` refuses to switch on while either lid channel reads open.
* S4: a timer forces UV off after the cap and queues ``UvFault(t, 'cap_reached')``, whatever the
  engine believes. The cap is measured on the clock (virtual in simulation), the timer only
  says when to look.
* H17 (docs/SAFETY.md): the engine learns what the pin really did. Every change of the driven
  level is queued as ``UvOutput``, a refused "on" as ``UvRefused`` and a trip (an exception in
  some thread) as ``UvLockedOut``: a cycle counts only the UV time reported here.
* S3: the output is created off (``initial_value=False``); the runtime must still call
  :meth:`CaseIO.force_off` first thing at start-up, before any other device or thread, and pass
  :meth:`CaseIO.lock_out` to :func:`install_uv_failsafe` so exit paths switch UV off too.
  ``firmware/config.txt`` holds the pin low from power-on until then, and the lid microswitch
  in series with the LED supply (``hardware/``) keeps UV dark with the lid open regardless.

Switch wiring is fail-safe: a switch closes to its active level against the opposite pull, so a
broken wire reads "lid open" / "not docked", and a sensor that is unplugged reads "dark".

Debouncing is asymmetric on both lid channels: opening acts and is reported at once (a bounce can
only switch UV off, never on), while closing is reported only once the channel has read closed
for ``debounce_s``, so a bouncing lid never starts and aborts a cycle. The dock and the sensor use
gpiozero's ``bounce_time``.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from dermaguard.common.clock import Clock
from dermaguard.core.case import (
    CaseSignal,
    DockChanged,
    LidChanged,
    LidContactChanged,
    UvFault,
    UvSensed,
)
from dermaguard.core.events import UvLockedOut, UvOutput, UvRefused

log = logging.getLogger(__name__)

#: How long :meth:`CaseIO.force_off` waits for the state lock after the pin is already off.
_FORCE_OFF_LOCK_S = 0.5
#: Shortest real wait before the cap guard looks at the clock again (a stalled simulation).
_CAP_RECHECK_MIN_S = 0.01


@dataclass(frozen=True, slots=True)
class CaseWiring:
    """How the case is wired: BCM pins and active levels, as in the config.

    :class:`CaseIO` opens these pins and the simulator's case (``sim/case_pins.py``) emulates the
    same ones, so both read the one description. No defaults: the config schema holds them
    (``daemon/app.py: case_wiring`` builds this from a config). Only the UV sensor's level is
    not configurable: the supported sensor boards drive their output high in UV light.
    """

    lid: int
    dock: int
    uv_led: int
    uv_sensor: int | None
    lid_active_low: bool
    dock_active_low: bool
    uv_active_high: bool
    uv_sensor_active_high: bool = True
    #: The lid microswitch's NC contact through an optocoupler: low while the lid is open (the
    #: contact closed), high through its pull-up while the lid is shut. ``None``: not wired.
    lid_contact: int | None = None


@dataclass(slots=True)
class _LidChannel:
    """One software channel of the lid and what was last reported of it."""

    device: Any
    closed_when_active: bool
    signal: Callable[[float, bool], CaseSignal]
    reported_closed: bool = False
    settle_timer: threading.Timer | None = field(default=None)

    @property
    def closed(self) -> bool:
        return bool(self.device.is_active) == self.closed_when_active


class CaseIO:
    """gpiozero devices of the case; ``put`` receives the inputs for the engine's queue."""

    def __init__(
        self,
        put: Callable[[CaseSignal], None],
        clock: Clock,
        wiring: CaseWiring,
        *,
        cap_s: float,
        debounce_s: float,
        pin_factory: Any = None,
    ) -> None:
        """Create the UV output first (off), then the inputs; ``cap_s`` is in clock seconds."""
        if not cap_s > 0:
            raise ValueError(f"cap_s must be > 0, got {cap_s}")
        if debounce_s < 0:
            raise ValueError(f"debounce_s must be >= 0, got {debounce_s}")
        self._put = put
        self.clock = clock
        self.wiring = wiring
        self.cap_s = cap_s
        self.debounce_s = debounce_s
        self._lock = threading.RLock()
        self._locked_out = False
        self._tripped = False  # a trip: no UV until the engine has said "off"
        self._report_lock = threading.RLock()
        self._reported_on = False  # the level last queued as UvOutput
        self._cap_timer: threading.Timer | None = None
        self._on_since = 0.0  # clock time UV last went on
        self._cap_latched = False  # the cap tripped: no UV until the engine has said "off"
        self._channels: list[_LidChannel] = []
        self._devices: list[Any] = []
        bounce = debounce_s if debounce_s > 0 else None
        try:
            self._uv = self._own(
                DigitalOutputDevice(
                    wiring.uv_led,
                    active_high=wiring.uv_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            )
            # Switches as plain inputs: gpiozero's Button adds a hold-detection thread that
            # nothing here uses and that makes close() wait up to its hold time. The lid is
            # debounced here (see the module docstring), not by gpiozero.
            self._lid = self._own(
                DigitalInputDevice(
                    wiring.lid, pull_up=wiring.lid_active_low, pin_factory=pin_factory
                )
            )
            self._dock = self._own(
                DigitalInputDevice(
                    wiring.dock,
                    pull_up=wiring.dock_active_low,
                    bounce_time=bounce,
                    pin_factory=pin_factory,
                )
            )
            self._contact: DigitalInputDevice | None = None
            if wiring.lid_contact is not None:
                # Active (low) while the NC contact is closed, i.e. while the lid is open.
                self._contact = self._own(
                    DigitalInputDevice(wiring.lid_contact, pull_up=True, pin_factory=pin_factory)
                )
            self._sensor: DigitalInputDevice | None = None
            if wiring.uv_sensor is not None:
                self._sensor = self._own(
                    DigitalInputDevice(
                        wiring.uv_sensor,
                        pull_up=not wiring.uv_sensor_active_high,
                        bounce_time=bounce,
                        pin_factory=pin_factory,
                    )
                )
        except Exception:
            self.close()
            raise
        self._channels.append(_LidChannel(self._lid, True, LidChanged))
        if self._contact is not None:
            self._channels.append(_LidChannel(self._contact, False, LidContactChanged))
        for channel in self._channels:
            channel.reported_closed = channel.closed
            opened, closed = self._opener(channel), self._closer(channel)
            if channel.closed_when_active:
                channel.device.when_deactivated, channel.device.when_activated = opened, closed
            else:
                channel.device.when_activated, channel.device.when_deactivated = opened, closed
        self._dock.when_activated = lambda: self._put(DockChanged(self.clock.monotonic(), True))
        self._dock.when_deactivated = lambda: self._put(DockChanged(self.clock.monotonic(), False))
        if self._sensor is not None:
            self._sensor.when_activated = lambda: self._put(UvSensed(self.clock.monotonic(), True))
            self._sensor.when_deactivated = lambda: self._put(
                UvSensed(self.clock.monotonic(), False)
            )

    def set_sink(self, put: Callable[[CaseSignal], None]) -> None:
        """Send inputs to ``put`` from now on.

        The UV output must exist (off) before anything else (S3), which is before the runtime
        and its queue exist; the runtime connects itself here, then queues
        :meth:`initial_inputs` so nothing that happened in between is missed.
        """
        self._put = put

    def _own(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    # -- state ----------------------------------------------------------------------------

    @property
    def lid_closed(self) -> bool:
        """Whether every lid channel reads closed now (not debounced)."""
        return all(channel.closed for channel in self._channels)

    @property
    def lid_contact_shut(self) -> bool | None:
        """What the microswitch's NC contact says now (``None``: not wired)."""
        return None if self._contact is None else not self._contact.is_active

    @property
    def lid_reed_closed(self) -> bool:
        """What the reed switch says now."""
        return bool(self._lid.is_active)

    @property
    def docked(self) -> bool:
        return bool(self._dock.is_active)

    @property
    def uv_on(self) -> bool:
        """Whether the UV output is driven on now."""
        return bool(self._uv.value)

    @property
    def uv_lit(self) -> bool | None:
        """What the UV sensor reads (``None``: no sensor)."""
        return None if self._sensor is None else bool(self._sensor.is_active)

    @property
    def has_sensor(self) -> bool:
        return self._sensor is not None

    def initial_inputs(self) -> list[CaseSignal]:
        """The switch and sensor levels now, for the engine to start from.

        Edges only report changes; the runtime queues these once at start-up so the engine does
        not assume a lid or dock state it never saw.
        """
        t = self.clock.monotonic()
        with self._lock:
            out: list[CaseSignal] = []
            for channel in self._channels:
                channel.reported_closed = channel.closed
                out.append(channel.signal(t, channel.reported_closed))
            out.append(DockChanged(t, self.docked))
        lit = self.uv_lit
        if lit is not None:
            out.append(UvSensed(t, lit))
        return out

    # -- UV output ------------------------------------------------------------------------

    def set_uv(self, on: bool) -> bool:
        """Apply the engine's UV command; returns whether UV is now as asked.

        Switching on is refused (``False``) while the lid pin reads open (S11), after
        :meth:`lock_out`, and after the cap tripped or a :meth:`trip` until the engine has
        commanded off once (it may still be acting on inputs from before its ``UvFault`` or
        ``UvLockedOut``). A refusal is queued as ``UvRefused`` with its reason, and the level
        driven as ``UvOutput``: the engine never takes its command for the pin (H17).
        """
        if not on:
            with self._lock:
                self._cap_latched = False
                self._tripped = False
                self._switch_off()
            self._report_output()
            return True
        with self._lock:
            refused = self._refusal()
            if refused is None:
                was_on = self.uv_on
                self._uv.on()
                # Re-check after the write: a lid opening or a lock-out between the check and
                # the write switched off before our write, so their own off may have been
                # overwritten.
                refused = self._refusal()
                if refused is None and not was_on:
                    self._start_cap_timer()
            if refused is not None:
                self._switch_off()
        self._report_output()
        if refused is not None:
            self._put(UvRefused(self.clock.monotonic(), refused))
            return False
        return True

    def _refusal(self) -> str | None:
        """Why UV may not be on now (``None``: it may)."""
        if self._locked_out:
            return "locked_out"
        if self._tripped:
            return "tripped"
        if self._cap_latched:
            return "cap_latched"
        if not self.lid_closed:
            return "lid_open"
        return None

    def _report_output(self) -> None:
        """Queue the driven level as ``UvOutput`` if it changed since the last report."""
        with self._report_lock:
            on = self.uv_on
            if on != self._reported_on:
                self._reported_on = on
                self._put(UvOutput(self.clock.monotonic(), on))

    def force_off(self) -> None:
        """Switch UV off now, from any thread, even one that holds the state lock (failsafe).

        The pin is written before any lock is taken, so a stuck engine thread cannot delay it.
        """
        self._uv.off()
        if self._lock.acquire(timeout=_FORCE_OFF_LOCK_S):
            try:
                self._cancel_cap_timer()
            finally:
                self._lock.release()

    def lock_out(self) -> None:
        """Switch UV off and refuse to switch it on again (shutdown: stays off until exit).

        Queues nothing: it runs in signal handlers and exit paths, where the engine is told by
        the shutdown itself (``daemon_stopped``); a later "on" is refused and reported.
        """
        self._locked_out = True
        self._safe_off()

    def trip(self, reason: str) -> None:
        """S3 for an exception in any thread the daemon outlives: UV off now, the engine told
        (``UvLockedOut``), and "on" refused until the engine has commanded off, so a cycle
        cannot go on past the fault. Unlike :meth:`lock_out` it ends with that acknowledgement:
        a restarted helper thread must not leave the case unusable for the process's life.
        """
        self._tripped = True
        self._safe_off()
        try:
            self._put(UvLockedOut(self.clock.monotonic(), reason))  # the why before the level
        finally:
            self._report_output()

    def _safe_off(self) -> None:
        try:
            self.force_off()
        except Exception:  # a closed device: its pin was already released
            log.debug("UV off on a closed device", exc_info=True)

    def _switch_off(self) -> None:
        with self._lock:
            self._uv.off()
            self._cancel_cap_timer()

    def _start_cap_timer(self) -> None:
        self._on_since = self.clock.monotonic()
        self._arm_cap_timer(self.cap_s)

    def _arm_cap_timer(self, remaining_s: float) -> None:
        self._cancel_cap_timer()
        wait = max(self.clock.to_real(remaining_s), _CAP_RECHECK_MIN_S)
        timer = threading.Timer(wait, self._cap_tripped)
        timer.daemon = True
        timer.name = "uv-cap"
        self._cap_timer = timer
        timer.start()

    def _cancel_cap_timer(self) -> None:
        timer, self._cap_timer = self._cap_timer, None
        if timer is not None:
            timer.cancel()

    def _cap_tripped(self) -> None:
        with self._lock:
            if self._cap_timer is None or self._cap_timer is not threading.current_thread():
                return  # cancelled, or replaced by a newer on-period
            # The cap is on the clock's time. A real clock agrees with the timer; a lockstep
            # simulation may run slower than its nominal speed, so wait for it to catch up
            # instead of cutting a cycle short in virtual time.
            left = self.cap_s - (self.clock.monotonic() - self._on_since)
            if left > 0:
                self._arm_cap_timer(left)
                return
            self._cap_timer = None
            self._cap_latched = True
            self._uv.off()
        self._report_output()
        log.warning("UV on-time cap (%.0f s) reached: UV forced off", self.cap_s)
        self._put(UvFault(self.clock.monotonic(), "cap_reached"))

    # -- lid ------------------------------------------------------------------------------

    def _opener(self, channel: _LidChannel) -> Callable[[], None]:
        return lambda: self._on_lid_opened(channel)

    def _closer(self, channel: _LidChannel) -> Callable[[], None]:
        return lambda: self._on_lid_closed(channel)

    def _on_lid_opened(self, channel: _LidChannel) -> None:
        """S2: UV off directly, then report (once) that this channel reads the lid open."""
        self._uv.off()
        with self._lock:
            self._cancel_cap_timer()
            self._cancel_settle_timer(channel)
            if channel.reported_closed:
                channel.reported_closed = False
                self._put(channel.signal(self.clock.monotonic(), False))
        self._report_output()

    def _on_lid_closed(self, channel: _LidChannel) -> None:
        with self._lock:
            self._cancel_settle_timer(channel)
            if self.debounce_s <= 0:
                self._report_closed(channel)
                return
            timer = threading.Timer(
                self.clock.to_real(self.debounce_s), self._settled, args=(channel,)
            )
            timer.daemon = True
            timer.name = "lid-settle"
            channel.settle_timer = timer
            timer.start()

    def _settled(self, channel: _LidChannel) -> None:
        with self._lock:
            if channel.settle_timer is not threading.current_thread():
                return  # superseded by a later edge
            channel.settle_timer = None
            self._report_closed(channel)

    def _report_closed(self, channel: _LidChannel) -> None:
        if channel.closed and not channel.reported_closed:
            channel.reported_closed = True
            self._put(channel.signal(self.clock.monotonic(), True))

    @staticmethod
    def _cancel_settle_timer(channel: _LidChannel) -> None:
        timer, channel.settle_timer = channel.settle_timer, None
        if timer is not None:
            timer.cancel()

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """UV off for good, timers stopped, devices released."""
        self._locked_out = True
        if hasattr(self, "_uv"):
            self._safe_off()
        with self._lock:
            for channel in self._channels:
                self._cancel_settle_timer(channel)
            self._cancel_cap_timer()
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()

    def __enter__(self) -> CaseIO:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def install_uv_failsafe(
    uv_off: Callable[[], None],
    thread_failed: Callable[[threading.ExceptHookArgs], None] | None = None,
) -> Callable[[], None]:
    """S3: switch UV off at exit and on any unhandled exception, in any thread.

    ``thread_failed``, when given, handles an exception in a thread other than the main one
    instead of ``uv_off``: the daemon's supervisor, which switches UV off at once with
    :meth:`CaseIO.trip` (not for the process's life: the thread is restarted) and reports it.
    Should it raise, ``uv_off`` runs after all.

    Registers ``uv_off`` with :mod:`atexit` and wraps ``sys.excepthook`` and
    ``threading.excepthook`` so UV goes off *before* the previous hook runs (it may log slowly
    or raise). Returns the guarded off function for the runtime's SIGTERM/SIGINT handlers:
    Python runs no atexit handler when a signal kills it, so the handlers must call it.
    Pass :meth:`CaseIO.lock_out`, so the engine cannot switch UV back on during shutdown.
    """

    def off() -> None:
        try:
            uv_off()
        except Exception:  # the failsafe must never be the reason a hook fails
            log.exception("switching UV off failed")

    previous_sys = sys.excepthook
    previous_thread = threading.excepthook

    def sys_hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        off()
        previous_sys(exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if thread_failed is None:
            off()
        else:
            try:
                thread_failed(args)
            except BaseException:
                off()
                log.exception("reporting a failed thread failed: UV locked out")
        previous_thread(args)

    atexit.register(off)
    sys.excepthook = sys_hook
    threading.excepthook = thread_hook
    return off
