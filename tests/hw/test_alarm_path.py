"""The alarm path through the real shell: emulator → driver → sampler → engine → LED and buzzer.

Everything runs on gpiozero mock pins with the real threads. Waits are bounded only so a broken
build fails instead of hanging; nothing asserts on how fast things happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.config.load import default_config
from dermaguard.core.calibration import Calibration
from dermaguard.core.events import Effect, EmitEvent, Priority, ShowIndicators
from dermaguard.daemon.app import build_engine
from dermaguard.daemon.runtime import Runtime
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.indicators import PATTERNS, Indicators
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import wait_until

CONFIG = default_config()
PINS = CONFIG.pins
MODEL = LoadModel()
CAL = Calibration(offset=MODEL.offset_counts, scale_n_per_count=1 / MODEL.counts_per_newton)


class Rig:
    """A running shell on mock pins, with the chip stepped by the test in virtual time."""

    def __init__(self, factory: Any, sinks: list[Any]) -> None:
        self.clock = SimClock()
        self.chip = HX711Chip(
            factory, PINS.hx711_dout, PINS.hx711_sck, clock=self.clock, load=LoadModel()
        )
        self.driver = HX711(PINS.hx711_dout, PINS.hx711_sck)
        self.indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
        self.engine = build_engine(CONFIG, CAL)
        self.runtime = Runtime(
            self.engine, self.clock, self.indicators, self.driver, rate_sps=80, sinks=sinks
        )
        self.buzzer_pin = factory.pin(PINS.buzzer)
        self.red_pin = factory.pin(PINS.led_red)
        self.chip_plugged = True

    def step(self, force_n: float, n: int) -> None:
        """Feed ``n`` good samples at ``force_n`` (or ``n`` periods while the chip is unplugged).

        Counting good samples, not conversions, keeps the test exact when the host pauses the
        reader mid-pulse and the chip resets (it then settles for a few periods).
        """
        target = self.runtime.sampler.samples + n
        for _ in range(n * 40):
            self.clock.advance(1 / 80)
            self.chip.force_n = force_n
            seen = self._outcomes()
            if self.chip.convert():
                self.chip.wait_read(2.0)
                wait_until(lambda seen=seen: self._outcomes() > seen, 1.0)
            if self.runtime.sampler.samples >= target:
                return
            if not self.chip_plugged and _ >= n:
                return

    def _outcomes(self) -> int:
        return self.runtime.sampler.samples + self.runtime.sampler.discarded

    def close(self) -> None:
        self.runtime.stop()
        self.indicators.close()
        self.driver.close()
        self.chip.close()


@pytest.fixture
def rig_factory(pin_factory: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(sinks: list[Any] | None = None) -> Rig:
        rig = Rig(pin_factory, sinks or [])
        rigs.append(rig)
        rig.runtime.start()
        return rig

    yield make
    for rig in rigs:
        rig.close()


def test_s6_over_pressure_alarm_is_local_when_network_and_disk_sinks_fail(
    rig_factory: Any,
) -> None:
    """Sinks standing for MQTT and the disk raise on every effect; the alarm still sounds."""
    seen: list[Effect] = []

    def dead_broker(effect: Effect) -> None:
        seen.append(effect)
        raise ConnectionError("broker unreachable")

    def full_disk(effect: Effect) -> None:
        raise OSError(28, "No space left on device")

    rig = rig_factory([dead_broker, full_disk])
    rig.step(2.0, 10)
    assert wait_until(lambda: rig.engine.pressure.zones.zone == "ok")
    rig.step(6.0, 4)
    assert wait_until(lambda: rig.buzzer_pin.state == 1 or rig.engine.pressure.over_pressure)

    def last_shown() -> ShowIndicators | None:
        shown = [e for e in seen if isinstance(e, ShowIndicators)]
        return shown[-1] if shown else None

    # The sinks hear of an effect after the pins have shown it: wait until they have it too.
    assert wait_until(lambda: (s := last_shown()) is not None and s.alarm is Priority.HIGH)
    shown = last_shown()
    assert shown is not None and shown.alarm_reason == "over_pressure"
    assert rig.runtime.failed is None
    # The red channel of the LED is lit or flashing (the high-priority colour).
    assert PATTERNS[Priority.HIGH].colour[0] == 1.0
    assert wait_until(lambda: rig.red_pin.state == 1)


def test_the_alarm_clears_and_the_buzzer_falls_silent_when_force_drops(rig_factory: Any) -> None:
    events: list[str] = []
    rig = rig_factory([lambda e: events.append(e.event.type) if isinstance(e, EmitEvent) else None])
    rig.step(6.0, 6)
    assert wait_until(lambda: "over_pressure" in events)
    rig.step(1.0, 20)
    assert wait_until(lambda: "over_pressure_cleared" in events)
    assert wait_until(lambda: not rig.indicators.buzzer.is_active)


def test_s7_unplugged_sensor_raises_fault_and_shows_medium_alarm(rig_factory: Any) -> None:
    shown: list[ShowIndicators] = []
    rig = rig_factory([lambda e: shown.append(e) if isinstance(e, ShowIndicators) else None])
    rig.step(1.5, 10)
    rig.chip.unplug()
    rig.chip_plugged = False
    # Time passes with no data: the sampler's limit is kept on the virtual clock.
    rig.step(1.5, 6)
    assert wait_until(lambda: rig.engine.pressure.fault == "not_ready")
    assert wait_until(lambda: bool(shown) and shown[-1].alarm is Priority.MEDIUM)
    assert rig.engine.pressure.force_n is None
    rig.chip.replug()
    rig.chip_plugged = True
    rig.step(1.5, 40)
    assert wait_until(lambda: rig.engine.pressure.fault is None)
