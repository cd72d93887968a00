"""The SPI driver against a chip that converts on its own clock, whatever the bus does.

A conversion can then fall due in the middle of a read, and the datasheet does not say what the
chip does: it may finish the word it is sending, restart with the new one, or switch to the new
one from the current bit. The emulator does each on request; the driver must return no value
the chip never made under any of them. Virtual time, seeded: exact and fast.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.hw.hx711_protocol import NotReady, ReadDiscarded
from dermaguard.hw.hx711_spi import HX711Spi, read_frame
from dermaguard.sim.hx711_chip import MID_READ, HX711Chip, LoadModel, MidRead
from dermaguard.sim.spi_bus import SimSpiBus

MISO = 9
PERIOD_S = 1 / 80
#: A read's transfer: its frame plus the poll before it, nine bus bits a byte at 1 MHz.
READ_S = (len(read_frame(128)) + 1) * 9e-6


@dataclass
class Recording(LoadModel):
    """A load model that remembers every code the chip made."""

    made: set[int] = field(default_factory=set)

    def clamp(self, signal: float, rng: random.Random) -> int:
        code = super().clamp(signal, rng)
        self.made.add(code)
        return code


class OwnClockRig:
    def __init__(self, factory: Any, mid_read: MidRead, *, gain: int = 128) -> None:
        self.clock = SimClock()
        self.load = Recording(noise_counts=0.0)
        self.chip = HX711Chip(factory, MISO, None, clock=self.clock, load=self.load)
        self.chip.run_on_clock(mid_read=mid_read)
        self.bus = SimSpiBus(self.chip)
        self.driver = HX711Spi(self.bus, gain=gain, clock=self.clock)
        self.driver.reset()

    def measure_rate(self) -> None:
        """Read on time until the driver knows the board's period (hw/hx711_rate.py), as the
        daemon's sampler does from its start; the race is then judged on that period."""
        self.clock.advance(self.chip.settle_s)
        while not self.driver.rate_watch.known:
            due = self.chip.next_due
            assert due is not None
            self.clock.advance_to(due + 0.0002)
            self.attempt()
        assert self.driver.rate_watch.problem is None

    def attempt(self) -> int | None:
        try:
            return self.driver.read_raw(0.0, exact_timeout=True)
        except (NotReady, ReadDiscarded):
            return None

    def close(self) -> None:
        self.driver.close()
        self.chip.close()


@pytest.fixture
def own_rigs(pin_factory: Any) -> Iterator[list[OwnClockRig]]:
    rigs: list[OwnClockRig] = []
    yield rigs
    for rig in rigs:
        rig.close()


@pytest.mark.parametrize("mid_read", MID_READ)
def test_a_conversion_falling_due_mid_read_never_gives_a_value_the_chip_did_not_make(
    pin_factory: Any, own_rigs: list[OwnClockRig], mid_read: MidRead
) -> None:
    """The driver looks at random moments: often just before a conversion falls due, so that
    it falls due during the read, and sometimes late. The force changes every step, so a word
    mixed from two conversions is a code the chip never made."""
    rig = OwnClockRig(pin_factory, mid_read)
    own_rigs.append(rig)
    rig.measure_rate()
    rng = random.Random(2311)
    values: list[int] = []
    for _ in range(600):
        due = rig.chip.next_due
        assert due is not None
        roll = rng.random()
        if roll < 0.4:  # a conversion waits unread, and the read straddles the next one
            rig.clock.advance_to(due)
            rig.chip.tick()
            t = due + rig.chip.period_s - rng.uniform(0.0, READ_S)
        elif roll < 0.5:  # late: the conversion waited a while
            t = due + rng.uniform(0.0, PERIOD_S)
        else:  # polling ahead of it, as the driver's schedule does
            t = due - rng.uniform(READ_S, PERIOD_S / 4)
        rig.clock.advance_to(t)
        rig.chip.force_n = rng.uniform(-50.0, 50.0)
        got = rig.attempt()
        if got is not None:
            values.append(got)
    assert set(values) <= rig.load.made
    assert rig.chip.mid_read_conversions > 20  # the race really happened, many times
    assert rig.driver.races > 20  # ...and the driver said so
    assert len(values) > 30


def test_a_driver_that_polls_ahead_of_each_conversion_loses_none_to_the_race_check(
    pin_factory: Any, own_rigs: list[OwnClockRig]
) -> None:
    """Polling from a little before each conversion, as the schedule does, no read is
    discarded: the check costs nothing when the driver is on time."""
    rig = OwnClockRig(pin_factory, "switch")
    own_rigs.append(rig)
    rig.clock.advance(rig.chip.settle_s)
    values = []
    for _ in range(40):
        due = rig.chip.next_due
        assert due is not None
        rig.clock.advance_to(due - 0.0005)
        assert rig.attempt() is None  # DOUT still high
        rig.clock.advance_to(due + 0.0002)
        got = rig.attempt()
        assert got is not None
        values.append(got)
    assert rig.driver.races == 0
    assert set(values) <= rig.load.made


def test_a_gain_change_settles_on_the_chip_s_clock_and_the_driver_hands_out_no_unsettled_value(
    pin_factory: Any, own_rigs: list[OwnClockRig]
) -> None:
    """Gain 64 after the reset: the chip's first conversions at 64 move from the old gain's
    signal to the new one's over the settling time; the driver discards them all."""
    rig = OwnClockRig(pin_factory, "finish", gain=64)
    own_rigs.append(rig)
    rig.chip.load.offset_counts = 80_000.0
    rig.chip.load.counts_per_newton = 0.0
    values = []
    for _ in range(30):
        due = rig.chip.next_due
        assert due is not None
        rig.clock.advance_to(due - 0.0005)
        rig.attempt()
        rig.clock.advance_to(due + 0.0002)
        got = rig.attempt()
        if got is not None:
            values.append(got)
    assert rig.chip.unsettled_conversions >= 3
    assert set(rig.load.made) > {40_000, 80_000}  # values on the way were made
    assert values and set(values) == {40_000}
    assert rig.driver.unsettled >= 3
