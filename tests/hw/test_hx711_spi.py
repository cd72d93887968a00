"""The SPI-clocked HX711 driver against the chip emulator behind a simulated SPI controller.

The controller model gives every MOSI bit the bus clock's time, so these tests are exact: no
host pause can stretch a PD_SCK pulse here, just as none can on a Pi's controller.
"""

from __future__ import annotations

import math
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.exc import SPISoftwareFallback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dermaguard.common.clock import SimClock
from dermaguard.core.events import ForceRead, Input, ReadFailed
from dermaguard.daemon.sampler import Sampler
from dermaguard.hw.hx711_protocol import NotReady, ReadDiscarded
from dermaguard.hw.hx711_rate import FIRST_WAIT_S
from dermaguard.hw.hx711_spi import (
    DOUBT_BITS,
    FRAME_LEN,
    RESET_ERROR_BOUND_COUNTS,
    HX711Spi,
    SpiUnavailable,
    decode_frame,
    open_spi,
    read_frame,
    reset_bytes,
    trailing_ones,
)
from dermaguard.sim.hx711_chip import CODE_MAX, CODE_MIN, HX711Chip, LoadModel
from dermaguard.sim.spi_bus import SimSpiBus

MISO = 9
READY = 5
PERIOD_S = 1 / 80
#: How long before a conversion a poll finds DOUT still high (the driver's poll interval).
LOOK_AHEAD_S = 0.00025
#: Bit index, within a read's transfer, of data pulse ``p``'s rising edge (the lead byte first).
LEAD_BITS = 8


def doubtful(code: int) -> bool:
    """A code the driver holds until the next conversion confirms it."""
    return trailing_ones(code & 0xFFFFFF) >= DOUBT_BITS


def pulse_bit(p: int) -> int:
    return LEAD_BITS + 2 * (p - 1)


class Rig:
    """A chip on virtual time, its SPI bus and a driver: one lockstep conversion per read."""

    def __init__(
        self, factory: Any, clock: SimClock, *, gain: int = 128, hz: int = 1_000_000, mode: int = 0
    ) -> None:
        self.clock = clock
        self.chip = HX711Chip(factory, MISO, None, clock=clock, load=LoadModel())
        self.bus = SimSpiBus(self.chip, hz=hz, mode=mode)
        self.driver = HX711Spi(self.bus, gain=gain, hz=hz, clock=clock)

    def set_code(self, code: int) -> None:
        """Every conversion at gain 128 reads ``code`` (other gains scale it)."""
        self.chip.load = LoadModel(offset_counts=code, counts_per_newton=0.0)

    def convert(self) -> None:
        """One period on, as a poller sees it: DOUT high just before, then a conversion."""
        self.clock.advance(PERIOD_S - LOOK_AHEAD_S)
        if self.chip.dout:
            with pytest.raises(NotReady):
                self.driver.read_raw(0.0, exact_timeout=True)
        self.clock.advance(LOOK_AHEAD_S)
        assert self.chip.convert(), "the emulated chip made no conversion"

    def read(self) -> int:
        self.convert()
        return self.driver.read_raw(0.05)

    def settle_gain(self) -> None:
        """After a read selected another gain, the conversions made while the chip settles
        (50 ms: four at 80 samples/s) are discarded."""
        for _ in range(4):
            with pytest.raises(ReadDiscarded, match="takes to settle"):
                self.read()

    def settle(self) -> None:
        """Let a reset chip settle, showing the driver the silence as a poller would."""
        with pytest.raises(NotReady):
            self.driver.read_raw(0.001, exact_timeout=True)
        self.clock.advance(self.chip.settle_s)

    def close(self) -> None:
        self.driver.close()
        self.chip.close()


@pytest.fixture
def rig_factory(pin_factory: Any, sim_clock: SimClock) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        rig = Rig(pin_factory, sim_clock, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    return rig_factory()


# -- codes, gains, modes ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("code", [0, 1, -1, CODE_MAX, CODE_MIN, 0x555555, -0x2AAAAB])
def test_codes_read_exactly_in_both_modes(
    rig_factory: Callable[..., Rig], code: int, mode: int
) -> None:
    rig = rig_factory(mode=mode)
    rig.set_code(code)
    reads = 2
    if doubtful(code):  # held until the next conversion confirms it
        with pytest.raises(ReadDiscarded, match="held until"):
            rig.read()
        reads = 3
    assert rig.read() == code
    assert rig.read() == code
    assert rig.driver.sync_errors == 0
    assert rig.chip.reads_completed == reads


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(codes=st.lists(st.integers(CODE_MIN, CODE_MAX), min_size=1, max_size=5))
def test_random_codes_read_exactly(rig: Rig, codes: list[int]) -> None:
    """One rig serves every example: a chip that has been read before is the usual case. A
    code that could hide a reset comes out one read later, once the next has confirmed it; a
    good code after it takes its place."""
    rig.set_code(0)
    assert rig.read() == 0  # nothing held from the example before
    held: int | None = None
    for code in codes:
        rig.set_code(code)
        expected, held = (held, code) if doubtful(code) else (code, None)
        if expected is None:
            with pytest.raises(ReadDiscarded, match="held until"):
                rig.read()
        else:
            assert rig.read() == expected


@pytest.mark.parametrize("gain", [128, 64, 32])
def test_each_gain_is_selected_and_the_first_conversion_after_a_change_is_discarded(
    rig_factory: Callable[..., Rig], gain: int
) -> None:
    rig = rig_factory(gain=gain)
    rig.set_code(100_000)
    expected = round(100_000 * gain / 128)
    if gain != 128:
        # The chip converts at 128 after a reset; this read selects the configured gain.
        with pytest.raises(ReadDiscarded, match="made at gain 128"):
            rig.read()
        rig.settle_gain()
    assert rig.chip.next_gain == gain
    assert rig.read() == expected
    assert rig.read() == expected


def test_a_driver_with_another_gain_discards_the_conversion_the_last_one_selected(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(gain=64)
    rig.set_code(64_000)
    with pytest.raises(ReadDiscarded):
        rig.read()
    rig.settle_gain()
    assert rig.read() == 32_000
    rig.driver = HX711Spi(rig.bus, gain=32, clock=rig.clock)
    # The chip's gain is unknown to a new driver until it resets it, as the daemon does.
    rig.driver.reset()
    rig.settle()
    with pytest.raises(ReadDiscarded, match="made at gain 128"):
        rig.read()
    rig.settle_gain()
    assert rig.read() == 16_000


def test_a_slow_bus_at_the_lowest_allowed_rate_reads_exactly_and_never_powers_the_chip_down(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(hz=20_000)  # 50 µs a bit: each PD_SCK pulse is high 50 µs
    rig.set_code(-4242)
    before = rig.chip.power_down_count
    for _ in range(3):
        assert rig.read() == -4242
    assert rig.chip.power_down_count == before


def test_a_bus_slower_than_the_config_allows_powers_the_chip_down_and_no_force_comes_out(
    rig_factory: Callable[..., Rig],
) -> None:
    """Why check-config refuses a bit time over 50 µs: at 100 µs every pulse resets the chip."""
    rig = rig_factory(hz=10_000)
    rig.set_code(1234)
    before = rig.chip.power_down_count
    with pytest.raises(ReadDiscarded, match="out of step"):
        rig.read()
    assert rig.chip.power_down_count > before


def test_the_reset_holds_pd_sck_high_past_the_power_down_at_every_rate() -> None:
    for hz in (20_000, 1_000_000, 5_000_000):
        frame = reset_bytes(hz)
        assert frame[-1] == 0x00
        high_us = 8 * frame.count(0xFF) * 1e6 / hz
        assert high_us > 60


# -- frames ---------------------------------------------------------------------------------


def test_a_read_is_one_transfer_of_pulse_bytes_ending_low() -> None:
    for gain, pulses in ((128, 25), (32, 26), (64, 27)):
        frame = read_frame(gain)
        assert len(frame) == FRAME_LEN
        ones = sum(bin(b).count("1") for b in frame)
        assert ones == pulses  # one MOSI 1 bit per PD_SCK pulse
        assert all(b & 1 == 0 for b in frame)  # every byte leaves PD_SCK low


def _frame_for(code24: int) -> list[int]:
    data = []
    for index in range(6):
        byte = 0
        for pair in range(4):
            bit = (code24 >> (23 - (4 * index + pair))) & 1
            byte = (byte << 2) | (bit << 1) | bit
        data.append(byte)
    return [0x00, *data, 0xFF, 0xFF]


def test_decode_takes_each_bit_from_its_pulse() -> None:
    assert decode_frame(_frame_for(0xABCDEF)) == 0xABCDEF


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f.__setitem__(0, 0x01), "not low before the first pulse"),
        (lambda f: f.__setitem__(3, f[3] ^ 0x40), "data bit 9 read"),
        (lambda f: f.__setitem__(7, 0x7F), "did not stay high after the 25th pulse"),
        (lambda f: f.__setitem__(8, 0xFE), "did not stay high after the 25th pulse"),
        (lambda f: f.pop(), "returned 8 bytes"),
    ],
)
def test_decode_refuses_a_frame_whose_bits_disagree(
    mutate: Callable[[list[int]], object], reason: str
) -> None:
    from dermaguard.hw.hx711_spi import FrameError

    frame = _frame_for(0x123456)
    mutate(frame)
    with pytest.raises(FrameError, match=reason):
        decode_frame(frame)


# -- out of step: detected and recovered ------------------------------------------------------


def test_a_conversion_landing_mid_transfer_is_detected_the_chip_reset_and_reads_recover(
    rig: Rig,
) -> None:
    rig.set_code(0x123456)
    assert rig.read() == 0x123456
    rig.convert()
    rig.set_code(0)  # the conversion that lands mid-read: its bits are zeros

    def land(k: int) -> None:
        if k == pulse_bit(10):
            rig.chip.convert_mid_read()

    rig.bus.on_bit = land
    before = rig.chip.power_down_count
    with pytest.raises(ReadDiscarded, match="out of step"):
        rig.driver.read_raw(0.05)
    rig.bus.on_bit = None
    assert rig.driver.sync_errors == 1
    assert rig.driver.resets == 1
    assert rig.chip.power_down_count == before + 1
    assert rig.driver.may_be_settling
    rig.settle()
    rig.set_code(777)
    assert rig.read() == 777


def test_a_chip_left_part_way_through_a_read_is_reset_after_a_silence_and_reads_recover(
    rig: Rig,
) -> None:
    """A mid-read conversion whose bits happen to be ones passes the checks (the one sample
    the median filter must absorb), but leaves the chip holding DOUT at a data bit: the driver
    sees a silence, resets the chip, and the reads come back."""
    rig.convert()
    rig.set_code(-1)

    def land(k: int) -> None:
        if k == pulse_bit(20):
            rig.chip.convert_mid_read()

    rig.bus.on_bit = land
    rig.driver.read_raw(0.05)
    rig.bus.on_bit = None
    assert 0 < rig.chip.pulses < 25  # stuck part-way through the new conversion
    resets = rig.driver.resets
    # Silence longer than any board's settling and two periods: with the board's period not
    # measured yet, the driver allows for a 10 samples/s board (hx711_rate.FIRST_WAIT_S).
    for _ in range(math.ceil(FIRST_WAIT_S / (PERIOD_S * 1.5)) + 2):
        with pytest.raises(NotReady):
            rig.driver.read_raw(0.001, exact_timeout=True)
        rig.clock.advance(PERIOD_S * 1.5)
    assert rig.driver.resets == resets + 1
    rig.clock.advance(rig.chip.settle_s)
    rig.set_code(4321)
    assert rig.read() == 4321


def test_a_chip_that_resets_mid_transfer_is_found_out_by_its_silence_and_its_gain_restored(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(gain=64)
    rig.set_code(200_000)
    with pytest.raises(ReadDiscarded):
        rig.read()  # selects gain 64
    rig.settle_gain()
    assert rig.read() == 100_000

    def glitch(k: int) -> None:
        if k == pulse_bit(12):
            rig.chip.unplug()  # a power glitch: the chip resets, DOUT high while it settles
            rig.chip.replug()

    rig.convert()
    rig.bus.on_bit = glitch
    try:
        value = rig.driver.read_raw(0.05)
    except ReadDiscarded:
        pass
    else:
        assert value & 0xFFF == 0xFFF  # the bits after the reset read as ones
    rig.bus.on_bit = None
    rig.settle()
    # The first conversion after settling is made at gain 128: the silence gave it away.
    with pytest.raises(ReadDiscarded, match="made at gain 128"):
        rig.read()
    assert rig.driver.silences == 1
    rig.settle_gain()
    assert rig.read() == 100_000


def test_mosi_idling_high_between_reads_powers_the_chip_down_and_reads_recover_when_it_stops(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(gain=32)
    rig.set_code(40_000)
    with pytest.raises(ReadDiscarded):
        rig.read()
    rig.settle_gain()
    assert rig.read() == 10_000
    before = rig.chip.power_down_count
    rig.bus.idle_high = True
    rig.bus.transfer([0x00])  # ends with MOSI resting high
    rig.clock.advance(PERIOD_S)
    rig.chip.convert()
    with pytest.raises(NotReady):  # every poll resets the chip: it never has data
        rig.driver.read_raw(0.002, exact_timeout=True)
    assert rig.chip.power_down_count > before
    rig.bus.idle_high = False
    rig.settle()
    with pytest.raises(ReadDiscarded, match="made at gain 128"):
        rig.read()
    rig.settle_gain()
    assert rig.read() == 10_000


@pytest.mark.parametrize("level", [False, True])
def test_a_stuck_miso_never_yields_a_force(rig: Rig, level: bool) -> None:
    """Stuck low reads as a waiting conversion whose tail is wrong; stuck high never looks
    ready. Either way no value comes out, and the sampler reports a sensor fault."""
    rig.set_code(5000)
    assert rig.read() == 5000
    rig.bus.miso_stuck = level
    for _ in range(8):  # 100 ms
        rig.clock.advance(PERIOD_S)
        rig.chip.convert()  # none while the chip settles from the driver's resets
        with pytest.raises((NotReady, ReadDiscarded)):
            rig.driver.read_raw(0.002, exact_timeout=True)
    if level:
        assert rig.driver.sync_errors == 0  # never looks ready
    else:
        # Each doomed read resets the chip, and the driver then leaves it to settle (45 of
        # its 50 ms) before looking again: a few resets, not one per poll.
        assert 1 <= rig.driver.sync_errors <= 3
    rig.bus.miso_stuck = None
    rig.clock.advance(rig.chip.settle_s)
    if level:
        # Stuck high is silence, and with the board's period not measured yet the driver
        # waits out the slowest board before it resets (hx711_rate): the conversion waiting
        # now may have been overtaken, so the first read is thrown away, and said so.
        with pytest.raises(ReadDiscarded, match="next conversion fell due"):
            rig.read()
    assert rig.read() == 5000


# -- a reset part-way through a read, a gain change: no wrong value beyond the bound -----------


@pytest.mark.parametrize("gain", [128, 64])
def test_a_chip_reset_anywhere_in_a_read_never_gives_a_value_beyond_the_stated_bound(
    rig_factory: Callable[..., Rig], gain: int
) -> None:
    """A power glitch at a random bit of a read (seeded): every bit after it reads 1 in both
    halves. The driver either discards the read, or returns a value at most
    RESET_ERROR_BOUND_COUNTS above the truth; a value it held never comes out after the
    silence the reset causes, and the reads after it are exact."""
    rng = random.Random(23)
    rig = rig_factory(gain=gain)
    scale = gain / 128
    rig.set_code(0)
    if gain != 128:
        with pytest.raises(ReadDiscarded, match="made at gain 128"):
            rig.read()
        rig.settle_gain()
    returned = 0
    for _ in range(120):
        code = rng.randint(CODE_MIN, CODE_MAX) // 2  # gain 64 halves what the chip gives
        rig.set_code(round(code / scale))
        code = rig.chip.load.code_for(0.0, 0.0, gain, rng)
        glitch_bit = rng.randrange(LEAD_BITS, pulse_bit(25))

        def glitch(k: int, at: int = glitch_bit) -> None:
            if k == at:
                rig.chip.unplug()
                rig.chip.replug()

        rig.convert()
        rig.bus.on_bit = glitch
        try:
            got = rig.driver.read_raw(0.05)
        except ReadDiscarded:
            pass
        else:
            returned += 1
            assert 0 <= got - code <= RESET_ERROR_BOUND_COUNTS, (hex(code), hex(got), glitch_bit)
        finally:
            rig.bus.on_bit = None
        rig.settle()
        if gain != 128:  # the silence gave the reset away: gain 128, then settling again
            with pytest.raises(ReadDiscarded, match="made at gain 128"):
                rig.read()
            rig.settle_gain()
        if doubtful(code):  # held: and whatever the glitched read held is never confirmed
            with pytest.raises(ReadDiscarded, match="held until"):
                rig.read()
        assert rig.read() == code
    assert returned > 20  # resets late in a read, or hidden in a tail of ones, were used
    assert rig.driver.unconfirmed > 0


def test_values_held_for_a_tail_of_ones_come_out_once_the_next_conversion_is_on_time(
    rig: Rig,
) -> None:
    """The full-scale code has 23 trailing ones: each reading comes out one period late."""
    rig.set_code(CODE_MAX)
    with pytest.raises(ReadDiscarded, match="held until"):
        rig.read()
    for _ in range(3):
        assert rig.read() == CODE_MAX
    rig.set_code(5)
    assert rig.read() == 5  # a good code takes the held one's place
    assert (rig.driver.held, rig.driver.confirmed) == (4, 3)


# -- data-ready on a GPIO, and opening the bus ---------------------------------------------------


def test_data_ready_from_a_gpio_wired_to_dout_reads_without_polling_the_bus(
    pin_factory: Any, sim_clock: SimClock
) -> None:
    chip = HX711Chip(pin_factory, READY, None, clock=sim_clock, load=LoadModel())
    bus = SimSpiBus(chip)
    driver = HX711Spi(bus, ready_pin=READY, clock=sim_clock)
    try:
        chip.load = LoadModel(offset_counts=-98_765, counts_per_newton=0.0)
        for _ in range(3):
            sim_clock.advance(PERIOD_S)
            assert chip.convert()
            assert driver.read_raw(0.05) == -98_765
        assert driver.data_ready == "edge"
        assert driver.polls == 0
        assert bus.transfers == 3  # one per read, nothing else
    finally:
        driver.close()
        chip.close()


class _FallbackFactory:
    """Stands in for gpiozero's Pi factory where /dev/spidev0.0 does not exist: it warns and
    returns a bit-banged interface, as gpiozero documents."""

    def __init__(self) -> None:
        self.closed = 0

    def spi(self, **_kwargs: Any) -> Any:
        warnings.warn(
            SPISoftwareFallback("failed to initialize hardware SPI, falling back to software"),
            stacklevel=1,
        )
        factory = self

        class Software:
            def close(self) -> None:
                factory.closed += 1

        return Software()


def test_gpiozero_s_software_spi_fallback_is_refused_with_the_fix() -> None:
    factory = _FallbackFactory()
    with pytest.raises(SpiUnavailable, match=r"dtparam=spi=on.*group spi"):
        open_spi(factory, port=0, device=0, hz=1_000_000, mode=0)
    assert factory.closed == 1


@pytest.mark.parametrize("level", [False, True])
def test_s7_a_stuck_spi_bus_is_a_sensor_fault_never_a_force(rig: Rig, level: bool) -> None:
    """Through the sampler: MISO stuck low or high after a good sample gives a ReadFailed
    (the engine's sensor fault, force unknown) and no ForceRead."""
    rig.set_code(3000)
    got: list[Input] = []
    failed = threading.Event()

    def put(item: Input) -> None:
        got.append(item)
        if isinstance(item, ReadFailed):
            failed.set()

    sampler = Sampler(rig.driver, rig.clock, put, rate_sps=80)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        rig.convert()
        deadline = time.monotonic() + 5.0
        while sampler.samples < 1 and time.monotonic() < deadline:
            failed.wait(0.002)
        assert sampler.samples == 1
        rig.bus.miso_stuck = level
        for _ in range(400):  # 5 s of virtual time in periods, until the sampler gives up
            rig.clock.advance(PERIOD_S)
            rig.chip.convert()
            if failed.wait(0.005):
                break
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
    reads = [i.raw for i in got if isinstance(i, ForceRead)]
    assert reads == [3000]
    assert failed.is_set()
