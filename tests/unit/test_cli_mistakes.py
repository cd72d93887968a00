"""Mistakes a person makes with the newer commands: a clear message, nothing done."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from dermaguard.daemon import outputs_off
from dermaguard.hw.pins import PinFactoryUnavailable
from dermaguard.ui.cli import main


def test_report_by_steadiness_without_weeks_is_refused_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.png"
    assert main(["report", "1", "--by", "steadiness", "-o", str(out)]) == 2
    assert "--by colours the calendar's days: give it with --weeks N" in capsys.readouterr().err
    assert not out.exists()


def test_outputs_off_without_gpio_says_so_without_pointing_to_simulate(
    mocker: MockerFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    mocker.patch(
        "dermaguard.hw.pins.real_pin_factory",
        side_effect=PinFactoryUnavailable(
            "No GPIO backend could be loaded. Run with --simulate to use simulated hardware."
        ),
    )
    assert outputs_off.cmd_outputs_off(argparse.Namespace(config=None)) == 1
    err = capsys.readouterr().err
    assert err.startswith("outputs-off: No GPIO backend could be loaded.")
    assert "--simulate" not in err and "no outputs to switch off here" in err
