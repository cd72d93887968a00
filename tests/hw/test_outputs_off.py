"""``dermaguard outputs-off`` on mock pins: the service's stop path after any end of the daemon,
a SIGKILL included (docs/SAFETY.md, H32). A killed daemon's outputs are left as the kernel kept
them: the mock pin stays an output at the level it was driven."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice

from dermaguard.config.load import default_config
from dermaguard.daemon.outputs_off import cmd_outputs_off, drive_off, safety_outputs

UV, BUZZER = 25, 18


def left_driven(factory: Any, gpio: int, level: bool) -> Any:
    """A pin as a killed process leaves it on a Raspberry Pi kernel: an output, still driven."""
    pin = factory.pin(gpio)
    pin.function = "output"
    pin.state = level
    return pin


def last_driven(pin: Any) -> bool:
    """The level the pin was last driven to (its history outlives the release)."""
    return bool(pin.states[-1].state)


def config_file(tmp_path: Path, text: str) -> argparse.Namespace:
    path = tmp_path / "dermaguard.yaml"
    path.write_text(text)
    return argparse.Namespace(config=path)


def test_h32_a_killed_daemons_uv_and_buzzer_are_driven_off(
    pin_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    uv, buzzer = left_driven(pin_factory, UV, True), left_driven(pin_factory, BUZZER, True)
    assert cmd_outputs_off(argparse.Namespace(config=None), pin_factory) == 0
    assert not last_driven(uv) and not last_driven(buzzer)
    assert capsys.readouterr().out == "uv_led (GPIO25): off (low)\nbuzzer (GPIO18): off (low)\n"


def test_h32_an_active_low_driver_is_driven_to_its_own_off_level(
    pin_factory: Any, tmp_path: Path
) -> None:
    """Off is the configured polarity's off level, not "low"."""
    args = config_file(tmp_path, "case:\n  uv_active_high: false\n")
    uv = left_driven(pin_factory, UV, False)  # on, for an active-low driver
    assert cmd_outputs_off(args, pin_factory) == 0
    assert last_driven(uv) is True


def test_h32_an_output_it_cannot_open_is_reported_and_the_other_still_driven_off(
    pin_factory: Any,
) -> None:
    """Safe whoever holds the pins: a busy UV pin does not keep the buzzer on, and says so."""
    holder = DigitalOutputDevice(UV, initial_value=True, pin_factory=pin_factory)
    buzzer = left_driven(pin_factory, BUZZER, True)
    out = io.StringIO()
    try:
        assert drive_off(safety_outputs(default_config()), pin_factory, out) is False
    finally:
        holder.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("uv_led (GPIO25): could not drive it off:")
    assert lines[1] == "buzzer (GPIO18): off (low)"
    assert not last_driven(buzzer)


def test_h32_with_nothing_held_it_is_harmless_to_run_twice(pin_factory: Any) -> None:
    for _ in range(2):
        assert cmd_outputs_off(argparse.Namespace(config=None), pin_factory) == 0
    assert not last_driven(pin_factory.pin(UV))
