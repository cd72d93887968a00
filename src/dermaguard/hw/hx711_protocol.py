"""What every HX711 driver shares: the chip's timing facts, its errors, and the reader interface.

Two drivers implement :class:`LoadCellADC`: :class:`dermaguard.hw.hx711_spi.HX711Spi`, whose
PD_SCK pulses are clocked by the SPI controller (the default), and
:class:`dermaguard.hw.hx711.HX711`, which bit-banges PD_SCK on a GPIO pin. The sampler, the
calibration and ``check-hardware`` talk to either through this interface.
"""

from __future__ import annotations

from typing import Protocol

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
