"""An accepted tare reaches the calibration file whatever happens to the thread writing it
(docs/ARCHITECTURE.md, "When a thread fails"): a dead save is written again at stop."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from dermaguard.config.calibration_file import load_calibration, save_calibration
from dermaguard.core.calibration import Calibration
from dermaguard.core.events import SaveCalibration
from dermaguard.daemon.run import CalibrationSaver

OLD = Calibration(offset=1000.0, scale_n_per_count=1e-5)
TARED = Calibration(offset=1200.0, scale_n_per_count=1e-5)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    target = tmp_path / "calibration.json"
    save_calibration(target, OLD)
    return target


def _failing_once(mocker: MockerFixture) -> None:
    """The first write raises as a bug would (the thread dies); the next one is real."""
    calls = {"n": 0}

    def save(target: Path, cal: Calibration) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug in the writer")
        save_calibration(target, cal)

    mocker.patch("dermaguard.daemon.run.save_calibration", side_effect=save)


def test_a_tare_whose_save_thread_died_is_written_at_stop(
    path: Path, mocker: MockerFixture
) -> None:
    _failing_once(mocker)
    died = threading.Event()

    def hook(args: Any) -> None:
        died.set()

    mocker.patch.object(threading, "excepthook", hook)
    saver = CalibrationSaver(path)
    saver(SaveCalibration(TARED))
    assert died.wait(5.0)
    assert not saver.alive  # the supervisor would restart it; the daemon stops first
    assert load_calibration(path).offset == OLD.offset
    saver.close()
    assert load_calibration(path).offset == TARED.offset
    assert saver.alive


def test_closing_with_nothing_pending_writes_nothing(path: Path, mocker: MockerFixture) -> None:
    spy = mocker.patch("dermaguard.daemon.run.save_calibration")
    CalibrationSaver(path).close()
    spy.assert_not_called()
