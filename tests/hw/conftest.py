"""Fixtures for the emulated-hardware tests: mock pins, an HX711 chip emulator, the real driver.

Reads over mock pins happen in real time, so a host that pre-empts the test process mid-pulse
can stretch a PD_SCK high phase past the driver's 50 µs limit (a few reads in a hundred on a
busy VM). The driver then rightly discards the read; ``read_code`` retries only those discards,
so the tests stay exact about values without depending on the host's timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gpiozero import Device

from dermaguard.common.clock import SimClock
from dermaguard.hw.hx711 import HX711, ReadDiscarded
from dermaguard.hw.pins import install_pin_factory
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.sim.pins import mock_factory
from support.waiting import RETRY_READS_S

DOUT = 5
SCK = 6

ReadCode = Callable[[HX711Chip, HX711], int]


@dataclass(frozen=True)
class HxPins:
    """BCM numbers the chip and driver share (test modules take them from the fixture)."""

    dout: int = DOUT
    sck: int = SCK


@pytest.fixture
def hx_pins() -> HxPins:
    return HxPins()


@pytest.fixture
def pin_factory() -> Iterator[Any]:
    """A fresh mock factory, installed for this test only."""
    previous = Device.pin_factory
    factory = mock_factory()
    install_pin_factory(factory)
    try:
        yield factory
    finally:
        factory.close()
        factory.reset()
        install_pin_factory(previous)


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def chip(pin_factory: Any, sim_clock: SimClock) -> Iterator[HX711Chip]:
    """A noiseless chip on virtual time (so settling is skipped by advancing the clock).

    The bit-banged driver times a gain change's settling on the real clock, these tests step
    the chip's virtual one: the chip applies a new gain at once here (the SPI tests, whose
    driver shares the chip's clock, cover settling)."""
    with HX711Chip(
        pin_factory, DOUT, SCK, clock=sim_clock, load=LoadModel(), gain_settling=False
    ) as c:
        yield c


@pytest.fixture
def driver(chip: HX711Chip, sim_clock: SimClock) -> Iterator[HX711]:
    """The driver measures the board's rate on the chip's clock, which lockstep tests do not
    move between conversions: no interval is long enough to count, so the rate stays unknown
    and never refuses a read (tests/hw/test_hx711_board_rate_gpio.py measures it)."""
    with HX711(DOUT, SCK, clock=sim_clock) as d:
        yield d


def _timing_discard(exc: ReadDiscarded) -> bool:
    return exc.reason.startswith("PD_SCK stayed high")


@pytest.fixture
def read_code(sim_clock: SimClock) -> ReadCode:
    """Make one conversion and read it, retrying reads spoiled by host scheduling.

    After a timing discard the driver assumes the chip reset to gain 128, so with another gain
    configured a gain discard may follow; any other discard is a failure.
    """

    def read(chip: HX711Chip, driver: HX711) -> int:
        deadline = time.monotonic() + RETRY_READS_S
        while time.monotonic() < deadline:
            if not chip.convert():  # the chip powered down and is settling
                sim_clock.advance(chip.settle_s)
                assert chip.convert(), "chip not ready after settling"
            try:
                return driver.read_raw(1.0)
            except ReadDiscarded as exc:
                if not (_timing_discard(exc) or driver.gain != 128):
                    raise
        raise AssertionError(f"every read for {RETRY_READS_S:g} s was discarded")

    return read
