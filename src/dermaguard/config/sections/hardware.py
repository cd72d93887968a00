"""What is wired to the Pi: the pins, the HX711 and its SPI bus, the load cell, its calibration.

The pin rules (distinct GPIOs, SPI0's pins kept free) are here; the HX711's pins depend on
``hx711.interface`` and are checked with it, across sections, in
:meth:`dermaguard.config.schema.Config._check`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dermaguard.config.fields import NON_EMPTY, meta
from dermaguard.config.messages import join_path, not_allowed


def _pin(doc: str) -> dict[str, Any]:
    return meta(min=0, max=27, doc=doc)


@dataclass(frozen=True)
class PinsConfig:
    """BCM GPIO numbers of everything wired to the Pi (hardware/ shows the same pinout)."""

    hx711_dout: int = field(
        default=5, metadata=_pin("HX711 DOUT with hx711.interface gpio: data in, low when ready.")
    )
    hx711_sck: int = field(
        default=6, metadata=_pin("HX711 PD_SCK with hx711.interface gpio: clock out.")
    )
    hx711_ready: int | None = field(
        default=None,
        metadata=_pin(
            "With hx711.interface spi: a GPIO also wired to DOUT, whose falling edge says a "
            "conversion is ready; null: poll DOUT over the bus."
        ),
    )
    led_red: int = field(default=17, metadata=_pin("Red channel of the status LED."))
    led_green: int = field(default=27, metadata=_pin("Green channel of the status LED."))
    led_blue: int = field(default=22, metadata=_pin("Blue channel of the status LED."))
    buzzer: int = field(default=18, metadata=_pin("Buzzer for the audible alarm."))
    lid: int = field(
        default=23,
        metadata=_pin("Lid reed switch (a magnet in the lid): closed when the lid is shut."),
    )
    lid_contact: int | None = field(
        default=16,
        metadata=_pin(
            "The lid microswitch's NC contact, through an optocoupler: low while the lid is "
            "open, high (10 kΩ pull-up) while it is shut; null: not wired (one lid channel, "
            "no check that the microswitch S1b in the UV-C supply opens)."
        ),
    )
    dock: int = field(default=24, metadata=_pin("Dock switch: closed when the roller is docked."))
    uv_led: int = field(
        default=25, metadata=_pin("UV-C LED driver; held low from boot by firmware/config.txt.")
    )
    uv_sensor: int | None = field(
        default=None,
        metadata=_pin("UV sensor's digital output (lit = high); null: no sensor, timed cycles."),
    )

    def _check(self, path: str) -> list[str]:
        """Two functions on one GPIO would fight; every int field here is a pin.

        The HX711's pins depend on ``hx711.interface`` and are checked with it, in
        :meth:`dermaguard.config.schema.Config._check`.
        """
        return distinct_pins(self.wired(HX711_PINS), path)

    def wired(self, skip: frozenset[str] = frozenset()) -> dict[str, int]:
        """Every wired pin by field name (an optional pin set to null is not wired)."""
        wired: dict[str, int] = {}
        for f in dataclasses.fields(self):
            gpio = getattr(self, f.name)
            if f.name not in skip and isinstance(gpio, int) and not isinstance(gpio, bool):
                wired[f.name] = gpio
        return wired


#: The pins fields that belong to the HX711: which of them are used depends on the interface.
HX711_PINS = frozenset({"hx711_dout", "hx711_sck", "hx711_ready"})


def distinct_pins(
    pins: Mapping[str, int], path: str, taken: Mapping[int, str] | None = None
) -> list[str]:
    """One error per pin whose GPIO is already in ``taken`` or used by an earlier pin."""
    errors: list[str] = []
    used = dict(taken or {})
    for name, gpio in pins.items():
        key = join_path(path, name)
        if gpio in used:
            errors.append(not_allowed(key, gpio, f"GPIO{gpio} is already used by {used[gpio]}"))
        else:
            used[gpio] = key
    return errors


#: SPI0's pins (BCM): the kernel's driver owns all five while SPI is on, whether wired or not.
SPI0_PINS = {"sclk": 11, "mosi": 10, "miso": 9, "ce0": 8, "ce1": 7}
#: A PD_SCK high phase lasts one bit time; the datasheet's power-down is at 60 µs.
SPI_MAX_BIT_US = 50.0
Hx711Interface = Literal["spi", "gpio"]


@dataclass(frozen=True)
class SpiConfig:
    """The SPI bus whose MOSI clocks PD_SCK and whose MISO reads DOUT (hx711.interface: spi)."""

    port: int = field(
        default=0,
        metadata=meta(
            choices=(0,),
            doc="SPI controller: 0, on GPIO 7-11 (dtparam=spi=on); gpiozero knows no other.",
        ),
    )
    device: int = field(
        default=0,
        metadata=meta(
            choices=(0, 1),
            doc="Chip select (CE0 or CE1): not wired to the HX711, but it names /dev/spidev0.N.",
        ),
    )
    hz: int = field(
        default=1_000_000,
        metadata=meta(
            min_exclusive=0,
            max=5_000_000,
            allowed="20000 to 5000000 (Hz)",
            doc=(
                "Bus clock: one PD_SCK high phase lasts one bit (1 µs at 1 MHz). The HX711 "
                "needs at least 0.1 µs from a rising edge to valid data, so at most 5 MHz."
            ),
        ),
    )
    mode: int = field(
        default=0,
        metadata=meta(
            choices=(0, 1),
            doc="SPI mode: 0 or 1 (clock idle low; MISO sampled half a bit after MOSI changes).",
        ),
    )

    def _check(self, path: str) -> list[str]:
        """A bit time over 50 µs would let one PD_SCK pulse approach the chip's power-down."""
        bit_us = 1e6 / self.hz
        if bit_us > SPI_MAX_BIT_US:
            requirement = (
                f"its bit time, {bit_us:.0f} µs, exceeds {SPI_MAX_BIT_US:g} µs: each PD_SCK pulse "
                "lasts one bit and the HX711 powers down after 60 µs"
            )
            return [not_allowed(join_path(path, "hz"), self.hz, requirement)]
        return []

    def pins(self) -> dict[str, int]:
        """The GPIOs the controller owns, by function."""
        return dict(SPI0_PINS)


@dataclass(frozen=True)
class Hx711Config:
    """The HX711 load-cell ADC and how strictly its readings are policed."""

    interface: Hx711Interface = field(
        default="spi",
        metadata=meta(
            doc=(
                "spi: the SPI controller clocks PD_SCK in hardware (PD_SCK on MOSI, DOUT on "
                "MISO), so no scheduling delay can power the chip down; gpio: bit-banged on "
                "pins.hx711_dout and pins.hx711_sck, which can lose reads under load."
            )
        ),
    )
    spi: SpiConfig = field(
        default_factory=SpiConfig, metadata=meta(doc="The SPI bus, with interface spi.")
    )

    rate_sps: int = field(
        default=80,
        metadata=meta(
            choices=(10, 80),
            doc="Samples/s set by the RATE pin wiring; the software only needs to know it.",
        ),
    )
    gain: int = field(
        default=128,
        metadata=meta(choices=(128, 64, 32), doc="128 or 64 read channel A, 32 channel B."),
    )
    ready_timeout_periods: int = field(
        default=3,
        metadata=meta(
            min=2, max=10, doc="No conversion ready within this many periods is a fault."
        ),
    )
    max_clock_high_us: float = field(
        default=50.0,
        metadata=meta(
            min=5,
            max=60,
            doc=(
                "Interface gpio only: a PD_SCK high phase over this may have powered the chip "
                "down (after 60 µs); the read is kept only if a later bit proves it did not."
            ),
        ),
    )


@dataclass(frozen=True)
class LoadCellConfig:
    """The load cell itself."""

    capacity_n: float = field(
        default=50.0,
        metadata=meta(
            min_exclusive=0,
            max=2000,
            doc="Rated capacity; a reading beyond it is invalid; over_n must be below it.",
        ),
    )


@dataclass(frozen=True)
class CalibrationConfig:
    """Where the calibration made by `dermaguard calibrate` is kept."""

    file: str = field(
        default="calibration.json",
        metadata=meta(
            pattern=NON_EMPTY,
            pattern_doc="a non-empty path",
            doc="Calibration file; a relative path is taken inside the state directory.",
        ),
    )
