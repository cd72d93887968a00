"""HX711 driver for ``hx711.interface: gpio``: adafruit-circuitpython-hx711's protocol, bit-banged
over two gpiozero pins.

This is the alternative for boards wired to other pins than SPI0; the default,
:mod:`dermaguard.hw.hx711_spi`, lets the SPI controller clock PD_SCK. Bit-banged from a Linux
process, a read can be lost: the chip powers down when PD_SCK stays high for over 60 µs, and a
host pause (scheduler tick, another thread holding the GIL, a hypervisor) inside a clock-high
phase does exactly that, costing the read and 50 ms of settling. The workarounds below keep
that rare, not impossible.

The library's bit-banging (``read_fast``) and gain constants are used as they are; the rest is
owned here because it is not safe on Linux:

* ``import adafruit_hx711.hx711`` imports Blinka's ``microcontroller`` and ``digitalio``. On a
  machine Blinka does not know, that prints a warning to stdout (or raises NotImplementedError),
  and its ``microcontroller.delay_us`` is ``time.sleep``, which takes 60-90 µs on Linux, while
  the HX711 powers down when PD_SCK stays high for over 60 µs. :func:`load_library` imports the
  library against small shim modules instead (``delay_us`` busy-waits on ``perf_counter_ns``).
* ``HX711.read()`` busy-waits forever if DOUT never falls, makes two conversions per call and
  sign-extends to a large positive number on CPython. :meth:`HX711.read_raw` waits with a
  timeout, clocks out exactly one conversion, and tracks which gain the chip will use next.
* Linux can pre-empt the process mid-read, so every PD_SCK high phase is timed. A read with an
  over-long one is discarded, since the chip has probably powered down and reset, unless the
  bits that came after the long pulse prove the chip kept shifting data (see
  :func:`stretched_read_verdict`): a reset chip holds DOUT high until it has settled, so a 0
  bit after the long pulse shows there was no reset.
* The board's rate is wired (its RATE pin), not set by ``hx711.rate_sps``: the driver measures
  the interval between data-ready sightings on ``clock`` (:mod:`dermaguard.hw.hx711_rate`, as
  the SPI driver does), and once a board at the other rate is known its conversions are refused
  with :class:`~dermaguard.hw.hx711_rate.WrongRate`, which names SJ2 and the RATE pin. This
  driver never resets a silent chip itself, so only the measurement is needed here, not the
  SPI driver's longer first wait.

Nothing here knows about the emulator in :mod:`dermaguard.sim.hx711_chip`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import logging
import sys
import threading
import time
from types import ModuleType
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from dermaguard.common.clock import Clock, RealClock
from dermaguard.hw.hx711_protocol import (
    DATA_BITS,
    HX711Driver,
    HX711Error,
    NotReady,
    ReadDiscarded,
    signed24,
)
from dermaguard.hw.hx711_rate import RateWatch, WrongRate

__all__ = [
    "HX711",
    "HX711Error",
    "NotReady",
    "ReadDiscarded",
    "WrongRate",
    "load_library",
    "stretched_read_verdict",
]

log = logging.getLogger(__name__)

#: Shortest PD_SCK high or low phase the datasheet allows (T3, T4: 0.2 µs).
PULSE_MIN_NS = 200
#: How long PD_SCK is held high to power the chip down for a reset (over 60 µs).
RESET_HOLD_S = 0.001
_LIBRARY = "adafruit_hx711.hx711"
_STALE_EVENT_BACKOFF_S = 0.0005


# -- importing the library ----------------------------------------------------------------


class _MicrocontrollerShim(ModuleType):
    """What adafruit_hx711 needs from Blinka's ``microcontroller``, with real µs delays."""

    def __init__(self) -> None:
        super().__init__("microcontroller", "dermaguard shim for adafruit_hx711")

    @staticmethod
    def delay_us(us: float) -> None:
        """Busy-wait: time.sleep cannot sleep 1 µs on Linux, and the chip powers down at 60 µs.

        ``read_fast`` asks for 1 µs in each PD_SCK phase, a microcontroller's margin over the
        datasheet's 0.2 µs minimum phase (DOUT is valid 0.1 µs after the rising edge). Here a
        pin write alone takes longer than that, and every µs PD_SCK stays high is a µs in which
        a host pause can power the chip down, so such short waits keep to the datasheet's
        minimum. Longer waits are kept in full.
        """
        ns = PULSE_MIN_NS if us <= 1 else int(us * 1000)
        end = time.perf_counter_ns() + ns
        while time.perf_counter_ns() < end:
            pass

    @staticmethod
    def disable_interrupts() -> None:
        """Nothing to do in a Linux process."""

    @staticmethod
    def enable_interrupts() -> None:
        """Nothing to do in a Linux process."""


class _DigitalioShim(ModuleType):
    """Only the name the library's annotations evaluate at import time."""

    class DigitalInOut:
        """Placeholder for the annotation ``digitalio.DigitalInOut``."""

    def __init__(self) -> None:
        super().__init__("digitalio", "dermaguard shim for adafruit_hx711")


MICROCONTROLLER = _MicrocontrollerShim()
DIGITALIO = _DigitalioShim()
_library: Any = None
_library_lock = threading.Lock()


def load_library() -> Any:
    """Import ``adafruit_hx711.hx711`` once, against the shims, printing nothing.

    ``sys.modules`` is restored afterwards so other code that really uses Blinka still gets
    it. If the library was imported before, its ``microcontroller`` global is repointed.
    """
    global _library
    with _library_lock:
        if _library is None:
            module: Any = sys.modules.get(_LIBRARY)
            if module is None:
                module = _import_with_shims()
            module.microcontroller = MICROCONTROLLER
            _library = module
        return _library


def _import_with_shims() -> ModuleType:
    shims = {"microcontroller": MICROCONTROLLER, "digitalio": DIGITALIO}
    saved = {name: sys.modules.get(name) for name in shims}
    sys.modules.update(shims)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            return importlib.import_module(_LIBRARY)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
        if out.getvalue():
            log.warning("adafruit_hx711 printed on import: %s", out.getvalue().strip())


# -- pin adapters -------------------------------------------------------------------------


class _ClockAdapter:
    """PD_SCK with the ``.value`` interface ``read_fast`` expects; times every high phase.

    The time is taken before the pin rises and after it falls, so it is never shorter than
    the high phase the chip saw. Pulses are counted from 1 within a read, and the last pulse
    whose high phase ran over the limit is remembered, separately for the 24 data pulses and
    the gain-select pulses after them.
    """

    __slots__ = (
        "_limit_ns",
        "_pin",
        "_rise_ns",
        "last_long_data",
        "long_tail",
        "longest_ns",
        "pulses",
    )

    def __init__(self, pin: Any, limit_ns: int) -> None:
        self._pin = pin
        self._limit_ns = limit_ns
        self._rise_ns: int | None = None
        self.begin()

    def begin(self) -> None:
        """Forget the previous read's pulses."""
        self.pulses = 0
        self.last_long_data = 0
        self.long_tail = False
        self.longest_ns = 0

    @property
    def value(self) -> bool:
        return bool(self._pin.state)

    @value.setter
    def value(self, high: bool) -> None:
        if high:
            self.pulses += 1  # before the rise: nothing avoidable happens while PD_SCK is high
            self._rise_ns = time.perf_counter_ns()
            self._pin.state = True
            return
        self._pin.state = False
        if self._rise_ns is not None:
            elapsed = time.perf_counter_ns() - self._rise_ns
            self._rise_ns = None
            if elapsed > self._limit_ns:
                self.longest_ns = max(self.longest_ns, elapsed)
                if self.pulses <= DATA_BITS:
                    self.last_long_data = self.pulses
                else:
                    self.long_tail = True


class _DataAdapter:
    """DOUT with the ``.value`` interface ``read_fast`` expects (an int bit)."""

    __slots__ = ("_pin",)

    def __init__(self, pin: Any) -> None:
        self._pin = pin

    @property
    def value(self) -> int:
        return 1 if self._pin.state else 0


def stretched_read_verdict(code24: int, last_long_data: int) -> bool:
    """Whether data bits read around an over-long PD_SCK high phase can be trusted.

    ``last_long_data`` is the last data pulse (1-24) whose high phase ran over the limit, or 0.
    A chip that powered down during that pulse resets when PD_SCK falls and holds DOUT high
    until it has settled (50 ms at least), so every bit clocked after it reads 1. A 0 among
    the later bits therefore proves the chip was still shifting out this conversion: no power
    down happened, and the bit sampled during the long pulse is good as well. All ones (or a
    long 24th pulse, with no bit after it) proves nothing, and the read must be discarded.
    """
    if last_long_data == 0:
        return True
    tail_bits = DATA_BITS - last_long_data
    all_ones = (1 << tail_bits) - 1
    return tail_bits > 0 and (code24 & all_ones) != all_ones


# -- driver -------------------------------------------------------------------------------


class HX711(HX711Driver):
    """One HX711 on two GPIO pins, read one conversion at a time at a fixed gain.

    ``gain`` 128 or 64 reads channel A, 32 reads channel B. The gain applies to the conversion
    *after* a read, so the driver keeps track of the gain the chip will use next; after a reset
    it is 128, and a conversion made at another gain than configured is discarded. The driver
    assumes a freshly reset chip at construction; a previous process may have left it at another
    gain, so call :meth:`reset` at start-up to make that true.

    ``clock`` is the one the chip converts on (a simulation's virtual clock): the board's rate
    is measured on it. Settling after a gain change is timed on the real clock, as before.
    """

    def __init__(
        self,
        dout: int | str,
        sck: int | str,
        *,
        gain: int = 128,
        rate_sps: int = 80,
        max_clock_high_us: float = 50.0,
        pin_factory: Any = None,
        clock: Clock | None = None,
    ) -> None:
        lib = load_library()
        pulses = {
            128: lib.HX711.CHAN_A_GAIN_128,
            64: lib.HX711.CHAN_A_GAIN_64,
            32: lib.HX711.CHAN_B_GAIN_32,
        }
        super().__init__(gain, rate_sps)
        if max_clock_high_us <= 0:
            raise ValueError("max_clock_high_us must be > 0")
        self._time: Clock = clock if clock is not None else RealClock()
        #: The board's real rate, measured before the configured one is trusted (hx711_rate).
        self.rate_watch = RateWatch(rate_sps)
        self._read_fast = lib.read_fast
        self._pulses: int = pulses[gain]
        self._max_high_ns = int(max_clock_high_us * 1000)
        self._powered = True
        #: Reads kept although a high phase ran long, because later bits proved no reset.
        self.rescued = 0

        self._sck_dev = DigitalOutputDevice(sck, initial_value=False, pin_factory=pin_factory)
        try:
            self._dout_dev = DigitalInputDevice(
                dout, pull_up=None, active_state=True, pin_factory=pin_factory
            )
        except BaseException:
            self._sck_dev.close()
            raise
        self._clock = _ClockAdapter(self._sck_dev.pin, self._max_high_ns)
        self._data = _DataAdapter(self._dout_dev.pin)

    @property
    def interface(self) -> str:
        return "gpio"

    def _check_readable(self) -> None:
        self._check_open()
        if not self._powered:
            raise HX711Error("HX711 is powered down; call power_up() first")

    def power_down(self) -> None:
        """Hold PD_SCK high: the chip powers down after 60 µs."""
        with self._lock:
            self._check_open()
            self._sck_dev.pin.state = True
            self._powered = False

    def power_up(self) -> None:
        """Release PD_SCK: the chip resets to gain 128 and settles before the next data."""
        with self._lock:
            self._check_open()
            if self._powered:
                return
            self._sck_dev.pin.state = False
            self._powered = True
            self._after_reset()

    def reset(self) -> None:
        """Power-cycle the chip: PD_SCK high for over 60 µs, then low again."""
        self.power_down()
        time.sleep(RESET_HOLD_S)
        self.power_up()

    def _after_reset(self) -> None:
        super()._after_reset()
        self.rate_watch.restart()  # no interval spans a reset: the chip settles first

    def close(self) -> None:
        """Release both pins; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._dout_dev.close()
            self._sck_dev.close()

    def _wait_ready(self, timeout_s: float) -> bool:
        """Wait for DOUT low, trusting the level over gpiozero's edge event.

        On real pins edge callbacks arrive late, so the event can still say "low" from before
        the last read; in that case back off briefly and wait again. The time DOUT is seen low
        goes to the rate measurement: a reader that was not waiting sees it late, which the
        measurement allows for (it takes the shortest interval, and leaves out impossible ones).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if not self._dout_dev.wait_for_inactive(max(0.0, remaining)):
                return False
            if not self._data.value:
                self.rate_watch.ready(self._time.monotonic())
                return True
            if remaining <= 0:
                return False
            time.sleep(_STALE_EVENT_BACKOFF_S)

    def _read_conversion(self) -> int:
        clock = self._clock
        clock.begin()
        # A garbage collection that starts mid-pulse holds PD_SCK high for as long as it runs;
        # a read allocates little, so collection waits until the bits are out.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            raw: int = self._read_fast(clock, self._data, self._pulses)
        except BaseException:
            # Leave PD_SCK low whatever happened; the chip may have reset meanwhile.
            self._sck_dev.pin.state = False
            self._after_reset()
            raise
        finally:
            if gc_enabled:
                gc.enable()
        made_at = self._take_gain()
        code24 = raw >> (self._pulses - DATA_BITS)
        if not stretched_read_verdict(code24, clock.last_long_data):
            self.discarded += 1
            self._after_reset()
            raise ReadDiscarded(
                f"PD_SCK stayed high {clock.longest_ns / 1000:.0f} µs (limit "
                f"{self._max_high_ns / 1000:.0f} µs) at data pulse {clock.last_long_data}, and "
                "no later bit shows the chip kept shifting: it has probably powered down"
            )
        if clock.last_long_data:
            self.rescued += 1
        if clock.long_tail:
            # The data was out before the stretched gain-select pulse, but the chip may have
            # powered down on it: then it comes back at gain 128 after settling.
            self._after_reset()
        self._check_gain(made_at, self._now())
        if self.rate_watch.problem is not None:
            # Clocked out all the same, so the chip stays in step; its value is not used.
            self.discarded += 1
            raise WrongRate(self.rate_watch.problem)
        self.reads += 1
        return signed24(code24)
