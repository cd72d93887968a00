"""HX711 driver whose PD_SCK pulses are clocked by the SPI controller, not by Linux.

Wiring: PD_SCK on the bus's MOSI, DOUT on MISO; SCLK and chip select stay unconnected. Every
PD_SCK pulse is a MOSI ``1`` bit followed by a ``0`` bit, so a byte ``0xAA`` is four pulses and
one read is a single transfer that the controller clocks from its FIFO:

======  =========================  =====================================================
byte    MOSI                       MISO must read
======  =========================  =====================================================
0       ``0x00`` (no pulse)        ``0x00``: DOUT low throughout, a conversion is waiting
1-6     ``0xAA`` (4 pulses each)   each data bit twice, in the pulse's high and low half
7       gain pulses 25-27          ``0xFF``: DOUT goes high at the 25th pulse
8       ``0x00`` (no pulse)        ``0xFF``: DOUT is still high, the chip is in step
======  =========================  =====================================================

A high phase lasts one bus bit (1 µs at 1 MHz), and every byte ends in ``0``, so a transfer
that starts late, or the controller's idle bit after each byte, only lengthens a *low* phase:
pre-emption can delay a read but can no longer power the chip down (the chip sleeps when
PD_SCK stays high for over 60 µs).

Each data bit is taken from the sample in the pulse's low half and checked against the one in
its high half (DOUT changes only on rising edges, 0.1 µs after them); a disagreement, a lead
byte that is not all zeros or a tail that is not all ones means the chip and the driver do not
agree on where the read is: the read is discarded with the reason, and the chip is reset (MOSI
high for over 60 µs) so that both start again from a known state. A bus that reads all zeros
(DOUT stuck low) therefore never yields a force, and one that reads all ones (MISO floating
high, chip missing) never looks ready: both end as a sensor fault (S7) in the sampler.

Data-ready comes either from polling DOUT with a ``0x00`` byte (MOSI stays low, so no pulse), or,
when ``ready_pin`` names a GPIO also wired to DOUT, from its falling edge through gpiozero.

Polling is locked to the chip's own clock once the board's rate is measured (:mod:`hx711_rate`).
Two consecutive conversions whose data-ready moments are bracketed tightly (the last poll that
saw DOUT high and the first that saw it low, at most :data:`LOCK_BRACKET_S` apart) give a
:class:`ChipSchedule`: each later conversion's window, the earliest and latest moment it can
become ready, follows from the last conversion pinned and the period measured from an earlier
one, widened per period by the period's uncertainty and :data:`PERIOD_DRIFT`. A conversion whose
window is at most :data:`DIRECT_WIDTH_S` wide is read without a poll just after the window: one
transfer. A wider one is looked at first just before its window, where the poll must find DOUT
high (a poll that finds data at once cannot show a conversion earlier than predicted), then at
its middle, each look narrowing it. Reading blind is earned: :data:`DIRECT_AFTER_LOOKS` looks
that narrowed windows already that narrow, doubled for each schedule the chip did not keep. A
blind read that finds no conversion (its lead byte reads DOUT high) has sent pulses while the
datasheet wants PD_SCK low, so the chip is reset as after any read out of step. The schedule is
dropped, and polling goes on as before (every :data:`POLL_INTERVAL_S` from a little before the
conversion is due, learnt from the last one), while the rate is unknown, after a reset, when a
look or a read falls outside its window, and after a race. On the emulator converting on its
own clock polling costs about 1.2-1.25 transfers a conversion (4-6 before the lock), and each
conversion is picked up within :data:`DIRECT_WIDTH_S` (0.5 ms, 4 % of a period) of becoming
ready (``tests/hw/test_hx711_schedule.py``).

A chip that resets part-way through a transfer (a power glitch) turns every bit after the reset
into a one, in both halves, and the tail reads ``0xFF`` as it should: the checks above catch it
only when a high-half and a low-half sample straddle the reset. What gives the reset away is the
silence after it: the chip holds DOUT high while it settles (50 ms at 80 samples/s). So a read
whose last :data:`DOUBT_BITS` or more bits are ones (all a reset could have touched) is held
until the next conversion comes on time (within :data:`SILENCE_PERIODS` periods of the read),
which proves the chip did not reset; a read with fewer trailing ones is used at once, and a
reset inside it can only have raised its last ``DOUBT_BITS - 1`` bits: an error of at most
``2**(DOUBT_BITS - 1) - 1`` counts, upwards (:data:`RESET_ERROR_BOUND_COUNTS`). Of a stream of
noisy readings about one in ``2**DOUBT_BITS`` is held; while every reading is doubtful (the
full-scale code) each one comes out a period late, once the next has confirmed it.

The chip converts on its own oscillator whatever the bus does, and what it does when a
conversion falls due during a read is not in the datasheet (finish the word, restart with the
new one, switch to it from the current bit). On the locked schedule the race is judged on the
chip's own clock: the lead byte found a conversion after the last one read, so that one was
ready before the read began; a later one whose window ended before the read began was ready
too (the reading thread was stalled: the latest is read, however long the stall); and a read
is discarded (``races``) only when a conversion's window reaches into it, so that it may really
have fallen due during the read. The windows hold while the chip keeps its period within
:data:`PERIOD_DRIFT` per period; they widen with the periods since a conversion was last
pinned, so after a stall of ``n`` periods a read that begins within about ``n`` times the
period's uncertainty and drift of a conversion is discarded too. The transfer's start and end
are taken on the clock around the whole call, so a stall inside it counts as part of the read.
Without the schedule the driver knows only the earliest moment the conversion it reads can
have become ready (the last poll that found DOUT high, the data-ready edge, or one period after
the conversion before), and a read that may not have ended :data:`OSCILLATOR_TOLERANCE` short
of a period after that moment is discarded: a reader stalled after its last look loses its
read. No reset is needed: a race that left the chip out of step fails the tail check (and
resets it); one that passes it saw DOUT high after the last pulse, so the chip is in step (it
finished the word, or switched to the new one) or holds a 1 bit part-way through the new word (it
restarted), and then its next conversion starts a word afresh: either way the next fall of
DOUT is a new conversion, read from its first bit.

A silence longer than :data:`SILENCE_PERIODS` periods makes the driver assume a reset (gain
128, settling). A chip left part-way through a read holds DOUT at a data bit and may never look
ready again, so a silence longer than the settling time and two periods makes the driver reset
the chip itself.
"""

from __future__ import annotations

import errno
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dermaguard.common.clock import Clock, RealClock
from dermaguard.hw.hx711_protocol import (
    DATA_BITS,
    RESET_GAIN,
    HX711Driver,
    HX711Error,
    ReadDiscarded,
    signed24,
)
from dermaguard.hw.hx711_rate import RateWatch, WrongRate
from dermaguard.hw.pins import PinFactoryUnavailable

log = logging.getLogger(__name__)

#: Four PD_SCK pulses: MOSI 1 then 0, four times.
PULSES_BYTE = 0xAA
#: A byte with MOSI low throughout: no pulse; MISO reads DOUT eight times.
QUIET_BYTE = 0x00
#: The byte after the data, by gain: 1, 2 or 3 more pulses (25, 26 or 27 in all).
GAIN_BYTE = {128: 0x80, 32: 0xA0, 64: 0xA8}
DATA_BYTES = DATA_BITS // 4
FRAME_LEN = 1 + DATA_BYTES + 2
#: MOSI is held high this long to reset the chip (it powers down after 60 µs).
RESET_HIGH_US = 80
#: A chip silent for this many periods while polled has reset (it is never silent longer
#: than one period while it runs, and at least its settling time after a reset).
SILENCE_PERIODS = 2
#: Share of the settling time after a reset during which the driver does not look for data.
SETTLE_QUIET_SHARE = 0.9
#: Interval between data-ready polls once a conversion is due.
POLL_INTERVAL_S = 0.00025
#: A read whose last this many bits (or more) are ones may hide a chip reset: it is held until
#: the next conversion confirms it.
DOUBT_BITS = 8
#: The most a reset inside a read that is used at once can have added to it, in counts.
RESET_ERROR_BOUND_COUNTS = (1 << (DOUBT_BITS - 1)) - 1
#: How much shorter than the nominal period the chip's oscillator may make a conversion: an
#: engineering estimate (the datasheet gives the rates, not their spread).
OSCILLATOR_TOLERANCE = 0.1
#: Latest a data-ready edge callback is assumed to run after the edge (``ready_pin`` only).
EDGE_SLACK_S = 0.001
#: Bus bits per byte on the wire: 8 and the controller's idle bit.
BITS_PER_BYTE_ON_WIRE = 9
_STALE_EVENT_BACKOFF_S = 0.0005
#: How far the chip's period may move from the one measured over the last few seconds, per
#: period elapsed: an engineering estimate (the oscillator follows temperature and supply,
#: over minutes; this allows a hundred times the change a warming room makes in seconds).
PERIOD_DRIFT = 0.001
#: A data-ready bracket (the last poll that saw DOUT high to the first that saw it low) at
#: most this wide pins the phase well enough to lock the schedule on two consecutive ones.
LOCK_BRACKET_S = 4 * POLL_INTERVAL_S
#: A conversion whose ready window is at most this wide is read without a poll, just after
#: the window: it is picked up at most this late, no later than a poll every POLL_INTERVAL_S
#: picks it up. A wider window is halved by one poll at its middle first.
DIRECT_WIDTH_S = 2 * POLL_INTERVAL_S
#: Consistent looks (polls or data-ready edges that narrowed a window no wider than
#: :data:`DIRECT_WIDTH_S`) a new schedule needs before the driver reads without looking first.
#: Each schedule the chip did not keep doubles the number (up to
#: :data:`DIRECT_AFTER_LOOKS_MAX`), so a chip whose conversions jitter (an emulator's thread on
#: a busy host) is polled as before instead of read blind; a schedule kept for twice the number
#: halves it again.
DIRECT_AFTER_LOOKS = 32
DIRECT_AFTER_LOOKS_MAX = 1024
#: Read this long after a window ends, for the clock's rounding.
READ_AFTER_S = 0.00001
#: What a read takes beyond its bus bits (the system call, a busy CPU): a read that would end
#: within this of the next conversion's window waits for that conversion instead.
READ_SLACK_S = 2 * POLL_INTERVAL_S
#: Periods after which the period is measured again from a fresh start, so it follows drift.
EPOCH_PERIODS = 800


class SpiBus(Protocol):
    """The part of gpiozero's SPI interface the driver uses."""

    def transfer(self, data: list[int]) -> list[int]: ...

    def close(self) -> None: ...


class _LostBus:
    """Stands in for a bus that was closed and could not be opened again: a bus error."""

    def transfer(self, data: list[int]) -> list[int]:
        raise OSError(errno.EIO, "the SPI bus was closed and could not be opened again")

    def close(self) -> None:
        pass


class SpiUnavailable(PinFactoryUnavailable):
    """The hardware SPI bus cannot be opened; the message says what to enable or check."""


class FrameError(Exception):
    """The bits of a read do not hang together: the chip and the driver are out of step."""


def read_frame(gain: int) -> list[int]:
    """The bytes one read sends: a quiet lead byte, 24 data pulses, the gain pulses, a check."""
    return [QUIET_BYTE, *([PULSES_BYTE] * DATA_BYTES), GAIN_BYTE[gain], QUIET_BYTE]


def decode_frame(miso: Sequence[int]) -> int:
    """The 24-bit code a read's MISO bytes carry; :class:`FrameError` if they disagree."""
    if len(miso) != FRAME_LEN:
        raise FrameError(f"the bus returned {len(miso)} bytes for a {FRAME_LEN}-byte read")
    if miso[0] != 0x00:
        raise FrameError(
            f"DOUT was not low before the first pulse (read {miso[0]:#010b}): "
            "no conversion was waiting"
        )
    code = 0
    for index, byte in enumerate(miso[1 : 1 + DATA_BYTES]):
        for pair in range(4):
            high = (byte >> (7 - 2 * pair)) & 1
            low = (byte >> (6 - 2 * pair)) & 1
            if high != low:
                bit = 4 * index + pair + 1
                raise FrameError(
                    f"data bit {bit} read {high} while PD_SCK was high and {low} after it "
                    "fell: DOUT changed between clock edges"
                )
            code = (code << 1) | low
    gain_byte, check = miso[1 + DATA_BYTES], miso[2 + DATA_BYTES]
    if gain_byte != 0xFF or check != 0xFF:
        raise FrameError(
            f"DOUT did not stay high after the 25th pulse (read {gain_byte:#04x}, "
            f"{check:#04x}): the chip is not where the read ended"
        )
    return code


def trailing_ones(code24: int) -> int:
    """How many of a 24-bit code's last bits are ones (all a reset mid-read could set)."""
    return ((code24 ^ (code24 + 1)) & 0x1FFFFFF).bit_length() - 1


def reset_bytes(hz: int) -> list[int]:
    """MOSI high for over 60 µs at ``hz``, then low: the chip powers down, then resets."""
    ones = max(1, math.ceil(RESET_HIGH_US * 1e-6 * hz / 8))
    return [0xFF] * ones + [QUIET_BYTE]


def open_spi(pin_factory: Any, *, port: int, device: int, hz: int, mode: int) -> Any:
    """The kernel's SPI device through gpiozero's pin factory; never its software fallback.

    gpiozero falls back to bit-banging SPI with a warning when the hardware bus cannot be
    opened; that would bring back exactly the timing this driver exists to avoid, so the
    fallback is closed again and the start-up fails with what to fix.
    """
    from gpiozero.exc import SPISoftwareFallback

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spi = pin_factory.spi(port=port, device=device)
        except Exception as exc:
            raise SpiUnavailable(_spi_help(port, device, str(exc))) from exc
    fallback = [w for w in caught if issubclass(w.category, SPISoftwareFallback)]
    if fallback:
        spi.close()
        raise SpiUnavailable(_spi_help(port, device, str(fallback[0].message)))
    try:
        spi.rate = hz
        spi.clock_mode = mode
    except Exception as exc:
        spi.close()
        detail = f"setting {hz} Hz, mode {mode}: {exc}"
        raise SpiUnavailable(_spi_help(port, device, detail)) from exc
    return spi


def _spi_help(port: int, device: int, detail: str) -> str:
    return (
        f"cannot open the hardware SPI bus /dev/spidev{port}.{device} ({detail}). "
        "Enable it with 'dtparam=spi=on' in /boot/firmware/config.txt and reboot, check that "
        "the service user may open /dev/spidev* (group spi), and that nothing else uses "
        "GPIO 7-11; or wire the HX711 to two free GPIOs and set hx711.interface: gpio"
    )


class ChipSchedule:
    """When the chip's conversions become ready, as far as the driver knows it, honestly.

    Conversion ``k`` (counted from the lock) becomes ready within :meth:`window`. The windows
    come from the last conversion whose moment was pinned (the anchor: a poll that saw DOUT
    high bounds it from below, one that saw it low or a read from above) and the period,
    measured from an earlier pinned conversion (the epoch) to the anchor: the period lies
    between the two brackets' extremes over the periods between them. A window ``n`` periods
    from the anchor is widened by ``n`` times the period's uncertainty and the allowed drift
    (:data:`PERIOD_DRIFT`). Every bound holds as long as the chip keeps its clock within that
    drift; a look that contradicts a window says it did not (a reset, a glitch) and the
    driver drops the schedule.
    """

    def __init__(self, first: tuple[float, float], second: tuple[float, float]) -> None:
        """``first`` and ``second``: brackets of two consecutive conversions (0 and 1)."""
        self._epoch = (0, *first)
        self._anchor = (1, *second)
        shortest, longest = second[0] - first[1], second[1] - first[0]
        self.period_s = (shortest + longest) / 2
        self.period_error_s = (longest - shortest) / 2
        #: Looks that fell inside windows no wider than :data:`DIRECT_WIDTH_S` and narrowed
        #: them, since the lock: tests of the schedule as tight as a read without a look.
        self.looks = 0

    def window(self, k: int) -> tuple[float, float]:
        """Earliest and latest clock time conversion ``k`` can become ready."""
        a, lo, hi = self._anchor
        n = k - a
        spread = abs(n) * (self.period_error_s + PERIOD_DRIFT * self.period_s)
        return lo + n * self.period_s - spread, hi + n * self.period_s + spread

    def observe(self, k: int, lo: float, hi: float) -> bool:
        """Conversion ``k`` became ready after ``lo`` and by ``hi``; False if no moment of its
        window fits (the schedule is wrong), else pin it and refine the period."""
        w_lo, w_hi = self.window(k)
        lo, hi = max(lo, w_lo), min(hi, w_hi)
        if lo > hi:
            return False
        if w_hi - w_lo <= DIRECT_WIDTH_S and hi - lo < w_hi - w_lo:
            self.looks += 1  # it narrowed a window already narrow enough to read blind on
        self._anchor = (k, lo, hi)
        e, e_lo, e_hi = self._epoch
        n = k - e
        if n > 0:
            shortest, longest = (lo - e_hi) / n, (hi - e_lo) / n
            if (longest - shortest) / 2 <= self.period_error_s:
                self.period_s = (shortest + longest) / 2
                self.period_error_s = (longest - shortest) / 2
            if n >= EPOCH_PERIODS:
                self._epoch = self._anchor
        return True


class HX711Spi(HX711Driver):
    """One HX711 on the SPI bus, read one conversion at a time at a fixed gain.

    ``spi`` is an open bus (:func:`open_spi`, or a simulated one); ``ready_pin`` an optional
    GPIO also wired to DOUT. ``clock`` times silences, so that a simulation on a virtual clock
    never mistakes its own pauses for a chip reset. Call :meth:`reset` at start-up: a previous
    process may have left the chip at another gain. ``open_bus`` opens the bus again the way
    ``spi`` was opened, for :meth:`reopen` after repeated bus errors.
    """

    def __init__(
        self,
        spi: SpiBus,
        *,
        gain: int = 128,
        rate_sps: int = 80,
        hz: int = 1_000_000,
        ready_pin: int | str | None = None,
        pin_factory: Any = None,
        clock: Clock | None = None,
        open_bus: Callable[[], SpiBus] | None = None,
    ) -> None:
        super().__init__(gain, rate_sps)
        #: The board's real rate, measured before the configured one is trusted (hx711_rate).
        self.rate_watch = RateWatch(rate_sps)
        self._spi = spi
        self._open_bus = open_bus
        #: Times the bus was closed and opened again (:meth:`reopen`).
        self.reopens = 0
        self._period_s = 1.0 / rate_sps
        self._frame = read_frame(gain)
        self._reset_frame = reset_bytes(hz)
        self._clock: Clock = clock if clock is not None else RealClock()
        # Data-ready schedule (clock time): when the next conversion is due, how early to look.
        self._due: float | None = None
        self._early_s = self._period_s / 4
        # Clock time of the first poll that found no data since the last conversion.
        self._silent_since: float | None = None
        # Clock time before which a reset chip is still settling: no point in looking.
        self._quiet_until = -math.inf
        self._hz = hz
        self._frame_s = FRAME_LEN * BITS_PER_BYTE_ON_WIRE / hz
        # Clock time the last transfer ended (a transfer never starts before it).
        self._bus_end = -math.inf
        self._shortest_period_s = self._period_s * (1.0 - OSCILLATOR_TOLERANCE)
        # When the conversion being read can have become ready, at the earliest and latest;
        # the last time DOUT was seen high since the last read; the earliest the next
        # conversion can become ready (one period after the last, or a reset's settling).
        self._ready_from = -math.inf
        self._ready_at = -math.inf
        self._quiet_seen = -math.inf
        self._next_from = -math.inf
        self._edge_at: float | None = None
        # Upper bound of the moment the conversion found ready became so (the end of the poll
        # that saw DOUT low, or the wake-up by the edge).
        self._found_by = -math.inf
        # The chip's schedule once locked, and which of its conversions was read last (None:
        # not known, the next is found by polling); whether the next read goes without a look.
        self._sched: ChipSchedule | None = None
        self._last_read: int | None = None
        self._direct = False
        # Brackets of the conversion found and of the one read before it, when tight enough
        # to lock the schedule on (LOCK_BRACKET_S).
        self._bracket: tuple[float, float] | None = None
        self._candidate: tuple[float, float] | None = None
        # A doubtful code held until the next conversion confirms it, and when its read ended.
        self._held: int | None = None
        self._held_end = -math.inf
        #: Reads whose bits did not hang together (each followed by a reset).
        self.sync_errors = 0
        #: Reads a conversion may have fallen due in (each discarded, the chip reset).
        self.races = 0
        #: Doubtful codes held; of those, confirmed by the next conversion and used, and dropped
        #: (a silence followed, or a fresher good code took their place).
        self.held = 0
        self.confirmed = 0
        self.unconfirmed = 0
        #: Silences long enough that the chip must have reset.
        self.silences = 0
        self.resets = 0
        #: Data-ready polls; every SPI transfer (polls, reads, resets); reads made without a
        #: poll on the locked schedule; times the schedule was dropped because the chip did not
        #: keep it (a look or a read outside its window, or a read that may have raced).
        self.polls = 0
        self.transfers = 0
        self.direct_reads = 0
        self.schedule_drops = 0
        self._looks_needed = DIRECT_AFTER_LOOKS
        # How late a sleep on the schedule typically wakes (clock time, a running mean): a
        # look meant for the middle of a window is started that much early.
        self._oversleep_s = 0.0
        # A poll saw DOUT high since the last read.
        self._seen_high = False
        self._ready_dev: Any = None
        if ready_pin is not None:
            from gpiozero import DigitalInputDevice

            self._ready_dev = DigitalInputDevice(
                ready_pin, pull_up=None, active_state=True, pin_factory=pin_factory
            )
            self._ready_dev.when_deactivated = self._on_ready_edge

    @property
    def interface(self) -> str:
        return "spi"

    @property
    def data_ready(self) -> str:
        """``edge`` (a GPIO wired to DOUT) or ``poll`` (DOUT read over the bus)."""
        return "edge" if self._ready_dev is not None else "poll"

    def reset(self) -> None:
        """Power-cycle the chip: MOSI high for over 60 µs, then low."""
        with self._lock:
            self._check_open()
            self._reset()

    def reopen(self) -> None:
        """Close the bus, open it again through ``open_bus``, and reset the chip.

        What a person would try after repeated bus errors (a wedged ``spidev`` handle, a
        controller left in a bad state), through the same code that opened it at start-up.
        Raises what opening or the reset raises; the old handle stays closed either way, so
        the next read fails as a bus error and the caller tries again later.
        """
        if self._open_bus is None:
            raise HX711Error("the driver was given a bus it cannot open again")
        with self._lock:
            self._check_open()
            try:
                self._spi.close()
            except OSError as exc:  # closing a broken handle may fail too; it is gone anyway
                log.debug("closing the SPI bus failed: %s", exc)
            self._spi = _LostBus()  # until the new one is open: every transfer fails as EIO
            self._spi = self._open_bus()
            self.reopens += 1
            self._reset()

    def close(self) -> None:
        """Release the bus and the data-ready pin; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._ready_dev is not None:
                self._ready_dev.close()
            self._spi.close()

    # -- internals ------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        """The schedule is locked to the chip's period and the next conversion is known."""
        return self._sched is not None and self._last_read is not None

    def _transfer(self, data: list[int]) -> tuple[list[int], float, float]:
        """One transfer, counted; what MISO read and when, at the latest, it began and ended."""
        clock = self._clock
        start = max(clock.monotonic(), self._bus_end)
        self.transfers += 1
        miso = self._spi.transfer(data)
        end = max(clock.monotonic(), start + len(data) * BITS_PER_BYTE_ON_WIRE / self._hz)
        self._bus_end = end
        return miso, start, end

    def _drop_schedule(self, *, missed: bool) -> None:
        if missed and self._sched is not None:
            self.schedule_drops += 1
            self._looks_needed = min(2 * self._looks_needed, DIRECT_AFTER_LOOKS_MAX)
        self._sched = None
        self._last_read = None
        self._direct = False

    def _reset(self) -> None:
        self._transfer(list(self._reset_frame))
        self.resets += 1
        self._after_reset()

    def _after_reset(self) -> None:
        super()._after_reset()
        self._due = None
        self._silent_since = None
        now = self._clock.monotonic()
        settle = self.rate_watch.settle_s(self._settle_s)
        self._quiet_until = now + settle * SETTLE_QUIET_SHARE
        self.rate_watch.restart()
        # A reset chip converts again only once it has settled.
        self._next_from = self._quiet_until
        self._quiet_seen = -math.inf
        self._drop_held()
        self._drop_schedule(missed=False)
        self._candidate = self._bracket = None
        self._seen_high = False

    def _now(self) -> float:
        return self._clock.monotonic()

    def _on_ready_edge(self) -> None:
        self._edge_at = self._clock.monotonic()

    def _drop_held(self) -> None:
        if self._held is not None:
            self._held = None
            self.unconfirmed += 1

    def _found_ready(self) -> None:
        """Bracket when the conversion found ready became so (see the module)."""
        now = self._clock.monotonic()
        self._ready_at = now
        self._bracket = None
        if self._direct:  # read on the schedule: its window is the bracket (_judge_race)
            return
        start = max(self._quiet_seen, self._next_from)
        edge = self._edge_at
        if edge is not None and edge > self._quiet_seen:
            start = max(start, edge - EDGE_SLACK_S)
        self._ready_from = start
        # The schedule takes only what was seen (DOUT high at a poll or at the end of the last
        # read), not the assumed promptness of an edge callback or the nominal period's
        # tolerance: a bound that failed would shift every later window.
        seen = self._quiet_seen
        by = max(now, self._found_by)
        if by - seen <= LOCK_BRACKET_S:
            self._bracket = (seen, by)
        sched, last = self._sched, self._last_read
        if sched is not None and last is not None and not sched.observe(last + 1, seen, by):
            log.debug("HX711 data-ready outside its predicted window: schedule dropped")
            self._drop_schedule(missed=True)

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        # A reset chip holds DOUT high while it settles; looking earlier finds nothing, or,
        # with DOUT stuck low, starts another doomed read (and another reset) at once.
        quiet = self._clock.to_real(self._quiet_until - self._clock.monotonic())
        if quiet > 0:
            time.sleep(min(quiet, max(0.0, deadline - time.monotonic())))
            if self._clock.monotonic() < self._quiet_until:
                return False
        self._direct = False
        if self._ready_dev is not None:
            found = self._wait_edge(deadline)
        else:
            scheduled = self._wait_scheduled(deadline) if self.locked else None
            found = self._wait_polling(deadline) if scheduled is None else scheduled
        now_clock = self._clock.monotonic()
        if found:
            self._found_ready()
            if self.locked:  # should the schedule be dropped, polling starts from here
                self._due = now_clock + self._period_s
        if not found:
            if self._silent_since is None:
                self._silent_since = now_clock
            elif now_clock - self._silent_since > self.rate_watch.silence_limit_s(
                self._settle_s, self._period_s
            ):
                # Silent for longer than a reset chip settles: it may be stuck part-way
                # through a read, holding DOUT at a data bit. Start it again.
                log.debug("HX711 silent for %.3f s: resetting it", now_clock - self._silent_since)
                self._reset()
            return False
        self.rate_watch.ready(now_clock)
        if self._silent_since is not None:
            silent = now_clock - self._silent_since
            self._silent_since = None
            if silent > SILENCE_PERIODS * self._period_s and self._chip_gain != RESET_GAIN:
                # Longer than a running chip is ever silent: it reset (power glitch, or MOSI
                # left high), so this conversion was made at the reset gain.
                self.silences += 1
                self._chip_gain = RESET_GAIN
        return True

    def _probe(self) -> bool:
        """DOUT low, read over the bus with MOSI held low (no pulse)."""
        self.polls += 1
        miso, start, end = self._transfer([QUIET_BYTE])
        if miso[0] & 1:
            self._quiet_seen = start  # DOUT high: no conversion was ready before this
            self._seen_high = True
            sched, last = self._sched, self._last_read
            if (
                sched is not None
                and last is not None
                and not sched.observe(last + 1, start, math.inf)
            ):
                log.debug("HX711 still not ready after its predicted window: schedule dropped")
                self._drop_schedule(missed=True)
            return False
        self._found_by = end
        return True

    def _wait_scheduled(self, deadline: float) -> bool | None:
        """Wait on the locked schedule: read just after the next conversion's window, or, while
        the window is wider than :data:`DIRECT_WIDTH_S` (or the schedule is new), poll at its
        middle, halving it. ``None``: the schedule was dropped, poll as before.

        A look goes ahead whenever the clock has not reached the moment slept for: the deadline
        came first, or the clock runs behind real time (a lockstep simulation, which moves on
        only once it has seen the look); then it looks every :data:`POLL_INTERVAL_S` as before.
        """
        clock = self._clock
        lagging = False
        while True:
            sched, last = self._sched, self._last_read
            if sched is None or last is None:
                return None
            now = clock.monotonic()
            k = last + 1
            while sched.window(k + 1)[1] + READ_AFTER_S <= now:
                k += 1  # stalled: this one has surely come too; read the latest
            lo, hi = sched.window(k)
            if sched.looks >= 2 * self._looks_needed > 2 * DIRECT_AFTER_LOOKS:
                self._looks_needed //= 2
            trusted = sched.looks >= self._looks_needed
            read = trusted
            if now >= hi + READ_AFTER_S:
                next_lo, next_hi = sched.window(k + 1)
                if now + self._frame_s + READ_SLACK_S < next_lo:
                    if trusted:
                        self._direct = True
                        self.direct_reads += 1
                        return True
                    target = now
                else:  # the next one is about to come: read it, not one it may overtake
                    target = next_hi + READ_AFTER_S
            elif hi - lo > DIRECT_WIDTH_S or not trusted:
                read = False
                if k == last + 1 and not self._seen_high:
                    # First a look before the window, which must find no data: a poll that
                    # finds data at once would not show a conversion earlier than predicted.
                    target = lo - POLL_INTERVAL_S - self._oversleep_s
                else:
                    target = (lo + hi) / 2 - min(self._oversleep_s, (hi - lo) / 4)
            else:
                target = hi + READ_AFTER_S
            if now < target:
                wait = clock.to_real(target - now)
                if lagging:
                    wait = min(wait, POLL_INTERVAL_S)
                wait = min(wait, deadline - time.monotonic())
                if wait > 0:
                    time.sleep(wait)
                    woke = clock.monotonic()
                    if woke >= target:
                        self._oversleep_s += (woke - target - self._oversleep_s) / 8
                        continue  # on time: decide again with the clock where it is now
                    lagging = True
            elif read:
                continue
            if self._probe():
                return True
            if self._silent_since is None:
                self._silent_since = clock.monotonic()
            if time.monotonic() >= deadline:
                return False

    def _wait_polling(self, deadline: float) -> bool:
        """Poll from a little before the conversion is due; learn how early to start.

        The schedule is kept on the driver's clock, which runs with the chip's conversions:
        real time on a Pi, the virtual time of a simulation (whose chip converts faster).
        """
        clock = self._clock
        if self._due is not None:
            wait = clock.to_real(self._due - self._early_s - clock.monotonic())
            wait = min(wait, deadline - time.monotonic())
            if wait > 0:
                time.sleep(wait)
        polls = 0
        while True:
            polls += 1
            if self._probe():
                if polls == 1:  # already waiting: it may have been ready a while
                    self._early_s = min(self._early_s * 2, self._period_s / 2)
                elif polls > 8:
                    self._early_s = max(self._early_s / 2, 2 * POLL_INTERVAL_S)
                # No schedule until the board's period is measured (hx711_rate).
                known = self.rate_watch.known
                self._due = clock.monotonic() + self._period_s if known else None
                return True
            if self._silent_since is None:
                self._silent_since = self._clock.monotonic()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(POLL_INTERVAL_S, remaining))

    def _wait_edge(self, deadline: float) -> bool:
        """Wait for the data-ready GPIO to fall, trusting its level over a stale edge event."""
        dev = self._ready_dev
        while True:
            remaining = deadline - time.monotonic()
            if dev.value:
                self._quiet_seen = self._clock.monotonic()
                if self._silent_since is None:
                    self._silent_since = self._quiet_seen
            if not dev.wait_for_inactive(max(0.0, remaining)):
                return False
            if not dev.value:
                return True
            if remaining <= 0:
                return False
            time.sleep(_STALE_EVENT_BACKOFF_S)

    def _read_conversion(self) -> int:
        direct, self._direct = self._direct, False
        miso, start, end = self._transfer(list(self._frame))
        made_at = self._take_gain()
        self._quiet_seen = -math.inf
        self._seen_high = False
        self._edge_at = None
        self._next_from = self._ready_from + self._shortest_period_s
        try:
            code24 = decode_frame(miso)
        except FrameError as exc:
            self.discarded += 1
            self.sync_errors += 1
            if direct:  # read on the schedule, and no conversion was there: it is wrong
                self._drop_schedule(missed=True)
            self._reset()
            raise ReadDiscarded(f"out of step with the chip, reset it: {exc}") from None
        # The tail read DOUT high after the last pulse: no conversion was waiting then, and
        # the next fall of DOUT is a new conversion, whatever the chip did mid-read.
        self._quiet_seen = end
        race = self._judge_race(start, end)
        self._next_from = self._ready_from + self._shortest_period_s
        if race is not None:
            self.discarded += 1
            self.races += 1
            self._drop_held()
            # Which conversion the chip left waiting depends on what it did mid-read: find the
            # next one by polling, and lock again.
            self._drop_schedule(missed=False)
            self._candidate = self._bracket = None
            raise ReadDiscarded(
                f"the read may have ended after the next conversion fell due ({race})"
            )
        ready_from = self._ready_from
        confirmed = self._held is not None and (
            self._ready_at - self._held_end <= SILENCE_PERIODS * self._period_s
        )
        try:
            self._check_gain(made_at, ready_from)
        except ReadDiscarded:
            self._drop_held()
            raise
        if self.rate_watch.problem is not None:
            self.discarded += 1
            self._drop_held()
            raise WrongRate(self.rate_watch.problem)
        return self._doubt(signed24(code24), trailing_ones(code24), end, confirmed=confirmed)

    def _judge_race(self, start: float, end: float) -> str | None:
        """Why the read from ``start`` to ``end`` may overlap the next conversion, or None.

        On the locked schedule: the lead byte saw a conversion after the last one read, so that
        one was ready before the read; any later conversion whose window lies wholly before the
        read was ready too (the thread was stalled: the latest is read), and one whose window
        reaches into the read may have fallen due during it. Sets which conversion was read,
        and the earliest it can have become ready (``_ready_from``). Without the schedule: the
        earliest the conversion read can have become ready, plus the shortest period.
        """
        sched, last = self._sched, self._last_read
        if sched is not None and last is not None:
            if not sched.observe(last + 1, -math.inf, end):
                log.debug("HX711 conversion ready before its predicted window: schedule dropped")
                self._drop_schedule(missed=True)
            else:
                index = last + 1
                while True:
                    lo, hi = sched.window(index + 1)
                    if lo > end:
                        break
                    if hi > start:
                        self._ready_from = sched.window(index)[0]
                        return (
                            f"on the chip's schedule it fell due {(lo - start) * 1000:.2f} to "
                            f"{(hi - start) * 1000:.2f} ms after the read began, and the read "
                            f"took {(end - start) * 1000:.2f} ms"
                        )
                    index += 1
                self._last_read = index
                self._ready_from = sched.window(index)[0]
                self._bracket = None
                return None
        ready_from = self._ready_from
        if end > ready_from + self._shortest_period_s:
            return (
                f"{(end - ready_from) * 1000:.2f} ms after the conversion may have become "
                f"ready, a period is at least {self._shortest_period_s * 1000:.2f} ms"
            )
        self._try_lock()
        return None

    def _try_lock(self) -> None:
        """Lock the schedule on the tight brackets of two consecutive conversions read, once
        the board's period is known (its rate watch): conversions a period apart, within the
        slack of a period measured by polling, are consecutive."""
        bracket, self._bracket = self._bracket, None
        candidate, self._candidate = self._candidate, bracket
        watch = self.rate_watch
        if bracket is None or candidate is None or watch.measured_sps is None or watch.problem:
            return
        period = 1.0 / watch.measured_sps
        gap = (bracket[0] + bracket[1] - candidate[0] - candidate[1]) / 2
        if 0.5 * period < gap < 1.5 * period:
            self._sched = ChipSchedule(candidate, bracket)
            self._last_read = 1

    def _doubt(self, code: int, ones: int, end: float, *, confirmed: bool) -> int:
        """Use ``code`` at once, or hold it while a reset may hide in its trailing ones."""
        held = self._held
        self._held = None
        if ones < DOUBT_BITS:
            if held is not None:
                self.unconfirmed += 1  # confirmed or not, the fresher code takes its place
            self.reads += 1
            return code
        self.held += 1
        self._held, self._held_end = code, end
        if held is not None and confirmed:
            self.confirmed += 1
            self.reads += 1
            return held
        if held is not None:
            self.unconfirmed += 1
        self.discarded += 1
        raise ReadDiscarded(
            f"its last {ones} bits read as ones, as the bits after a chip reset part-way "
            "through the read would: held until the next conversion comes on time"
        )
