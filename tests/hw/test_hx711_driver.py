"""The real HX711 driver against the pin-level chip emulator."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.hw.hx711 import (
    HX711,
    MICROCONTROLLER,
    HX711Error,
    NotReady,
    ReadDiscarded,
    stretched_read_verdict,
)
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import RETRY_READS_S

ReadCode = Callable[[HX711Chip, HX711], int]


def fixed(code: int) -> LoadModel:
    """A load model whose every conversion is ``code`` at gain 128."""
    return LoadModel(offset_counts=code, counts_per_newton=0.0)


@pytest.mark.parametrize("code", [1, 123456, 0, -1, -123456, 0x7FFFFF, -0x800000])
def test_reads_exact_signed_codes(
    chip: HX711Chip, driver: HX711, read_code: ReadCode, code: int
) -> None:
    chip.load = fixed(code)
    assert read_code(chip, driver) == code
    assert chip.reads_completed >= 1
    assert chip.next_gain == 128


def test_force_maps_through_load_model(chip: HX711Chip, driver: HX711, read_code: ReadCode) -> None:
    chip.force_n = 2.5
    assert read_code(chip, driver) == 80_000 + 100_000
    chip.force_n = -10.0
    assert read_code(chip, driver) == 80_000 - 400_000


def expect_gain_discard(chip: HX711Chip, driver: HX711, clock: SimClock) -> None:
    """The next conversion is read and discarded as made at gain 128 (timing discards aside)."""
    deadline = time.monotonic() + RETRY_READS_S
    while time.monotonic() < deadline:
        if not chip.convert():  # powered down by a timing hiccup: settle
            clock.advance(chip.settle_s)
            assert chip.convert()
        try:
            driver.read_raw(1.0)
        except ReadDiscarded as exc:
            if "made at gain 128" in exc.reason:
                return
            assert exc.reason.startswith("PD_SCK stayed high")
        else:
            pytest.fail("a conversion made at gain 128 was returned")
    pytest.fail(f"no gain discard in {RETRY_READS_S:g} s of reads")


@pytest.mark.parametrize("gain", [64, 32])
def test_other_gain_discards_first_conversion_then_reads_scaled(
    chip: HX711Chip, sim_clock: SimClock, read_code: ReadCode, hx_pins: Any, gain: int
) -> None:
    chip.load = fixed(-120_000)
    with HX711(hx_pins.dout, hx_pins.sck, gain=gain) as driver:
        assert driver.gain == gain
        # The chip starts at gain 128, so the first conversion is at the wrong gain.
        before = chip.power_down_count
        expect_gain_discard(chip, driver, sim_clock)
        if chip.next_gain != gain:
            # The host stretched that read's gain-select pulse past 60 µs: the chip reset to
            # 128 and the driver, which times every pulse, knows it (the next read is discarded
            # as made at 128 again, and selects the gain).
            assert chip.power_down_count > before
            assert driver.may_be_settling
        assert read_code(chip, driver) == -120_000 * gain // 128
        # The driver's belief matches the chip: it is at the configured gain, or the host
        # stretched the last gain-select pulse past 60 µs (the gpio interface's known weakness:
        # the data was out and is kept, the chip reset to 128) and the driver, which times every
        # pulse, knows it may be settling. A reset during an earlier, discarded try is followed
        # by a read that selects the gain again, so only the last read's pulses count here.
        assert chip.next_gain == gain or driver.may_be_settling
        assert driver.discarded >= 1


def test_unplugged_chip_raises_not_ready_and_returns(chip: HX711Chip, driver: HX711) -> None:
    chip.unplug()
    outcome: list[BaseException | int] = []

    def attempt() -> None:
        try:
            outcome.append(driver.read_raw(0.2))
        except HX711Error as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5.0)  # generous bound: only proves the call never hangs
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], NotReady)
    assert driver.timeouts == 1


def test_replugged_chip_reads_after_settling(
    chip: HX711Chip, driver: HX711, sim_clock: SimClock, read_code: ReadCode
) -> None:
    chip.unplug()
    assert not chip.convert()
    chip.replug()
    assert not chip.convert()  # settling after power-up
    sim_clock.advance(chip.settle_s)
    assert read_code(chip, driver) == 80_000


def test_long_clock_high_phase_is_discarded_then_next_read_succeeds(
    chip: HX711Chip,
    driver: HX711,
    sim_clock: SimClock,
    read_code: ReadCode,
    mocker: MockerFixture,
) -> None:
    chip.load = fixed(-4242)
    delay = mocker.patch.object(
        MICROCONTROLLER, "delay_us", side_effect=lambda us: time.sleep(200e-6)
    )
    assert chip.convert()
    with pytest.raises(ReadDiscarded, match="PD_SCK stayed high") as info:
        driver.read_raw(1.0)
    assert "powered down" in info.value.reason
    assert chip.power_down_count >= 1
    assert chip.next_gain == 128
    mocker.stop(delay)

    assert not chip.convert()  # the chip is settling after the reset
    # The next wait is extended by the settling time, since the chip is resetting.
    spy = mocker.spy(driver._dout_dev, "wait_for_inactive")
    sim_clock.advance(chip.settle_s)
    assert read_code(chip, driver) == -4242
    assert spy.call_args_list[0].args[0] > 1.0 + driver.settle_s / 2
    assert driver.discarded >= 1


def test_power_down_and_up_through_driver(
    chip: HX711Chip, sim_clock: SimClock, read_code: ReadCode, hx_pins: Any
) -> None:
    with HX711(hx_pins.dout, hx_pins.sck, gain=64) as driver:
        driver.power_down()
        time.sleep(0.002)
        assert not chip.powered
        assert chip.power_down_count == 1
        with pytest.raises(HX711Error, match="powered down"):
            driver.read_raw(0.0)
        driver.power_up()
        assert chip.powered
        assert chip.next_gain == 128
        assert not chip.convert()
        sim_clock.advance(chip.settle_s)
        expect_gain_discard(chip, driver, sim_clock)  # reset to 128, 64 configured
        assert read_code(chip, driver) == 40_000


@pytest.mark.parametrize(
    ("level", "expected"), [("high", 0x7FFFFF), ("low", -0x800000), (None, 80_000)]
)
def test_saturation_fault(
    chip: HX711Chip, driver: HX711, read_code: ReadCode, level: Any, expected: int
) -> None:
    chip.saturate(level)
    assert read_code(chip, driver) == expected


def test_out_of_range_load_saturates(chip: HX711Chip, driver: HX711, read_code: ReadCode) -> None:
    chip.force_n = 1e6
    assert read_code(chip, driver) == 0x7FFFFF
    chip.force_n = -1e6
    assert read_code(chip, driver) == -0x800000


def test_spike_fault_hits_next_n_conversions(
    chip: HX711Chip, driver: HX711, read_code: ReadCode
) -> None:
    sent: list[int] = []
    chip.on_ready = lambda code, ns: sent.append(code)
    chip.spike(500_000, samples=2)
    for _ in range(3):
        assert read_code(chip, driver) == chip.last_code
    assert sent[:3] == [580_000, 580_000, 80_000]
    chip.spike(10**8, samples=100)  # clamps to full scale
    assert read_code(chip, driver) == 0x7FFFFF


def test_many_lockstep_reads(chip: HX711Chip, driver: HX711, read_code: ReadCode) -> None:
    for i in range(500):
        chip.force_n = (i % 50) / 10
        assert read_code(chip, driver) == 80_000 + (i % 50) * 4_000
    assert driver.reads == 500
    assert driver.timeouts == 0


def test_free_running_chip(pin_factory: Any, hx_pins: Any) -> None:
    """Conversions at 80 SPS on their own thread; the driver waits for each one."""
    with (
        HX711Chip(pin_factory, hx_pins.dout, hx_pins.sck, load=fixed(-77_777)) as chip,
        HX711(hx_pins.dout, hx_pins.sck) as driver,
    ):
        chip.start()
        codes: list[int] = []
        while len(codes) < 40:
            try:
                codes.append(driver.read_raw(1.0))
            except ReadDiscarded as exc:
                assert exc.reason.startswith("PD_SCK stayed high")
        chip.stop()
    assert codes == [-77_777] * 40
    assert driver.timeouts == 0


def test_wait_read_and_on_ready(chip: HX711Chip, driver: HX711) -> None:
    seen: list[tuple[int, int]] = []
    chip.on_ready = lambda code, ns: seen.append((code, ns))
    assert chip.wait_read(0.0)  # nothing pending
    assert chip.convert()
    assert not chip.wait_read(0.0)
    assert seen == [(80_000, chip.last_ready_ns)]

    def read() -> None:
        with contextlib.suppress(ReadDiscarded):  # host timing hiccup; the data is gone anyway
            driver.read_raw(1.0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert chip.wait_read(5.0)
    reader.join(5.0)
    assert not reader.is_alive()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(code=st.integers(min_value=-(2**23), max_value=2**23 - 1))
def test_any_code_round_trips(
    chip: HX711Chip, driver: HX711, read_code: ReadCode, code: int
) -> None:
    chip.load = fixed(code)
    assert read_code(chip, driver) == code


# -- stretched PD_SCK pulses -------------------------------------------------------------------
#
# The driver's limit and the chip's power-down time are both raised far above any pause a busy
# host causes (10 ms, and 15 ms or 1 s), and one chosen pulse is held high for 30 ms. So only
# the test's own stretch counts as long, and whether the chip powers down on it is decided by
# the test, not by the host's timing.

STRETCH_S = 0.03
DRIVER_LIMIT_US = 10_000.0
CHIP_RESETS_NS = 15_000_000
CHIP_STAYS_UP_NS = 1_000_000_000


def stretch_pulse(mocker: MockerFixture, sck_pin: Any, pulse: int) -> None:
    """Hold PD_SCK high for STRETCH_S on the ``pulse``-th high phase (1-based) of each read."""
    highs = [0]

    def delay(us: float) -> None:
        if sck_pin.state:
            highs[0] += 1
            if highs[0] % 25 == pulse % 25:
                time.sleep(STRETCH_S)

    mocker.patch.object(MICROCONTROLLER, "delay_us", side_effect=delay)


def tail_has_a_zero(code: int, pulse: int) -> bool:
    tail_bits = 24 - pulse
    return tail_bits > 0 and (code & ((1 << tail_bits) - 1)) != (1 << tail_bits) - 1


@pytest.mark.parametrize("chip_resets", [True, False], ids=["chip-resets", "chip-stays-up"])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    code=st.integers(min_value=-(2**23), max_value=2**23 - 1),
    pulse=st.integers(min_value=1, max_value=25),
)
def test_a_read_with_a_stretched_pulse_is_exact_or_discarded_never_wrong(
    pin_factory: Any,
    hx_pins: Any,
    mocker: MockerFixture,
    *,
    chip_resets: bool,
    code: int,
    pulse: int,
) -> None:
    """Safety property: a stretched pulse never turns into a wrong force.

    It is kept when the bits after it prove the chip kept shifting, or when only a gain-select
    pulse was stretched (the data was already out); then the driver also says the chip may be
    settling. Otherwise it is discarded.
    """
    power_down_ns = CHIP_RESETS_NS if chip_resets else CHIP_STAYS_UP_NS
    with (
        HX711Chip(
            pin_factory, hx_pins.dout, hx_pins.sck, load=fixed(code), power_down_ns=power_down_ns
        ) as chip,
        HX711(hx_pins.dout, hx_pins.sck, max_clock_high_us=DRIVER_LIMIT_US) as driver,
    ):
        stretch_pulse(mocker, pin_factory.pin(hx_pins.sck), pulse)
        assert chip.convert()
        try:
            got: int | None = driver.read_raw(1.0)
        except ReadDiscarded as exc:
            assert exc.reason.startswith("PD_SCK stayed high")
            got = None
        mocker.stopall()

        assert got in (code, None)
        code24 = code & 0xFFFFFF
        if pulse == 25:
            assert got == code
            assert driver.may_be_settling
            assert (chip.power_down_count >= 1) if chip_resets else chip.power_down_count == 0
        elif chip_resets:
            assert got is None  # a reset chip clocks out ones: nothing after proves anything
            # At least the planted stretch; a loaded host may stretch another pulse too.
            assert chip.power_down_count >= 1
            assert driver.may_be_settling
        else:
            assert chip.power_down_count == 0
            assert (got == code) == tail_has_a_zero(code24, pulse)
            assert driver.rescued == (1 if got is not None else 0)
            assert driver.may_be_settling == (got is None)


def test_stretched_read_verdict_needs_a_zero_after_the_last_long_data_pulse() -> None:
    assert stretched_read_verdict(0xFFFFFF, 0)  # nothing was stretched
    assert not stretched_read_verdict(0x000000, 24)  # no bit after the 24th
    assert not stretched_read_verdict(0xFFF0FF, 16)  # the 8 bits after pulse 16 are all ones
    assert stretched_read_verdict(0xFFF0FE, 16)  # ... one of them is a zero
    assert stretched_read_verdict(0x7FFFFF, 0)
    assert not stretched_read_verdict(0x7FFFFF, 1)  # a reset chip reads as all ones
    assert stretched_read_verdict(0x800000, 1)
