"""What every HX711 driver shares: the chip's timing facts, its errors, and the reader interface.

Two drivers implement :class:`LoadCellADC`: :class:`dermaguard.hw.hx711_spi.HX711Spi`, whose
PD_SCK pulses are clocked by the SPI controller (the default), and
:class:`dermaguard.hw.hx711.HX711`, which bit-banges PD_SCK on a GPIO pin. The sampler, the
calibration and ``check-hardware`` talk to either through this interface.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, Self

#: Settling time after reset or power-up, by output data rate (datasheet).
SETTLE_S = {10: 0.4, 80: 0.05}
#: Gain the chip uses after power-up or reset: channel A, 128.
RESET_GAIN = 128
#: Bits of data per conversion; the pulses after them only select the next gain.
DATA_BITS = 24
#: PD_SCK pulses per read -> gain (and channel) of the *next* conversion.
PULSES_FOR_GAIN = {128: 25, 32: 26, 64: 27}
#: PD_SCK held high longer than this powers the chip down; it resets when PD_SCK falls.
POWER_DOWN_US = 60


class HX711Error(Exception):
    """Base class for HX711 driver errors."""


class NotReady(HX711Error):
    """No conversion became ready in time (chip unplugged, powered down or too slow)."""


class ReadDiscarded(HX711Error):
    """A conversion was clocked out but its value must not be used; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_gain_and_rate(gain: int, rate_sps: int) -> None:
    """Refuse a gain or a data rate the chip does not have."""
    if gain not in PULSES_FOR_GAIN:
        raise ValueError(f"gain must be 128, 64 or 32, got {gain}")
    if rate_sps not in SETTLE_S:
        raise ValueError(f"rate_sps must be 10 or 80, got {rate_sps}")


def signed24(code24: int) -> int:
    """The chip's two's-complement 24-bit code as a Python int."""
    return code24 - (1 << 24) if code24 & 0x800000 else code24


class LoadCellADC(Protocol):
    """One HX711 read one conversion at a time at a fixed gain."""

    reads: int
    discarded: int
    timeouts: int

    @property
    def interface(self) -> str:
        """``spi`` or ``gpio``: how PD_SCK is clocked."""
        ...

    @property
    def gain(self) -> int: ...

    @property
    def rate_sps(self) -> int: ...

    @property
    def settle_s(self) -> float: ...

    @property
    def may_be_settling(self) -> bool:
        """The chip may have reset since its last good conversion and still be settling."""
        ...

    def read_raw(self, timeout_s: float, *, exact_timeout: bool = False) -> int:
        """Wait for a conversion and return its signed code; NotReady or ReadDiscarded."""
        ...

    def reset(self) -> None:
        """Power-cycle the chip, so it converts at the reset gain and then settles."""
        ...

    def close(self) -> None: ...


class HX711Driver:
    """What both drivers do alike: gain tracking, the settling allowance, the timed wait.

    A subclass waits for data-ready (:meth:`_wait_ready`) and clocks one conversion out
    (:meth:`_read_conversion`) its own way; :meth:`read_raw` holds the lock around both.
    """

    def __init__(self, gain: int, rate_sps: int) -> None:
        check_gain_and_rate(gain, rate_sps)
        self._gain = gain
        self._rate_sps = rate_sps
        self._settle_s = SETTLE_S[rate_sps]
        self._lock = threading.Lock()
        #: Gain of the conversion the chip is making now (set by the previous read's pulses).
        self._chip_gain = RESET_GAIN
        self._extra_wait_s = 0.0
        self._closed = False
        # Time (see _now) the last read switched the chip to another gain: the datasheet's
        # settling time applies to a gain change as to a reset.
        self._gain_changed_at = -math.inf
        self.reads = 0
        self.discarded = 0
        self.timeouts = 0
        #: Conversions discarded because the chip was still settling after a gain change.
        self.unsettled = 0

    @property
    def gain(self) -> int:
        return self._gain

    @property
    def rate_sps(self) -> int:
        return self._rate_sps

    @property
    def settle_s(self) -> float:
        return self._settle_s

    @property
    def may_be_settling(self) -> bool:
        """The chip may have reset since its last good conversion and be settling.

        True after a reset or a discarded read, until a conversion is ready again: a caller
        that watches for a silent sensor allows for the settling time.
        """
        return self._extra_wait_s > 0

    def read_raw(self, timeout_s: float, *, exact_timeout: bool = False) -> int:
        """Wait up to ``timeout_s`` for a conversion and return it as a signed 24-bit int.

        After a reset the wait is extended by the settling time, unless ``exact_timeout``: a
        caller that keeps its own deadline (the sampler, on a possibly virtual clock) asks for
        exactly what it gives. Raises :class:`NotReady` on timeout and :class:`ReadDiscarded`
        when the conversion was clocked out but is unusable (the reason says why).
        """
        if timeout_s < 0:
            raise ValueError("timeout_s must be >= 0")
        with self._lock:
            self._check_readable()
            wait_s = timeout_s if exact_timeout else timeout_s + self._extra_wait_s
            if not self._wait_ready(wait_s):
                self.timeouts += 1
                raise NotReady(f"HX711 not ready within {wait_s:.3f} s")
            self._extra_wait_s = 0.0
            return self._read_conversion()

    def _check_readable(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise HX711Error("HX711 driver is closed")

    def _after_reset(self) -> None:
        self._chip_gain = RESET_GAIN
        self._extra_wait_s = self._settle_s
        # The reset's own settling covers the gain it comes back at.
        self._gain_changed_at = -math.inf

    def _now(self) -> float:
        """The time the chip's settling is measured in (the SPI driver's clock)."""
        return time.monotonic()

    def _take_gain(self) -> int:
        """The gain the conversion being read was made at; the read selects the configured one."""
        made_at, self._chip_gain = self._chip_gain, self._gain
        if made_at != self._gain:
            self._gain_changed_at = self._now()
        return made_at

    def _check_gain(self, made_at: int, ready_from: float) -> None:
        """Refuse a conversion made at another gain, or one that may have become ready (at
        ``ready_from`` at the earliest) within the settling time of a gain change: the chip's
        first conversions after one are on their way from the old gain to the new."""
        if made_at != self._gain:
            raise self._wrong_gain(made_at)
        since = ready_from - self._gain_changed_at
        if since < self._settle_s:
            self.discarded += 1
            self.unsettled += 1
            raise ReadDiscarded(
                f"conversion may have been made {max(since, 0.0) * 1000:.0f} ms after the gain "
                f"changed to {self._gain}, within the {self._settle_s * 1000:.0f} ms the chip "
                "takes to settle"
            )

    def _wrong_gain(self, made_at: int) -> ReadDiscarded:
        self.discarded += 1
        return ReadDiscarded(
            f"conversion was made at gain {made_at}, not the configured {self._gain}"
        )

    def _wait_ready(self, timeout_s: float) -> bool:
        raise NotImplementedError

    def _read_conversion(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
