"""An SPI controller model whose MOSI line is the emulated HX711's PD_SCK and MISO its DOUT.

On a Pi the controller clocks a whole transfer out of its FIFO in hardware: each bit lasts one
bus clock period whatever the CPU does, and after each byte the BCM2835 inserts one idle bit
during which MOSI keeps its level. This model gives the chip exactly that timeline: bit ``k`` of
a transfer starts at ``t0 + k * T`` (plus the idle bits so far), MOSI takes the bit's level at
its start, and MISO is sampled half a bit later. In SPI mode 0 that is the rising SCLK edge in
the middle of the bit; in mode 1 MOSI changes on the rising edge and MISO is sampled on the
falling one, also half a bit on. The host only decides when a transfer *starts* (``t0`` is the
host's ``perf_counter_ns`` when :meth:`SimSpiBus.transfer` runs, never earlier than the end of
the previous transfer), which is how pre-emption affects the real bus too. Each bit's time is
also given on the chip's clock (the clock's time when the transfer starts, never earlier than
the previous transfer's end, plus the bus time since), so a chip converting on its own clock
(:meth:`HX711Chip.run_on_clock`) can have a conversion fall due between two bits of a read.

Between transfers MOSI keeps the level of the last bit sent (the bytes the driver sends end in
``0``, so PD_SCK rests low). ``idle_high`` models a controller or a wiring fault that lets MOSI
rest high: the chip then powers down between transfers, as a real one would.

It offers the part of gpiozero's SPI interface the driver uses (``transfer``, ``rate``,
``clock_mode``, ``close``); gpiozero's own mock SPI clocks at a fixed rate with the host's
timing, which is exactly what this must not do. :meth:`SimSpiBus.reopen` stands for opening
``/dev/spidev`` again: the same controller and chip, a fresh handle.

Bus errors are injected here, at the edge, so the real driver and sampler meet them as they
would on a Pi (``spidev``'s ioctl failing with ``EIO``): :meth:`SimSpiBus.fail_transfers` makes
the next transfers raise ``OSError(EIO)`` before anything is clocked, and :meth:`SimSpiBus.wedge`
makes every transfer fail until the bus is reopened.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Sequence

from dermaguard.sim.hx711_chip import DOUT_DELAY_NS, HX711Chip

#: The controller's idle bit after each byte (BCM2835, outside DMA mode).
IDLE_BITS_PER_BYTE = 1
#: How long before a lockstep conversion a polling driver is let see DOUT still high: its poll
#: interval. A driver can only rule out a conversion falling due during its read when it saw
#: DOUT high shortly before the one it reads (see :mod:`dermaguard.hw.hx711_spi`), as it does
#: on a chip converting in real time; a lockstep simulation that jumps a whole period gives it
#: that look first (:meth:`SimSpiBus.await_look`).
LOOK_AHEAD_S = 0.00025


class SimSpiBus:
    """One SPI bus with the emulated HX711 on MOSI (PD_SCK) and MISO (DOUT)."""

    def __init__(
        self,
        chip: HX711Chip,
        *,
        hz: int = 1_000_000,
        mode: int = 0,
        idle_bits: int = IDLE_BITS_PER_BYTE,
    ) -> None:
        if hz <= 0:
            raise ValueError("hz must be > 0")
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"mode must be 0-3, got {mode}")
        self.chip = chip
        self._hz = hz
        self._mode = mode
        self.idle_bits = idle_bits
        #: Fault injection: MOSI rests high between transfers (the chip powers down).
        self.idle_high = False
        #: Fault injection: MISO reads this level whatever DOUT does (a floating or shorted
        #: line, a missing chip); ``None`` for a healthy line.
        self.miso_stuck: bool | None = None
        #: Test hook, called with the bit index before each bit of a transfer is clocked.
        self.on_bit: Callable[[int], None] | None = None
        self.transfers = 0
        self.bytes = 0
        #: Transfers that raised an injected bus error; times the bus was opened again.
        self.errors_raised = 0
        self.reopens = 0
        self._fail_next = 0
        self._wedged = False
        self._fault_lock = threading.Lock()
        self._mosi = False
        self._end_ns = 0
        self._end_at = -float("inf")  # the last transfer's end on the chip's clock
        self._looked = threading.Condition()
        self._last_start_at = -float("inf")
        self._closed = False

    @property
    def rate(self) -> int:
        """Bus clock in Hz (settable, as on gpiozero's hardware SPI)."""
        return self._hz

    @rate.setter
    def rate(self, hz: int) -> None:
        if hz <= 0:
            raise ValueError("rate must be > 0")
        self._hz = int(hz)

    @property
    def clock_mode(self) -> int:
        return self._mode

    @clock_mode.setter
    def clock_mode(self, mode: int) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"mode must be 0-3, got {mode}")
        self._mode = mode

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def reopen(self) -> SimSpiBus:
        """Open the bus again (a fresh ``/dev/spidev`` handle); a wedged bus works again."""
        with self._fault_lock:
            self._wedged = False
            self.reopens += 1
        self._closed = False
        return self

    def await_look(self, since: float, timeout_real_s: float) -> bool:
        """Wait until a transfer starts at clock time ``since`` or later (a poll that sees the
        clock's time now), for at most ``timeout_real_s`` real seconds; whether one did."""
        with self._looked:
            return self._looked.wait_for(
                lambda: self._last_start_at >= since, timeout=timeout_real_s
            )

    # -- fault injection -----------------------------------------------------------------

    def fail_transfers(self, count: int) -> None:
        """The next ``count`` transfers raise ``OSError(EIO)`` (a burst of bus errors)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        with self._fault_lock:
            self._fail_next = count

    def wedge(self) -> None:
        """Every transfer raises ``OSError(EIO)`` until :meth:`reopen` (a stuck handle)."""
        with self._fault_lock:
            self._wedged = True

    @property
    def failing(self) -> bool:
        """Whether the next transfer would raise an injected bus error."""
        with self._fault_lock:
            return self._wedged or self._fail_next > 0

    def _injected_error(self) -> OSError | None:
        with self._fault_lock:
            if not self._wedged and self._fail_next <= 0:
                return None
            if not self._wedged:
                self._fail_next -= 1
            self.errors_raised += 1
        return OSError(errno.EIO, os.strerror(errno.EIO))

    def transfer(self, data: Sequence[int]) -> list[int]:
        """Clock ``data`` out on MOSI (MSB first) and return what MISO read, byte for byte."""
        if self._closed:
            raise OSError("SPI bus is closed")
        error = self._injected_error()
        if error is not None:
            raise error  # as spidev's ioctl fails: nothing reaches the wire
        bit_ns = 1_000_000_000 / self._hz
        sample_ns = bit_ns / 2
        chip = self.chip
        received: list[int] = []
        bit_s = 1.0 / self._hz
        with chip.hold():
            t0 = max(time.perf_counter_ns(), self._end_ns)
            t = float(t0)
            at = at0 = max(chip.clock.monotonic(), self._end_at)
            k = 0
            for byte in data:
                if not 0 <= byte <= 0xFF:
                    raise ValueError(f"SPI byte out of range: {byte!r}")
                value = 0
                for bit in range(7, -1, -1):
                    if self.on_bit is not None:
                        self.on_bit(k)
                    level = bool((byte >> bit) & 1)
                    if level != self._mosi:
                        self._mosi = level
                        chip.drive_sck(level, int(t), at)
                    sample = chip.sample_dout(int(t + sample_ns), at + bit_s / 2)
                    if self.miso_stuck is not None:
                        sample = self.miso_stuck
                    value = (value << 1) | sample
                    t += bit_ns
                    at += bit_s
                    k += 1
                received.append(value)
                t += self.idle_bits * bit_ns  # MOSI keeps its level through the idle bit
                at += self.idle_bits * bit_s
            if self.idle_high and not self._mosi:
                self._mosi = True
                chip.drive_sck(True, int(t), at)
            self._end_ns = int(t)
            self._end_at = at
            start_at = at0
        self.transfers += 1
        self.bytes += len(received)
        with self._looked:
            self._last_start_at = start_at
            self._looked.notify_all()
        return received


#: Environment variable that selects the simulation's SPI bus model (:data:`BUS_MODELS`): a
#: benchmark's seam, read only when a simulation builds its hardware; unset means ``bits``.
BUS_MODEL_ENV = "DERMAGUARD_SIM_SPI_BUS"


def _doubled(byte: int) -> tuple[int, int]:
    """The two MISO bytes four ``0xAA`` pulses read for one byte of a word: each bit twice."""
    pairs = 0
    for bit in range(7, -1, -1):
        pairs = (pairs << 2) | (0b11 if (byte >> bit) & 1 else 0)
    return pairs >> 8, pairs & 0xFF


#: A word's byte -> the two MISO bytes that carry it in a read: the code -> frame table.
_DOUBLED = tuple(_doubled(byte) for byte in range(256))
#: Bytes of a read (see :mod:`dermaguard.hw.hx711_spi`): the lead byte, 24 data pulses, the
#: gain byte (1-3 pulses), the check byte.
_READ_LEN = 9
_DATA = (0xAA,) * 6
_GAIN_PULSES = {0x80: 25, 0xA0: 26, 0xA8: 27}


def reply_for(word: int) -> list[int]:
    """What MISO reads during a plain read of the 24-bit ``word``: a ready chip's frame."""
    hi, mid, lo = _DOUBLED[(word >> 16) & 0xFF], _DOUBLED[(word >> 8) & 0xFF], _DOUBLED[word & 0xFF]
    return [0x00, *hi, *mid, *lo, 0xFF, 0xFF]


class FrameSpiBus(SimSpiBus):
    """The SPI controller model with transfers that cost a lookup: for benchmarks only.

    :class:`SimSpiBus` clocks every bit in Python inside the reading thread, so a daemon's CPU
    in simulation includes the model's work. This bus answers the two transfers a driver makes
    in steady state at once, with what bit-by-bit clocking would have given: a data-ready poll
    (``0x00``: MISO reads DOUT, all eight samples alike) and a read of a waiting conversion
    (:meth:`HX711Chip.read_whole` takes the word out and leaves the chip as the pulses would;
    the reply comes from a code -> frame table, built once per conversion). Timing is the
    model's: a transfer starts when the host calls it (never before the last one ended), lasts
    its bits and idle bits, and is seen by :meth:`await_look`. Everything else is clocked bit by
    bit as before: resets, reads that find no conversion or run into one of the chip's own
    clock, polls across a conversion falling due, injected faults, clocks too fast for DOUT's
    0.1 µs delay, the ``on_bit`` hook.
    """

    def __init__(self, chip: HX711Chip, **bus: int) -> None:
        """``bus``: :class:`SimSpiBus`'s keywords (``hz``, ``mode``, ``idle_bits``)."""
        super().__init__(chip, **bus)
        #: Transfers answered at once (the rest were clocked bit by bit).
        self.fast_transfers = 0
        #: CPU time the calling threads spent inside :meth:`transfer` (ns): the model's own
        #: cost, which a benchmark of the daemon's CPU states beside its figure.
        self.cpu_ns = 0
        self._word: int | None = None
        self._reply: list[int] = []

    def transfer(self, data: Sequence[int]) -> list[int]:
        """As :meth:`SimSpiBus.transfer`; a poll or a plain read costs a lookup."""
        t0 = time.thread_time_ns()
        try:
            return self._transfer(data)
        finally:
            self.cpu_ns += time.thread_time_ns() - t0

    def _transfer(self, data: Sequence[int]) -> list[int]:
        n = len(data)
        plain_bus = (
            not self._closed
            and not self._mosi
            and not self.idle_high
            and self.miso_stuck is None
            and self.on_bit is None
            and not self.failing
            and 500_000_000 / self._hz >= DOUT_DELAY_NS  # MISO samples the bit just shifted
            and 1_000_000_000 / self._hz < self.chip.power_down_ns  # a pulse never powers down
            and n in (1, _READ_LEN)
            and data[0] == 0x00
        )
        if plain_bus:
            received = self._poll() if n == 1 else self._read(data)
            if received is not None:
                self.fast_transfers += 1
                return received
        return super().transfer(data)

    def _span(self) -> tuple[int, float, float]:
        """A transfer's start (``perf_counter_ns``), its start on the chip's clock, and the bit
        time, as :meth:`SimSpiBus.transfer` times them."""
        t0 = max(time.perf_counter_ns(), self._end_ns)
        at0 = max(self.chip.clock.monotonic(), self._end_at)
        return t0, at0, 1.0 / self._hz

    def _done(self, n: int, t0: int, at0: float, received: list[int]) -> list[int]:
        """Book a transfer of ``n`` bytes from ``t0``/``at0`` as the bit-level model does."""
        bits = n * (8 + self.idle_bits)
        self._end_ns = int(t0 + bits * 1_000_000_000 / self._hz)
        self._end_at = at0 + bits / self._hz
        self.transfers += 1
        self.bytes += n
        with self._looked:
            self._last_start_at = at0
            self._looked.notify_all()
        return received

    def _poll(self) -> list[int] | None:
        chip = self.chip
        bit_ns = 1_000_000_000 / self._hz
        with chip.hold():
            t0, at0, bit_s = self._span()
            # MISO samples half a bit into each of the byte's 8 bits.
            first = (int(t0 + bit_ns / 2), at0 + bit_s / 2)
            last = (int(t0 + 7.5 * bit_ns), at0 + 7.5 * bit_s)
            level = chip.quiet_dout(first, last)
            if level is None:
                return None  # DOUT may change within the byte: clock it bit by bit
            return self._done(1, t0, at0, [0xFF if level else 0x00])

    def _read(self, data: Sequence[int]) -> list[int] | None:
        pulses = _GAIN_PULSES.get(data[7])
        if pulses is None or tuple(data[1:7]) != _DATA or data[8] != 0x00:
            return None
        chip = self.chip
        bit_ns = 1_000_000_000 / self._hz
        with chip.hold():
            t0, at0, bit_s = self._span()
            # The last pulse: in the gain byte (byte 7), at bit 0, 2 or 4.
            bit = 7 * (8 + self.idle_bits) + 2 * (pulses - 25)
            rise = (int(t0 + bit * bit_ns), at0 + bit * bit_s)
            fall = (int(t0 + (bit + 1) * bit_ns), at0 + (bit + 1) * bit_s)
            end_at = at0 + _READ_LEN * (8 + self.idle_bits) * bit_s
            word = chip.read_whole(pulses, at0, end_at, rise, fall)
            if word is None:
                return None
            if word != self._word:
                self._word, self._reply = word, reply_for(word)
            return self._done(_READ_LEN, t0, at0, list(self._reply))


#: The simulation's SPI bus models by name: the exact one, and the one for benchmarks.
BUS_MODELS: dict[str, type[SimSpiBus]] = {"bits": SimSpiBus, "frames": FrameSpiBus}
