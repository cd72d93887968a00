"""Pin factory selection and the bounded mock pin."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
from gpiozero import Device, DigitalOutputDevice
from gpiozero.exc import BadPinFactory, PinFactoryFallback
from pytest_mock import MockerFixture

from dermaguard.hw.pins import PinFactoryUnavailable, install_pin_factory, real_pin_factory
from dermaguard.sim.pins import STATE_HISTORY, BoundedMockPin, mock_factory


def test_mock_factory_uses_bounded_pins(pin_factory: Any) -> None:
    assert Device.pin_factory is pin_factory
    led = DigitalOutputDevice(4)
    try:
        pin = led.pin
        assert isinstance(pin, BoundedMockPin)
        for _ in range(1000):
            led.toggle()
        assert len(pin.states) == STATE_HISTORY
        assert pin.states[-1].state == led.value
        pin.assert_states([pin.states[0].state])
    finally:
        led.close()


def test_install_pin_factory_sets_the_default() -> None:
    previous = Device.pin_factory
    factory = mock_factory()
    try:
        install_pin_factory(factory)
        assert Device.pin_factory is factory
    finally:
        install_pin_factory(previous)
        factory.close()


def _failing_default() -> Any:
    for name in ("lgpio", "rpigpio", "pigpio", "native"):
        warnings.warn(PinFactoryFallback(f"Falling back from {name}: nope"), stacklevel=1)
    raise BadPinFactory("Unable to load any default pin factory!")


def test_real_pin_factory_off_a_pi_says_what_to_do(
    mocker: MockerFixture, caplog: pytest.LogCaptureFixture
) -> None:
    mocker.patch.object(Device, "_default_pin_factory", side_effect=_failing_default)
    caplog.set_level(logging.DEBUG, logger="dermaguard.hw.pins")
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        with pytest.raises(PinFactoryUnavailable) as info:
            real_pin_factory()
    assert leaked == []
    message = str(info.value)
    assert "Raspberry Pi" in message
    assert "--simulate" in message
    assert isinstance(info.value, RuntimeError)
    assert "Falling back from lgpio" in caplog.text


def test_real_pin_factory_returns_what_gpiozero_picks(mocker: MockerFixture) -> None:
    sentinel = object()
    mocker.patch.object(Device, "_default_pin_factory", return_value=sentinel)
    previous = Device.pin_factory
    assert real_pin_factory() is sentinel
    assert Device.pin_factory is previous  # selecting is not installing
