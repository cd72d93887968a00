"""Silence at the pins: the buzzer stops, the LED keeps flashing the alarm (S11)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dermaguard.config.load import default_config
from dermaguard.core.events import Priority, ShowIndicators
from dermaguard.hw.indicators import Indicators

PINS = default_config().pins
ALARM = ShowIndicators("over", Priority.HIGH, "over_pressure")


def flashes(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        while not stop.wait(0.01):
            if predicate():
                return True
        return predicate()
    finally:
        timer.cancel()


def test_s11_silence_mutes_the_buzzer_pin_but_not_the_led(pin_factory: Any) -> None:
    ind = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
    try:
        buzzer, red = pin_factory.pin(PINS.buzzer), pin_factory.pin(PINS.led_red)
        ind.show(ALARM)
        assert buzzer.state == 1  # the pattern's first step is applied synchronously
        ind.show(ShowIndicators("over", Priority.HIGH, "over_pressure", silenced=True))
        assert buzzer.state == 0
        # The LED still flashes red: its pin keeps toggling by itself (bounded wait only).
        seen = len(red.states)
        assert flashes(lambda: len(red.states) >= seen + 2)
        # The silence ends: the buzzer sounds again with the alarm still on.
        ind.show(ALARM)
        assert buzzer.state == 1
    finally:
        ind.close()
