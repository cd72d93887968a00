"""A pin-level HX711 emulator on gpiozero mock pins.

The real driver (:mod:`dermaguard.hw.hx711`) talks to it exactly as it talks to a chip on a Pi:
it waits for DOUT to fall, clocks PD_SCK and samples DOUT. So the driver's protocol handling,
gain tracking, timeouts and power-down detection are tested without hardware, and ``--simulate``
runs the same code path as production.

Usage: create the chip *before* the driver. ``MockFactory.pin()`` returns the existing pin object
when a pin number is already in use, so whoever asks first decides the pin class; the chip needs
its own DOUT/PD_SCK pin classes, and raises ``RuntimeError`` if the pins already exist.

Two ways to make conversions:

* lockstep: call :meth:`HX711Chip.convert` whenever a sample should be ready (tests, virtual-time
  simulation, benchmarks: ``chip.convert(); driver.read_raw(1.0)``);
* free-running: :meth:`HX711Chip.start` converts every ``1 / rate_sps`` seconds of real time.

Edges: while bits are being clocked out, DOUT's level changes at once, but gpiozero's edge
callbacks for it run after PD_SCK falls at the end of the read (the pins, and why, are in
:mod:`dermaguard.sim.hx711_pins`).

Conversions on the chip's own clock: :meth:`HX711Chip.run_on_clock` makes the chip convert every
``period_s`` of its clock whatever the bus does, as the real chip's oscillator does. Time is then
read lazily: :meth:`HX711Chip.tick` catches up to the clock, and a bus model passes each bit's
time on the chip's clock (:meth:`drive_sck`, :meth:`sample_dout`), so a conversion can fall due
between two bits of a read. What the chip then does is not in the datasheet; ``mid_read`` picks
one of the three things it may do (:data:`MID_READ`): ``finish`` the word it is sending (the new
one waits for the read to end), ``restart`` with the new word (the remaining pulses clock out its
first bits and the chip is left part-way through it) or ``switch`` to the new word from the
current bit (the read ends in step, with the old word's high bits and the new word's low ones).

Settling: after a reset nothing converts for the settling time; after a read selects another
gain, conversions within the settling time of it are unsettled: they move linearly from the
old gain's signal to the new one's (``gain_settling``; the datasheet gives the same settling
time for a gain change as for a reset, and says nothing of the values in between).

Time: the 60 µs power-down threshold is measured in real time (``perf_counter_ns``) when the
driver toggles PD_SCK as a GPIO pin, because it is a property of how fast the driver does so.
On the SPI interface PD_SCK is the bus's MOSI line, and :mod:`dermaguard.sim.spi_bus` drives it
through :meth:`HX711Chip.drive_sck` with the times the bus clock gives each bit, and samples DOUT
with :meth:`HX711Chip.sample_dout`, which honours the datasheet's 0.1 µs from a rising PD_SCK
edge to valid data. Settling after a reset and the load model's time use the chip's ``clock``,
so a :class:`~dermaguard.common.clock.SimClock` can skip it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dermaguard.common.clock import Clock, RealClock
from dermaguard.sim.hx711_pins import ClockPin, DataPin

log = logging.getLogger(__name__)

CODE_MAX = 0x7FFFFF
CODE_MIN = -0x800000
#: PD_SCK high for longer than this powers the chip down (datasheet: 60 µs).
POWER_DOWN_NS = 60_000
#: Settling time after reset or power-up, by output data rate.
SETTLE_S = {10: 0.4, 80: 0.05}
#: Pulses per read -> gain (and channel) of the next conversion.
GAIN_BY_PULSES = {25: 128, 26: 32, 27: 64}
#: Free-running and deferred conversions wait this long after pulse 25 or 26 falls, because the
#: driver may still send the gain-select pulses 26 and 27; converting in between would make
#: those pulses clock out the new data instead.
GAIN_TAIL_NS = 1_000_000
#: DOUT is valid this long after a rising PD_SCK edge (datasheet T2: 0.1 µs at most).
DOUT_DELAY_NS = 100
_DEFER_POLL_S = 0.0001
_DEFER_GIVE_UP_S = 1.0

Saturation = Literal["high", "low"]
MidRead = Literal["finish", "restart", "switch"]
#: What a chip converting on its own clock may do when a conversion falls due during a read.
MID_READ: tuple[MidRead, ...] = ("finish", "restart", "switch")


@dataclass
class LoadModel:
    """Counts the chip reports for a force.

    Offset, force and drift are input-referred at gain 128 and scale with the gain (64: half,
    channel B at 32: a quarter), as the analogue signal does; noise is added after the gain.
    """

    offset_counts: float = 80_000.0
    counts_per_newton: float = 40_000.0
    noise_counts: float = 0.0
    drift_counts_per_s: float = 0.0
    #: A temperature-like drift (:class:`ThermalDrift`), on top of the linear one.
    thermal: ThermalDrift | None = None

    def signal_for(self, force_n: float, t: float, gain: int) -> float:
        """The noiseless signal in counts at ``gain`` (not yet clamped to 24 bits)."""
        scale = self.counts_per_newton
        offset = self.offset_counts + self.drift_counts_per_s * t
        if self.thermal is not None:
            offset += self.thermal.offset_counts(t)
            scale *= 1.0 + self.thermal.scale_share(t)
        return (offset + scale * force_n) * gain / 128

    def code_for(self, force_n: float, t: float, gain: int, rng: random.Random) -> int:
        """The 24-bit code for ``force_n`` at ``t`` seconds, saturating like the real chip."""
        return self.clamp(self.signal_for(force_n, t, gain), rng)

    def clamp(self, signal: float, rng: random.Random) -> int:
        """Add the noise and saturate like the real chip."""
        if self.noise_counts > 0:
            signal += rng.gauss(0.0, self.noise_counts)
        if math.isnan(signal):
            raise ValueError("load model produced NaN")
        if signal >= CODE_MAX:
            return CODE_MAX
        if signal <= CODE_MIN:
            return CODE_MIN
        return round(signal)


@dataclass(frozen=True)
class ThermalDrift:
    """A room warming and cooling: the offset and, a little, the scale follow a slow ramp.

    The offset moves by ``offset_counts_span`` (input-referred at gain 128) and the scale by
    ``scale_share_span`` over ``ramp_s`` seconds, then back over as long, and so on: a
    triangle, as a bathroom warms while it is used and cools after.
    """

    offset_counts_span: float
    ramp_s: float
    scale_share_span: float = 0.0

    def _phase(self, t: float) -> float:
        cycle = (t / self.ramp_s) % 2.0
        return cycle if cycle <= 1.0 else 2.0 - cycle

    def offset_counts(self, t: float) -> float:
        return self.offset_counts_span * self._phase(t)

    def scale_share(self, t: float) -> float:
        return self.scale_share_span * self._phase(t)


class HX711Chip:
    """Emulates an HX711 behind two mock pins; see the module docstring for the rules."""

    def __init__(
        self,
        factory: Any,
        dout: int | str,
        sck: int | str | None,
        *,
        rate_sps: int = 80,
        clock: Clock | None = None,
        load: LoadModel | None = None,
        seed: int | None = 0,
        power_down_ns: int = POWER_DOWN_NS,
        gain_settling: bool = True,
    ) -> None:
        """``dout`` is the GPIO that sees DOUT; ``sck`` the GPIO driving PD_SCK, or ``None`` when
        an SPI bus model drives it (:meth:`drive_sck`). ``power_down_ns`` is the datasheet's
        60 µs; only a bit-banged simulation of the whole daemon on a busy desktop has reason to
        relax it (see :class:`dermaguard.sim.hardware.SimHardware`). ``gain_settling`` models
        the settling after a gain change (see the module); tests whose driver keeps time on
        another clock than the chip's turn it off.
        """
        if rate_sps not in SETTLE_S:
            raise ValueError(f"rate_sps must be 10 or 80, got {rate_sps}")
        self.rate_sps = rate_sps
        self.settle_s = SETTLE_S[rate_sps]
        self.power_down_ns = power_down_ns
        self.gain_settling = gain_settling
        self.clock: Clock = clock if clock is not None else RealClock()
        self.load = load if load is not None else LoadModel()
        self.on_ready: Callable[[int, int], None] | None = None
        #: Own-clock conversions (:meth:`run_on_clock`): called under the chip's lock with the
        #: conversion's number (:attr:`conversions` once it is counted) and the clock time it
        #: fell due, for every one, those replaced before anyone looked included: a benchmark
        #: times from when a conversion was due, not from when the chip was next touched.
        self.on_due: Callable[[int, float], None] | None = None
        # Introspection for tests and benchmarks.
        self.conversions = 0
        self.reads_completed = 0
        self.power_down_count = 0
        self.last_code: int | None = None
        self.last_ready_ns: int | None = None

        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._read_done = threading.Event()
        self._read_done.set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self.clock.monotonic()
        self._force = 0.0
        self._saturation: Saturation | None = None
        self._spike_counts = 0
        self._spike_left = 0
        # Chip state. It starts powered and settled, as if it had been on for a while.
        self._plugged = True
        self._down = False
        self._settled_at = self._t0
        self._next_gain = 128
        self._ready = False  # a conversion is latched and not yet clocked out
        self._pulses = 0  # PD_SCK pulses since the last conversion became ready
        self._shift = 0
        self._deferred = False
        self._sck_high = False
        self._rise_ns = 0
        self._fall_ns = 0
        # DOUT's level before the last data-bit shift, and when that shift happened.
        self._dout_before = True
        self._shift_ns = 0
        # Own-clock conversions (run_on_clock): when the next one falls due, what a conversion
        # falling due mid-read does, and a conversion waiting for the read to end ("finish").
        self.period_s = 1.0 / rate_sps
        self.mid_read: MidRead = "finish"
        self._due_at: float | None = None
        self._pending: int | None = None
        self._fall_at = -math.inf  # clock time of the last falling PD_SCK edge
        self._bus_at: float | None = None  # clock time of the bus bit being clocked now
        #: Conversions that fell due during a read, by what the chip did.
        self.mid_read_conversions = 0
        # Gain settling: the gain of the front end now, the one before, and when it changed.
        self._front_gain = 128
        self._front_gain_before = 128
        self._front_changed_at = -math.inf
        self._gain_set_at = -math.inf  # clock time of the last gain-select pulse
        #: Conversions made while the front end was still settling after a gain change.
        self.unsettled_conversions = 0

        self._dout = factory.pin(dout, pin_class=DataPin)
        self._sck: ClockPin | None = None
        pins: list[tuple[Any, type]] = [(self._dout, DataPin)]
        if sck is not None:
            self._sck = factory.pin(sck, pin_class=ClockPin)
            pins.append((self._sck, ClockPin))
        for pin, cls in pins:
            if not isinstance(pin, cls):
                raise RuntimeError(
                    f"pin {pin!r} already exists as {type(pin).__name__}: "
                    "create the HX711Chip before any gpiozero device on its pins"
                )
        self._dout.drive_high()
        if self._sck is not None:
            self._sck_high = bool(self._sck.state)
            self._sck.listener = self._on_sck

    # -- load and faults ------------------------------------------------------------------

    @property
    def force_n(self) -> float:
        """Force on the load cell in newtons (settable from any thread)."""
        with self._lock:
            return self._force

    @force_n.setter
    def force_n(self, value: float) -> None:
        if math.isnan(value):
            raise ValueError("force_n must not be NaN")
        with self._lock:
            self._force = float(value)

    def unplug(self) -> None:
        """Disconnect the chip: DOUT stays high and no conversion is ever ready."""
        with self._lock:
            self._plugged = False
            self._lose_data()

    def replug(self) -> None:
        """Reconnect the chip; it comes up like at power-on (gain 128, settling)."""
        with self._lock:
            self._plugged = True
            self._reset()

    def saturate(self, level: Saturation | None) -> None:
        """Force every conversion to the full-scale code (``None`` ends it)."""
        if level not in ("high", "low", None):
            raise ValueError(f"level must be 'high', 'low' or None, got {level!r}")
        with self._lock:
            self._saturation = level

    def spike(self, counts: int, samples: int = 1) -> None:
        """Add ``counts`` to the next ``samples`` conversions (then clamped to 24 bits)."""
        if samples < 0:
            raise ValueError("samples must be >= 0")
        with self._lock:
            self._spike_counts = counts
            self._spike_left = samples

    # -- introspection --------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        """Plugged in and not powered down by a long PD_SCK high phase."""
        with self._lock:
            self._check_power_down(time.perf_counter_ns())
            return self._plugged and not self._down

    @property
    def dout(self) -> bool:
        """DOUT's level now (high: no conversion waiting to be read)."""
        with self._lock:
            self._catch_up(self.clock.monotonic())
            return bool(self._dout.state)

    @property
    def pulses(self) -> int:
        """PD_SCK pulses since the last conversion became ready (0: none, or not ready)."""
        with self._lock:
            return self._pulses

    @property
    def next_gain(self) -> int:
        """Gain the next conversion will use, as selected by the last read's pulse count."""
        with self._lock:
            return self._next_gain

    # -- conversions ----------------------------------------------------------------------

    def convert(self) -> bool:
        """Complete one conversion now; return whether data became ready.

        No data becomes ready while the chip is unplugged, powered down or settling. During a
        read (bits still to be clocked out) the conversion is deferred until the read ends, and
        this returns False.
        """
        return self._request(respect_tail=False) == "done"

    def wait_read(self, timeout_real_s: float) -> bool:
        """Wait until no ready data is waiting to be clocked out (real seconds)."""
        return self._read_done.wait(timeout_real_s)

    def start(self) -> None:
        """Convert every ``1 / rate_sps`` real seconds on a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hx711-chip", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop free-running conversions."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1.0)

    def close(self) -> None:
        """Stop and detach from the PD_SCK pin."""
        self.stop()
        with self._lock:
            self._deferred = False
            if self._sck is not None:
                self._sck.listener = None

    # -- PD_SCK driven by an SPI bus model ------------------------------------------------

    def hold(self) -> threading.RLock:
        """The chip's lock: a bus model holds it for a whole transfer, which the controller
        clocks out of its FIFO without pause, so no conversion lands between two of its bits
        unless a test puts one there on purpose."""
        return self._lock

    def drive_sck(self, high: bool, t_ns: int, at: float | None = None) -> None:
        """PD_SCK changes level at ``t_ns`` (``perf_counter_ns`` time, or later); ``at`` is the
        same moment on the chip's clock (a bus model's bit time), for own-clock conversions."""
        with self._lock:
            if at is not None:
                self._catch_up(at)
                self._bus_at = at
            try:
                if high != self._sck_high:
                    self._on_sck(high, t_ns)
            finally:
                self._bus_at = None

    def sample_dout(self, t_ns: int, at: float | None = None) -> bool:
        """DOUT as a receiver sampling at ``t_ns`` sees it: a data bit shifted out by a rising
        edge becomes valid :data:`DOUT_DELAY_NS` later. ``at``: as for :meth:`drive_sck`."""
        with self._lock:
            if at is not None:
                self._catch_up(at)
            if self._pulses and t_ns - self._shift_ns < DOUT_DELAY_NS:
                return self._dout_before
            return bool(self._dout.state)

    def quiet_dout(self, first: tuple[int, float], last: tuple[int, float]) -> bool | None:
        """DOUT as a bus model samples it from ``first`` to ``last`` with PD_SCK low throughout
        (each as ``perf_counter_ns`` time and the same moment on the chip's clock): its level,
        or ``None`` when it may change in between (a conversion of the chip's own clock falling
        due or landing, a data bit not yet valid); the bus model then samples bit by bit."""
        with self._lock:
            self._catch_up(first[1])
            if self._pending is not None or (self._due_at is not None and self._due_at <= last[1]):
                return None
            level = self.sample_dout(*first)
            return level if self.sample_dout(*last) == level else None

    def read_whole(
        self,
        pulses: int,
        start_at: float,
        end_at: float,
        last_rise: tuple[int, float],
        last_fall: tuple[int, float],
    ) -> int | None:
        """A bus model's whole read at once: ``pulses`` (25-27) short PD_SCK pulses between clock
        times ``start_at`` and ``end_at``, the last one rising and falling at ``last_rise`` and
        ``last_fall`` (each as ``perf_counter_ns`` time and the same moment on the chip's clock).

        The chip ends as if every pulse had been clocked (the word out, DOUT high and its edge
        reported, the gain selected), and the 24-bit word is returned: the same bits the pulses
        would have shifted out. ``None`` unless the read is the plain case whose outcome is
        known: a conversion waiting and untouched, PD_SCK low, powered, and no conversion of
        the chip's own clock falling due or landing before ``end_at``; then nothing changed but
        the conversions due by ``start_at``, and the bus model clocks the read bit by bit.
        """
        with self._lock:
            self._catch_up(start_at)
            plain = (
                self._plugged
                and not self._down
                and self._ready
                and self._pulses == 0
                and not self._sck_high
                and self._pending is None
                and (self._due_at is None or self._due_at > end_at)
            )
            if not plain or not 25 <= pulses <= 27:
                return None
            word = self._shift
            # Before the last pulse DOUT held the last data bit (25 pulses) or was already high.
            self._dout_before = bool(word & 1) if pulses == 25 else True
            self._pulses = pulses
            self._shift_ns = self._rise_ns = last_rise[0]
            self._ready = False
            self._dout.shift(True)
            self.reads_completed += 1
            self._next_gain = GAIN_BY_PULSES[pulses]
            self._gain_set_at = last_rise[1]
            self._fall_ns, self._fall_at = last_fall
            self._read_done.set()
            self._dout.flush()
            return word

    def run_on_clock(self, *, mid_read: MidRead = "finish", first_at: float | None = None) -> None:
        """Convert every :attr:`period_s` of the chip's clock from ``first_at`` (default: one
        period from now), whatever the bus does; ``mid_read`` says what a conversion falling
        due during a read does (see the module). Conversions are made when the chip is next
        touched (a bus bit, :meth:`tick`, :attr:`dout`), at the times they fell due."""
        if mid_read not in MID_READ:
            raise ValueError(f"mid_read must be one of {', '.join(MID_READ)}, got {mid_read!r}")
        with self._lock:
            self.mid_read = mid_read
            now = self.clock.monotonic()
            self._due_at = now + self.period_s if first_at is None else first_at

    @property
    def next_due(self) -> float | None:
        """Clock time the next own-clock conversion falls due (``None``: lockstep)."""
        with self._lock:
            return self._due_at

    def tick(self) -> None:
        """Make the own-clock conversions that fell due up to the clock's time now."""
        with self._lock:
            self._catch_up(self.clock.monotonic())

    def convert_mid_read(self) -> None:
        """A conversion completes in the middle of a read and restarts the shift register.

        The worst case for a reader that started late: its remaining pulses clock out the new
        conversion's first bits, and the chip is left part-way through a read. Only tests do
        this on purpose; a reader that starts soon after DOUT falls never meets it.
        """
        with self._lock:
            if self._plugged and not self._down and self.clock.monotonic() >= self._settled_at:
                self._complete()

    def __enter__(self) -> HX711Chip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _run(self) -> None:
        period = 1.0 / self.rate_sps
        next_t = time.perf_counter() + period
        while not self._stop.wait(max(0.0, next_t - time.perf_counter())):
            # Stay off the chip's lock while a read is clocking: contending for it from this
            # thread would stall the reader mid-pulse, an emulator artefact a real chip (which
            # converts in hardware) never causes. A lock-free peek is enough to step aside.
            for _ in range(20):
                if not (self._sck_high or 0 < self._pulses < 25):
                    break
                time.sleep(0.0002)
            self._request(respect_tail=True)
            next_t += period
            now = time.perf_counter()
            if now - next_t > period:  # fell far behind (suspended): don't burst to catch up
                next_t = now + period

    def _request(self, *, respect_tail: bool) -> Literal["done", "deferred", "off"]:
        now_ns = time.perf_counter_ns()
        with self._lock:
            self._check_power_down(now_ns)
            if not self._plugged or self._down or self.clock.monotonic() < self._settled_at:
                return "off"
            if self._busy(now_ns, respect_tail):
                if not self._deferred:
                    self._deferred = True
                    threading.Thread(target=self._finish_deferred, daemon=True).start()
                return "deferred"
            code, ready_ns = self._complete()
            callback = self.on_ready
        if callback is not None:
            callback(code, ready_ns)
        return "done"

    def _finish_deferred(self) -> None:
        give_up = time.perf_counter() + _DEFER_GIVE_UP_S
        while time.perf_counter() < give_up:
            time.sleep(_DEFER_POLL_S)
            with self._lock:
                if not self._deferred:  # completed by another request, or cancelled
                    return
                if self._busy(time.perf_counter_ns(), respect_tail=True):
                    continue
                self._deferred = False
            self._request(respect_tail=True)
            return
        log.debug("deferred HX711 conversion dropped: read never ended")
        with self._lock:
            self._deferred = False

    def _busy(self, now_ns: int, respect_tail: bool) -> bool:
        """A read is in progress: data bits left to clock, or a pulse still high."""
        pulses = self._pulses
        if pulses == 0:
            return False
        if pulses < 25 or self._sck_high:
            return True
        return respect_tail and pulses < 27 and now_ns - self._fall_ns < GAIN_TAIL_NS

    def _catch_up(self, now: float) -> None:
        """Make the own-clock conversions due by ``now``; a waiting one lands after a read."""
        if self._due_at is None:
            return
        if (
            self._pending is not None
            and self._pulses >= 25
            and not self._sck_high
            and (self._pulses >= 27 or now - self._fall_at >= GAIN_TAIL_NS * 1e-9)
        ):
            pending, self._pending = self._pending, None
            self._latch(pending)
        if now < self._due_at:
            return
        # Only the last conversion due has a word anyone can see: each one replaces the one
        # before it. The others were made all the same (and lost), so they are counted.
        first = self._due_at
        missed = math.floor((now - first) / self.period_s)
        at = first + missed * self.period_s
        self._due_at = at + self.period_s
        self._check_power_down(time.perf_counter_ns())
        if not self._plugged or self._down or at < self._settled_at:
            return
        on_due = self.on_due
        # Due times before the chip settled made nothing (a reset moves the first due time to
        # the end of its settling, so normally none is).
        unsettled = min(missed, max(0, math.ceil((self._settled_at - first) / self.period_s)))
        if on_due is None:
            self.conversions += missed - unsettled
        else:
            for k in range(unsettled, missed):
                self.conversions += 1
                on_due(self.conversions, first + k * self.period_s)
        code = self._make_code(at)
        if on_due is not None:
            on_due(self.conversions, at)
        if not (self._ready and 0 < self._pulses < 25):
            self._latch(code)
            return
        self.mid_read_conversions += 1
        if self.mid_read == "finish":
            self._pending = code
        elif self.mid_read == "restart":
            self._latch(code)
        else:  # switch: the next rising edge shifts out the new word's next bit
            self._shift = code & 0xFFFFFF
            self.last_code = code

    def _make_code(self, at: float) -> int:
        """The code of a conversion completing at clock time ``at``."""
        t = at - self._t0
        gain = self._next_gain
        if gain != self._front_gain:  # the front end switched when the read selected it
            self._front_gain_before, self._front_gain = self._front_gain, gain
            self._front_changed_at = self._gain_set_at
        signal = self.load.signal_for(self._force, t, gain)
        since = at - self._front_changed_at
        if self.gain_settling and since < self.settle_s:
            # Unsettled: on the way from the old gain's signal to the new one's.
            share = max(0.0, since / self.settle_s)
            before = self.load.signal_for(self._force, t, self._front_gain_before)
            signal = before + (signal - before) * share
            self.unsettled_conversions += 1
        code = self.load.clamp(signal, self._rng)
        if self._spike_left > 0:
            self._spike_left -= 1
            code = max(CODE_MIN, min(CODE_MAX, code + self._spike_counts))
        if self._saturation is not None:
            code = CODE_MAX if self._saturation == "high" else CODE_MIN
        self.conversions += 1
        return code

    def _complete(self) -> tuple[int, int]:
        code = self._make_code(self.clock.monotonic())
        return code, self._latch(code)

    def _latch(self, code: int) -> int:
        """A conversion's word is ready: DOUT falls, the next pulse shifts out its first bit."""
        self._deferred = False
        self._shift = code & 0xFFFFFF
        self._pulses = 0
        self._ready = True
        self._read_done.clear()
        self.last_code = code
        ready_ns = time.perf_counter_ns()
        self.last_ready_ns = ready_ns
        self._dout.drive_low()
        return ready_ns

    def _on_sck(self, high: bool, at_ns: int | None = None) -> None:
        now_ns = time.perf_counter_ns() if at_ns is None else at_ns
        with self._lock:
            if high:
                self._sck_high = True
                self._rise_ns = now_ns
                if self._plugged and not self._down and (self._ready or self._pulses):
                    self._clock_pulse(now_ns)
                return
            self._check_power_down(now_ns)
            self._sck_high = False
            self._fall_ns = now_ns
            self._fall_at = self._bus_at if self._bus_at is not None else self.clock.monotonic()
            if self._down:  # PD_SCK low again: power up and reset
                self._reset()
            elif self._pulses >= 25 and not self._read_done.is_set():
                # The data is out once the 25th pulse has fallen: waking a waiter any earlier
                # lets it compete with the reader while PD_SCK is still high.
                self._read_done.set()
            if self._pulses >= 25:
                self._dout.flush()

    def _clock_pulse(self, now_ns: int) -> None:
        self._pulses += 1
        pulses = self._pulses
        self._dout_before = bool(self._dout.state)
        self._shift_ns = now_ns
        if pulses <= 24:
            self._dout.shift(bool((self._shift >> (24 - pulses)) & 1))
            return
        if pulses == 25:
            self._ready = False
            self._dout.shift(True)
            self.reads_completed += 1
        self._next_gain = GAIN_BY_PULSES[min(pulses, 27)]
        self._gain_set_at = self._bus_at if self._bus_at is not None else self.clock.monotonic()

    def _check_power_down(self, now_ns: int) -> None:
        if (
            self._plugged
            and self._sck_high
            and not self._down
            and now_ns - self._rise_ns > self.power_down_ns
        ):
            self._down = True
            self.power_down_count += 1
            self._lose_data()
            log.debug("HX711 chip powered down (PD_SCK high > 60 µs)")

    def _lose_data(self) -> None:
        self._ready = False
        self._pulses = 0
        self._deferred = False
        self._pending = None
        self._read_done.set()
        self._dout.drive_high()

    def _reset(self) -> None:
        self._down = False
        self._next_gain = 128
        self._lose_data()
        now = self._bus_at if self._bus_at is not None else self.clock.monotonic()
        self._settled_at = now + self.settle_s
        # The reset's own settling covers the gain it returns to.
        self._front_gain = self._front_gain_before = 128
        self._front_changed_at = -math.inf
        if self._due_at is not None:  # the oscillator starts again once settled
            self._due_at = self._settled_at
