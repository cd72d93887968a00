"""The SPI driver's polling schedule locked to the chip's own clock, and the race judged on it.

The chip converts on its own clock (``run_on_clock``) and the driver keeps time on the same
virtual clock; the driver module's ``time`` is replaced by one whose ``sleep`` moves that clock
on, so the driver's waits take exactly what they ask, seeded and fast. What is counted (SPI
transfers, wake-ups) and compared (values against the codes the chip made) is exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.hw import hx711_spi
from dermaguard.hw.hx711_protocol import NotReady, ReadDiscarded
from dermaguard.hw.hx711_spi import (
    BITS_PER_BYTE_ON_WIRE,
    DIRECT_WIDTH_S,
    READ_AFTER_S,
    HX711Spi,
)
from dermaguard.sim.hx711_chip import MID_READ, HX711Chip, LoadModel, MidRead
from dermaguard.sim.spi_bus import SimSpiBus

MISO = 9
NOMINAL_PERIOD_S = 1 / 80
#: Conversions counted once the driver has measured the board's rate and locked its schedule.
COUNTED = 400
#: Passes of the read loop after the rate is known, before anything is counted.
LOCK_PASSES = 30
#: A poll's transfer at the bus's 1 MHz.
POLL_S = BITS_PER_BYTE_ON_WIRE * 1e-6


@dataclass
class Numbered(LoadModel):
    """Each conversion's code is the next multiple of 16 (never a doubted tail of ones), and
    the moment it was made is kept: a value read names the conversion it came from."""

    made: list[tuple[float, int]] = field(default_factory=list)
    _t: float = 0.0

    def signal_for(self, force_n: float, t: float, gain: int) -> float:
        self._t = t
        return 16.0 * (1000 + len(self.made))

    def clamp(self, signal: float, rng: random.Random) -> int:
        code = round(signal)
        self.made.append((self._t, code))
        return code

    @property
    def codes(self) -> list[int]:
        return [code for _, code in self.made]


class VirtualTime:
    """``time`` for the driver module: its sleeps move the virtual clock on; counts wake-ups."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.clock.advance(seconds)


class StallingBus(SimSpiBus):
    """The bus model; ``stall_after_ready`` moves the clock on to that time after a poll that
    found data, as a sampler thread stalled (a GIL burst) between its poll and its read would
    see it. Notes when each read's transfer began."""

    def __init__(self, chip: HX711Chip) -> None:
        super().__init__(chip)
        self.stall_after_ready: float | None = None
        self.stalls_after_ready = 0
        self.read_starts: list[float] = []

    def transfer(self, data: Sequence[int]) -> list[int]:
        if len(data) > 1:
            # On the chip's clock, as the bus model times it (never before the last transfer).
            self.read_starts.append(max(self.chip.clock.monotonic(), self._end_at))
        miso = super().transfer(data)
        if len(data) == 1 and not miso[0] & 1 and self.stall_after_ready is not None:
            self.chip.clock.advance_to(self.stall_after_ready)
            self.stall_after_ready = None
            self.stalls_after_ready += 1
        return miso


class Rig:
    def __init__(
        self, factory: Any, mocker: MockerFixture, mid_read: MidRead, period_share: float = 1.0
    ) -> None:
        self.clock = SimClock()
        self.time = VirtualTime(self.clock)
        mocker.patch.object(hx711_spi, "time", self.time)
        self.load = Numbered()
        self.chip = HX711Chip(factory, MISO, None, clock=self.clock, load=self.load)
        self.chip.period_s = NOMINAL_PERIOD_S * period_share  # the board's own oscillator
        self.chip.run_on_clock(mid_read=mid_read)
        self.bus = StallingBus(self.chip)
        self.driver = HX711Spi(self.bus, clock=self.clock)
        self.driver.reset()

    def read(self) -> int | None:
        """One pass of a sampler's loop: wait up to 50 ms for a conversion."""
        try:
            return self.driver.read_raw(0.05, exact_timeout=True)
        except (NotReady, ReadDiscarded):
            return None

    def lock(self) -> None:
        """Read until the rate is measured, then a while on: the schedule locks within a few
        conversions, and reads without a poll once its looks have tested it."""
        while not self.driver.rate_watch.known:
            self.read()
        for _ in range(LOCK_PASSES):
            self.read()

    @property
    def next_due(self) -> float:
        due = self.chip.next_due
        assert due is not None
        return due

    def close(self) -> None:
        self.driver.close()
        self.chip.close()


@pytest.fixture
def rigs(pin_factory: Any) -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


@pytest.mark.parametrize("period_share", [1.0, 1.04, 0.96])
def test_polling_locked_to_the_chip_s_period_costs_at_most_one_and_a_half_transfers_a_conversion(
    pin_factory: Any, mocker: MockerFixture, rigs: list[Rig], period_share: float
) -> None:
    """At 80 samples/s, and with the board's oscillator 4 % off either way: once the rate is
    measured, 400 conversions cost at most 1.5 SPI transfers each (polls and reads), every
    one is read, in order, and each is picked up within half a millisecond of becoming ready."""
    rig = Rig(pin_factory, mocker, "finish", period_share)
    rigs.append(rig)
    rig.lock()
    first = len(rig.load.made)
    transfers, sleeps = rig.bus.transfers, rig.time.sleeps
    values = []
    while len(values) < COUNTED:
        got = rig.read()
        if got is not None:
            values.append(got)
    per_conversion = (rig.bus.transfers - transfers) / COUNTED
    assert per_conversion <= 1.5, per_conversion
    assert (rig.time.sleeps - sleeps) / COUNTED <= 1.5  # wake-ups of the reading thread
    # None lost: the values are the codes made since, one by one.
    assert values == rig.load.codes[first : first + COUNTED]
    assert rig.driver.races == rig.driver.schedule_drops == 0
    made_at = dict((code, t) for t, code in rig.load.made)
    starts = rig.bus.read_starts[-COUNTED:]
    latency = [start - made_at[code] for start, code in zip(starts, values, strict=True)]
    # Picked up within DIRECT_WIDTH_S (a read just after a window no wider), or half a wider
    # window, and a poll's transfer, of becoming ready: 4 % of a period.
    assert min(latency) >= 0
    assert max(latency) <= DIRECT_WIDTH_S + READ_AFTER_S + POLL_S, max(latency)


@pytest.mark.parametrize("mid_read", MID_READ)
def test_a_read_after_the_sampler_stalled_for_periods_is_used_and_is_the_latest_conversion(
    pin_factory: Any, mocker: MockerFixture, rigs: list[Rig], mid_read: MidRead
) -> None:
    """The reading thread stalls (a GIL burst) for 1 to 11 periods, ending anywhere but within
    a tenth of a period of a conversion: between two passes of its loop, and again, when the
    pass after it polls, between the poll that found data and the read (the last poll that
    saw DOUT high is then long past). Each read overlaps no conversion, so it is used, and it
    is the newest conversion the chip made."""
    rig = Rig(pin_factory, mocker, mid_read)
    rigs.append(rig)
    rig.lock()
    rng = random.Random(2312)

    def stall_end() -> float:
        period = rig.chip.period_s
        return rig.next_due + rng.randint(1, 11) * period + rng.uniform(0.1, 0.9) * period

    for round_ in range(60):
        rig.clock.advance_to(stall_end())  # the thread did not look for that long
        for stage in ("between passes", "between poll and read, if it polls"):
            got = rig.read()
            assert got is not None, f"round {round_}, {stage}"
            assert got == rig.load.codes[-1]
            rig.bus.stall_after_ready = stall_end()
        rig.bus.stall_after_ready = None
        for _ in range(3):  # back on schedule
            assert rig.read() == rig.load.codes[-1]
    assert rig.bus.stalls_after_ready >= 20
    assert rig.driver.races == 0
    assert rig.driver.locked


def driver_caught(driver: HX711Spi) -> int:
    return driver.races + driver.sync_errors


@pytest.mark.parametrize("mid_read", MID_READ)
def test_a_read_that_really_straddles_a_conversion_is_still_discarded(
    pin_factory: Any, mocker: MockerFixture, rigs: list[Rig], mid_read: MidRead
) -> None:
    """A pass that must read at once (no time left to wait for the next conversion) after a
    stall that ended 20 µs before the next conversion: its poll finds data and its read runs
    into the next conversion. Whatever the chip does then, the read is discarded; the driver
    finds the next conversion by polling, locks its schedule again, and its values are right."""
    rig = Rig(pin_factory, mocker, mid_read)
    rigs.append(rig)
    rig.lock()
    straddled = 0
    for _ in range(10):
        rig.clock.advance_to(rig.next_due + rig.chip.period_s - 0.00002)
        mid_reads, caught = rig.chip.mid_read_conversions, driver_caught(rig.driver)
        # Judged a race; or, where the chip restarted, out of step (and the chip reset).
        with pytest.raises(ReadDiscarded, match=r"next conversion fell due|out of step"):
            rig.driver.read_raw(0.0, exact_timeout=True)
        # Whether the conversion really fell inside the read depends on how long the bus
        # model's transfer took on this host; most rounds must have it, or nothing is shown.
        straddled += rig.chip.mid_read_conversions - mid_reads
        assert driver_caught(rig.driver) == caught + 1
        for _ in range(12):
            got = rig.read()
            assert got is None or got == rig.load.codes[-1]
        assert rig.read() == rig.load.codes[-1]
        assert rig.driver.locked
    assert straddled >= 5, straddled


def test_a_chip_that_resets_while_the_schedule_is_trusted_is_found_out_and_read_right_again(
    pin_factory: Any, mocker: MockerFixture, rigs: list[Rig]
) -> None:
    """A power glitch resets the chip: it is silent while it settles and then converts on a
    new phase. The read the schedule makes without a poll finds no conversion, the driver
    drops the schedule (and resets the chip, which had pulses it should not have had), polls
    as before, locks again, and every value after is the chip's latest."""
    rig = Rig(pin_factory, mocker, "finish")
    rigs.append(rig)
    rig.lock()
    for _ in range(20):
        rig.read()
    direct = rig.driver.direct_reads
    assert rig.read() is not None and rig.driver.direct_reads == direct + 1  # reading blind
    drops, resets = rig.driver.schedule_drops, rig.driver.resets
    rig.clock.advance(0.003)
    rig.chip.unplug()  # the glitch, a quarter of a period before the next conversion
    rig.chip.replug()
    values = [rig.read() for _ in range(60)]
    assert rig.driver.schedule_drops == drops + 1
    assert rig.driver.resets == resets + 1
    got = [v for v in values if v is not None]
    assert len(got) > 30
    assert values[-1] == rig.load.codes[-1]
    made = iter(rig.load.codes)
    assert all(v in made for v in got)  # each a code the chip made, in order
    assert rig.driver.locked
