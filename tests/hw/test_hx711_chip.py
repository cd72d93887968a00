"""The HX711 chip emulator on its own, driven pin by pin as the datasheet describes."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from gpiozero import DigitalInputDevice

from dermaguard.common.clock import SimClock
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.sim.pins import STATE_HISTORY


def bits_to_code(bits: list[int]) -> int:
    value = int("".join(map(str, bits[:24])), 2)
    return value - (1 << 24) if value & 0x800000 else value


class Hand:
    """Clocks the chip by hand through the mock SCK pin, as a driver would."""

    def __init__(self, factory: Any, pins: Any, chip: HX711Chip, clock: SimClock) -> None:
        self.sck = factory.pin(pins.sck)
        self.dout = factory.pin(pins.dout)
        self.sck.function = "output"
        self.sck.state = False
        self.chip = chip
        self.clock = clock

    def pulses(self, n: int) -> list[int]:
        bits = []
        for _ in range(n):
            self.sck.state = True
            bits.append(int(self.dout.state))
            self.sck.state = False
        return bits

    def read(self, pulses: int) -> list[int]:
        """Convert and clock ``pulses`` pulses, redoing reads the host stretched past 60 µs."""
        for _ in range(50):
            downs = self.chip.power_down_count
            if not self.chip.convert():
                self.clock.advance(self.chip.settle_s)
                assert self.chip.convert()
            assert self.dout.state == 0
            bits = self.pulses(pulses)
            if self.chip.power_down_count == downs:
                return bits
        raise AssertionError("every hand read powered the chip down")


@pytest.fixture
def hand(pin_factory: Any, hx_pins: Any, chip: HX711Chip, sim_clock: SimClock) -> Hand:
    return Hand(pin_factory, hx_pins, chip, sim_clock)


def test_load_model_scales_with_gain_and_saturates() -> None:
    rng = random.Random(0)
    model = LoadModel(offset_counts=80_000, counts_per_newton=40_000)
    assert model.code_for(1.0, 0.0, 128, rng) == 120_000
    assert model.code_for(1.0, 0.0, 64, rng) == 60_000
    assert model.code_for(1.0, 0.0, 32, rng) == 30_000
    assert model.code_for(1e9, 0.0, 128, rng) == 0x7FFFFF
    assert model.code_for(-1e9, 0.0, 128, rng) == -0x800000
    assert model.code_for(float("inf"), 0.0, 128, rng) == 0x7FFFFF
    drifting = LoadModel(offset_counts=0, counts_per_newton=0, drift_counts_per_s=10)
    assert drifting.code_for(0.0, 3.0, 128, rng) == 30


def test_load_model_noise_is_seeded() -> None:
    model = LoadModel(noise_counts=50.0)
    first = [model.code_for(0.0, 0.0, 128, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(1)
    codes = [model.code_for(0.0, 0.0, 128, rng) for _ in range(500)]
    assert len(set(codes)) > 50
    assert abs(sum(codes) / len(codes) - 80_000) < 20


@pytest.mark.parametrize("code", [0x123456, -2, -0x800000, 0x7FFFFF, 0])
def test_shifts_24_bits_msb_first_then_dout_high(hand: Hand, chip: HX711Chip, code: int) -> None:
    chip.load = LoadModel(offset_counts=code, counts_per_newton=0)
    bits = hand.read(25)
    assert bits_to_code(bits) == code
    assert bits[24] == 1  # the 25th pulse pulls DOUT high
    assert hand.dout.state == 1
    assert chip.reads_completed >= 1
    assert chip.wait_read(0.0)


@pytest.mark.parametrize(("pulses", "gain"), [(25, 128), (26, 32), (27, 64)])
def test_pulse_count_selects_next_gain(
    hand: Hand, chip: HX711Chip, sim_clock: SimClock, pulses: int, gain: int
) -> None:
    hand.read(pulses)
    assert chip.next_gain == gain
    sim_clock.advance(chip.settle_s)  # a new gain settles as after a reset
    assert chip.convert()
    assert chip.last_code == 80_000 * gain // 128


def test_sck_high_over_60us_powers_down_and_resets(
    hand: Hand, chip: HX711Chip, sim_clock: SimClock
) -> None:
    hand.read(27)
    assert chip.next_gain == 64
    assert chip.convert()
    assert hand.dout.state == 0
    downs = chip.power_down_count  # hand.read() may have redone a read the host stretched
    hand.sck.state = True
    time.sleep(0.001)
    assert not chip.powered
    assert hand.dout.state == 1  # ready data is lost
    assert chip.wait_read(0.0)
    hand.sck.state = False
    assert chip.powered
    assert chip.power_down_count == downs + 1
    assert chip.next_gain == 128
    assert not chip.convert()  # settling: 50 ms at 80 SPS
    sim_clock.advance(0.04)
    assert not chip.convert()
    sim_clock.advance(0.02)
    assert chip.convert()
    assert chip.last_code == 80_000


def test_long_pulse_found_at_falling_edge_loses_the_read(hand: Hand, chip: HX711Chip) -> None:
    assert chip.convert()
    hand.sck.state = True
    time.sleep(0.001)
    hand.sck.state = False  # nothing looked at the chip while PD_SCK was high
    assert chip.power_down_count == 1
    assert chip.reads_completed == 0
    assert hand.dout.state == 1
    assert not chip.convert()


def test_settling_is_400ms_at_10sps(pin_factory: Any) -> None:
    clock = SimClock()
    with HX711Chip(pin_factory, 17, 27, rate_sps=10, clock=clock) as chip:
        assert chip.settle_s == 0.4
        chip.unplug()
        chip.replug()
        clock.advance(0.39)
        assert not chip.convert()
        clock.advance(0.02)
        assert chip.convert()


def test_conversion_during_read_is_deferred(
    hand: Hand, chip: HX711Chip, sim_clock: SimClock
) -> None:
    for _ in range(50):
        downs = chip.power_down_count
        if not chip.convert():
            sim_clock.advance(chip.settle_s)
            continue
        before = chip.conversions
        hand.pulses(10)
        deferred = not chip.convert()
        counted = chip.conversions
        hand.pulses(15)
        if chip.power_down_count != downs:  # the host stretched a pulse: try again
            continue
        assert deferred
        assert counted == before
        deadline = time.monotonic() + 5.0
        while chip.conversions == before and time.monotonic() < deadline:
            time.sleep(0.001)
        assert chip.conversions == before + 1
        assert hand.dout.state == 0
        return
    pytest.fail("every attempt powered the chip down")


def test_unplugged_chip_never_ready(hand: Hand, chip: HX711Chip) -> None:
    assert chip.convert()
    chip.unplug()
    assert hand.dout.state == 1
    assert not chip.convert()
    assert hand.pulses(25) == [1] * 25
    assert not chip.powered
    chip.replug()
    assert chip.powered


def test_dout_ignores_pull_changes(pin_factory: Any, hx_pins: Any, chip: HX711Chip) -> None:
    dout = pin_factory.pin(hx_pins.dout)
    assert dout.state == 1
    dout.pull = "down"
    assert dout.state == 1
    device = DigitalInputDevice(hx_pins.dout, pull_up=None, active_state=True)
    assert device.value == 1
    assert chip.convert()
    assert device.value == 0
    dout.pull = "up"
    assert device.value == 0
    device.close()


def test_pins_must_not_exist_before_the_chip(pin_factory: Any) -> None:
    device = DigitalInputDevice(22, pull_up=None, active_state=True)
    try:
        with pytest.raises(RuntimeError, match="before any gpiozero device"):
            HX711Chip(pin_factory, 22, 23)
    finally:
        device.close()


def test_pin_history_is_bounded(hand: Hand) -> None:
    for _ in range(30):
        hand.read(25)
    assert len(hand.sck.states) == STATE_HISTORY
    assert len(hand.dout.states) <= STATE_HISTORY


def test_rejects_bad_arguments(pin_factory: Any, chip: HX711Chip) -> None:
    with pytest.raises(ValueError):
        chip.force_n = float("nan")
    with pytest.raises(ValueError):
        chip.saturate("sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        chip.spike(1, samples=-1)
    with pytest.raises(ValueError):
        HX711Chip(pin_factory, 17, 27, rate_sps=40)


def test_dout_edges_of_data_bits_are_reported_after_the_read_not_inside_the_clock_write(
    hand: Hand, chip: HX711Chip
) -> None:
    """lgpio reports edges from its own thread, after the reader lets go of the GIL; the
    emulator must not lengthen the driver's clock-high phases with gpiozero callbacks either.
    The level itself changes at once, so the driver still reads every bit."""
    chip.load = LoadModel(offset_counts=0x5A5A5A, counts_per_newton=0)
    # About edges, not power-down: a host pause mid-pulse must not reset the chip (which
    # drives DOUT high and reports it) and fail the count of reports below.
    chip.power_down_ns = 10**12
    reported: list[bool] = []

    def note(ticks: int, state: bool) -> None:
        reported.append(bool(state))

    hand.dout.edges = "both"
    hand.dout.when_changed = note  # gpiozero keeps a weak reference: ``note`` holds it
    assert chip.convert()
    assert reported == [False]  # data ready is reported at once
    bits = hand.pulses(24)
    assert bits_to_code(bits) == 0x5A5A5A
    assert reported == [False]  # twelve level changes, none reported while clocking
    hand.pulses(1)  # the 25th pulse pulls DOUT high; it is reported once PD_SCK has fallen
    assert reported == [False, True]
    assert chip.convert()
    assert reported == [False, True, False]


def test_own_clock_counts_every_conversion_due_even_those_replaced_before_anyone_looked(
    pin_factory: Any, sim_clock: SimClock
) -> None:
    """A real chip converts on its oscillator whether or not it is looked at: conversions that
    fell due while nobody touched the emulator were made (and lost), so they count, each
    reported with the time it fell due; none falls due while the chip settles after a reset."""
    chip = HX711Chip(pin_factory, 9, None, clock=sim_clock)  # SPI: PD_SCK is the bus's MOSI
    due: list[tuple[int, float]] = []
    chip.on_due = lambda number, at: due.append((number, at))
    try:
        first = sim_clock.monotonic() + 0.001
        chip.run_on_clock(first_at=first)
        sim_clock.advance(0.001 + 4.5 * chip.period_s)
        chip.tick()
        assert chip.conversions == 5
        assert [n for n, _ in due] == [1, 2, 3, 4, 5]
        assert [at for _, at in due] == pytest.approx([first + k * chip.period_s for k in range(5)])
        assert not chip.dout and chip.reads_completed == 0  # one waits; four were lost unread
        # A reset (PD_SCK high for over 60 µs): the oscillator starts again once settled.
        now_ns, now = time.perf_counter_ns(), sim_clock.monotonic()
        chip.drive_sck(True, now_ns, now)
        chip.drive_sck(False, now_ns + 80_000, now + 80e-6)
        assert chip.power_down_count == 1 and chip.dout
        settled = now + 80e-6 + chip.settle_s
        sim_clock.advance(80e-6 + chip.settle_s + 2.5 * chip.period_s)
        chip.tick()
        assert chip.conversions == 8
        assert [at for _, at in due[5:]] == pytest.approx(
            [settled + k * chip.period_s for k in range(3)]
        )
    finally:
        chip.close()


def test_own_clock_started_while_the_chip_settles_counts_no_conversion_before_it_settled(
    pin_factory: Any, sim_clock: SimClock
) -> None:
    """A chip reset just before its clock is started (as a driver resets it at start-up) makes
    nothing until it has settled, however long nobody looks."""
    chip = HX711Chip(pin_factory, 9, None, clock=sim_clock)
    due: list[float] = []
    chip.on_due = lambda _number, at: due.append(at)
    try:
        now_ns, now = time.perf_counter_ns(), sim_clock.monotonic()
        chip.drive_sck(True, now_ns, now)
        chip.drive_sck(False, now_ns + 80_000, now + 80e-6)
        settled = now + 80e-6 + chip.settle_s
        chip.run_on_clock(first_at=now + 0.001)
        sim_clock.advance(chip.settle_s + 3 * chip.period_s)
        chip.tick()
        grid = [now + 0.001 + k * chip.period_s for k in range(12)]
        expected = [t for t in grid if settled <= t <= sim_clock.monotonic()]
        assert len(expected) == 3 and due == pytest.approx(expected)
        assert chip.conversions == len(expected)
    finally:
        chip.close()
