"""The bit-banged driver measures the HX711 board's rate (hw/hx711_rate.py), as the SPI driver
does: a board whose RATE pin disagrees with ``hx711.rate_sps`` is a ``wrong_rate`` fault naming
SJ2 and RATE, and the right board is none. On the pin-level emulator, which converts a board
period apart on the virtual clock the driver measures on.

Both time limits on a PD_SCK high phase are raised far above any pause a busy host causes, so
no read is discarded for the host's timing and every count below is exact."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.core.events import ForceRead, Input, ReadFailed
from dermaguard.daemon.sampler import Sampler
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.hx711_rate import INTERVALS_NEEDED, WrongRate
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import wait_until

CODE = 123_456
DRIVER_LIMIT_US = 200_000.0
CHIP_STAYS_UP_NS = 1_000_000_000
WRONG = [(10, 80), (80, 10)]
RIGHT = [(80, 80), (10, 10)]


@contextmanager
def board(
    pin_factory: Any, hx_pins: Any, clock: SimClock, *, board_sps: int, config_sps: int
) -> Iterator[tuple[HX711Chip, HX711]]:
    """A chip strapped for ``board_sps`` and the driver configured for ``config_sps``."""
    load = LoadModel(offset_counts=CODE, counts_per_newton=0.0)
    with (
        HX711Chip(
            pin_factory,
            hx_pins.dout,
            hx_pins.sck,
            rate_sps=board_sps,
            clock=clock,
            load=load,
            power_down_ns=CHIP_STAYS_UP_NS,
        ) as chip,
        HX711(
            hx_pins.dout,
            hx_pins.sck,
            rate_sps=config_sps,
            max_clock_high_us=DRIVER_LIMIT_US,
            clock=clock,
        ) as driver,
    ):
        yield chip, driver


def read_each(chip: HX711Chip, driver: HX711, clock: SimClock, n: int) -> list[int | str]:
    """``n`` conversions a board period apart, each read at once: its code, or why refused."""
    out: list[int | str] = []
    for _ in range(n):
        clock.advance(1 / chip.rate_sps)
        assert chip.convert()
        try:
            out.append(driver.read_raw(1.0))
        except WrongRate as exc:
            out.append(exc.reason)
    return out


@pytest.mark.parametrize(("board_sps", "config_sps"), WRONG)
def test_a_board_at_the_other_rate_is_refused_naming_sj2_and_rate_after_six_right_values(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, board_sps: int, config_sps: int
) -> None:
    """The first six conversions come before the period is known and are used: their values are
    the board's (the rate changes when a force arrives, not what it reads; hardware/README.md).
    From the seventh data-ready on, every conversion is refused."""
    with board(pin_factory, hx_pins, sim_clock, board_sps=board_sps, config_sps=config_sps) as (
        chip,
        driver,
    ):
        got = read_each(chip, driver, sim_clock, INTERVALS_NEEDED + 6)
        watch = driver.rate_watch
        assert watch.known and watch.measured_sps is not None
        assert round(watch.measured_sps) == board_sps
    assert got[:INTERVALS_NEEDED] == [CODE] * INTERVALS_NEEDED
    refused = got[INTERVALS_NEEDED:]
    assert all(isinstance(r, str) for r in refused), got
    reason = str(refused[0])
    assert f"converts at {board_sps}.0 samples/s, not the configured {config_sps}" in reason
    assert "SJ2" in reason and "RATE" in reason
    assert driver.reads == INTERVALS_NEEDED
    assert driver.discarded == len(refused)
    assert chip.reads_completed == len(got)  # refused ones are clocked out all the same


@pytest.mark.parametrize(("board_sps", "config_sps"), RIGHT)
def test_a_board_at_the_configured_rate_is_measured_and_read(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, board_sps: int, config_sps: int
) -> None:
    with board(pin_factory, hx_pins, sim_clock, board_sps=board_sps, config_sps=config_sps) as (
        chip,
        driver,
    ):
        got = read_each(chip, driver, sim_clock, INTERVALS_NEEDED + 6)
        watch = driver.rate_watch
        assert watch.known and watch.problem is None
        assert watch.measured_sps is not None and round(watch.measured_sps) == board_sps
    assert got == [CODE] * len(got)


@dataclass
class SamplerRun:
    chip: HX711Chip
    driver: HX711
    sampler: Sampler
    got: list[Input]


@contextmanager
def sampling(
    pin_factory: Any, hx_pins: Any, clock: SimClock, *, board_sps: int, config_sps: int
) -> Iterator[SamplerRun]:
    with board(pin_factory, hx_pins, clock, board_sps=board_sps, config_sps=config_sps) as (
        chip,
        driver,
    ):
        got: list[Input] = []
        sampler = Sampler(driver, clock, got.append, rate_sps=config_sps)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        try:
            yield SamplerRun(chip, driver, sampler, got)
        finally:
            sampler.stop_event.set()
            thread.join(2.0)


def step(run: SamplerRun, clock: SimClock) -> None:
    """One board period on: the chip converts, and the sampler has read it before time moves."""
    sampler = run.sampler
    seen = sampler.samples + sampler.discarded
    clock.advance(1 / run.chip.rate_sps)
    assert run.chip.convert()
    assert run.chip.wait_read(2.0)
    assert wait_until(lambda: sampler.samples + sampler.discarded > seen)


@pytest.mark.parametrize(("board_sps", "config_sps"), WRONG)
def test_s7_the_sampler_reports_a_board_at_the_other_rate_as_wrong_rate(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, board_sps: int, config_sps: int
) -> None:
    """The fault the daemon shows as ``sensor_fault`` ``wrong_rate``, not a chip that times out."""
    with sampling(
        pin_factory, hx_pins, sim_clock, board_sps=board_sps, config_sps=config_sps
    ) as run:
        end = sim_clock.monotonic() + 3.0
        while sim_clock.monotonic() < end and not any(isinstance(i, ReadFailed) for i in run.got):
            step(run, sim_clock)
        # The sampler judges the silence on the clock: let it look after the last step.
        cycles = run.sampler.cycles
        assert wait_until(lambda: run.sampler.cycles >= cycles + 3)
    failed = [i for i in run.got if isinstance(i, ReadFailed)]
    assert failed, run.got
    assert failed[0].reason == "wrong_rate", failed
    assert "SJ2" in failed[0].detail and "RATE" in failed[0].detail
    forces = [i for i in run.got if isinstance(i, ForceRead)]
    assert [f.raw for f in forces] == [CODE] * INTERVALS_NEEDED


@pytest.mark.parametrize(("board_sps", "config_sps"), RIGHT)
def test_the_sampler_reports_no_fault_for_a_board_at_the_configured_rate(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, board_sps: int, config_sps: int
) -> None:
    with sampling(
        pin_factory, hx_pins, sim_clock, board_sps=board_sps, config_sps=config_sps
    ) as run:
        for _ in range(3 * board_sps // 2):  # 1.5 s of conversions
            step(run, sim_clock)
        assert run.driver.rate_watch.known and run.driver.rate_watch.problem is None
    assert not [i for i in run.got if isinstance(i, ReadFailed)]
    assert [i.raw for i in run.got if isinstance(i, ForceRead)] == [CODE] * (3 * board_sps // 2)
