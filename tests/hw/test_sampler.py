"""The sampler thread against the real driver and the chip emulator, on virtual time."""

from __future__ import annotations

import threading
import time
from typing import Any

from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.core.events import ForceRead, Input, ReadFailed
from dermaguard.daemon.sampler import Sampler
from dermaguard.hw.hx711 import HX711, MICROCONTROLLER
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import wait_until

PERIOD_S = 1 / 80


def test_a_stretched_gain_pulse_keeps_the_sample_and_the_reset_is_not_a_sensor_fault(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, mocker: MockerFixture
) -> None:
    """The 25th pulse only selects the gain: stretched past 60 µs, the data is already out and
    kept, but the chip resets and is silent for its 50 ms settling time, longer than the 3-period
    fault limit. The sampler must wait that out instead of reporting a sensor fault (S7 is for
    the sensor's failures, not for our timing)."""
    load = LoadModel(offset_counts=123_456, counts_per_newton=0.0)
    # Both time limits are raised far above any pause a busy host causes, so only the test's
    # own 30 ms stretch counts as long (the driver discards and the chip resets as they would).
    chip = HX711Chip(
        pin_factory,
        hx_pins.dout,
        hx_pins.sck,
        clock=sim_clock,
        load=load,
        power_down_ns=15_000_000,
    )
    driver = HX711(hx_pins.dout, hx_pins.sck, max_clock_high_us=10_000)
    got: list[Input] = []
    sampler = Sampler(driver, sim_clock, got.append, rate_sps=80)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    sck = pin_factory.pin(hx_pins.sck)
    try:
        sim_clock.advance(PERIOD_S)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 1)

        highs = [0]

        def stretch_25th(us: float) -> None:
            if sck.state:
                highs[0] += 1
                if highs[0] == 25:
                    time.sleep(0.03)  # past the chip's power-down time

        mocker.patch.object(MICROCONTROLLER, "delay_us", side_effect=stretch_25th)
        sim_clock.advance(PERIOD_S)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 2)
        mocker.stopall()
        assert chip.power_down_count == 1
        assert driver.may_be_settling

        # Five periods pass with no data (the chip settles for four); let the sampler look at
        # the clock a few times before the chip speaks again.
        assert not chip.convert()
        for _ in range(5):
            sim_clock.advance(PERIOD_S)
        cycles = sampler.cycles
        assert wait_until(lambda: sampler.cycles >= cycles + 3)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 3)
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
        driver.close()
        chip.close()

    assert [type(i) for i in got] == [ForceRead, ForceRead, ForceRead]
    assert [i.raw for i in got if isinstance(i, ForceRead)] == [123_456] * 3
    assert not any(isinstance(i, ReadFailed) for i in got)
