"""An HX711 board whose RATE pin disagrees with ``hx711.rate_sps`` (hw/hx711_rate.py): the
SparkFun board ships at 10 samples/s (SJ2 ties RATE to GND) while the config says 80. The
driver measures the board's period before trusting the config, and the mismatch is a fault
naming SJ2 and RATE: in ``check-hardware`` and in the daemon, never silently adapted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dermaguard.config.calibration_file import save_calibration
from dermaguard.config.load import default_config
from dermaguard.core.calibration import Calibration, CalibrationPoint
from dermaguard.daemon.app import open_hardware, steady_scenario
from dermaguard.hw.hx711_protocol import NotReady
from dermaguard.hw.hx711_rate import WrongRate
from support import daemon


@pytest.mark.parametrize(("board", "rc"), [(10, 1), (80, 0)])
def test_check_hardware_names_sj2_and_rate_for_a_10_sps_board_under_a_config_of_80(
    tmp_path: Path, board: int, rc: int
) -> None:
    # A 10 samples/s board needs its settling and seven conversions before its rate is known.
    args = ("check-hardware", "--simulate", "--sim-board-rate", str(board), "--seconds", "2")
    result = daemon.run_cli(*args, state=tmp_path)
    assert result.returncode == rc, result.stdout + result.stderr
    assert f"board rate (measured): {board}.0 samples/s" in result.stdout
    if board == 10:
        assert "converts at 10.0 samples/s, not the configured 80" in result.stdout
        assert "cut solder jumper SJ2" in result.stdout and "RATE" in result.stdout
        assert "DOUT never went low" not in result.stdout  # the old, wrong, hint
    else:
        assert "All good." in result.stdout


@pytest.mark.parametrize("board", [10, 80])
def test_check_hardware_on_the_bit_banged_interface_measures_the_board_rate_too(
    tmp_path: Path, board: int
) -> None:
    config = tmp_path / "gpio.yaml"
    config.write_text("hx711: {interface: gpio}\n", encoding="utf-8")
    args = ("--simulate", "--sim-board-rate", str(board), "--seconds", "2", "-c", str(config))
    result = daemon.run_cli("check-hardware", *args, state=tmp_path)
    assert "HX711 interface: gpio" in result.stdout
    assert f"board rate (measured): {board}.0 samples/s" in result.stdout, result.stdout
    if board == 10:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "converts at 10.0 samples/s, not the configured 80" in result.stdout
        assert "cut solder jumper SJ2" in result.stdout
    else:
        # A busy host may spoil bit-banged reads (said, not hidden), never the rate.
        assert result.returncode in (0, 1), result.stdout + result.stderr
        assert "SJ2" not in result.stdout


def test_an_80_sps_board_under_a_config_of_10_is_refused_not_read_at_18_per_second() -> None:
    """The reverse: the driver sees data every 12.5 ms and refuses the conversions."""
    config = default_config()
    config = dataclasses.replace(config, hx711=dataclasses.replace(config.hx711, rate_sps=10))
    hw = open_hardware(config, steady_scenario("rate", 0.0, board_rate_sps=80), speed=1.0)
    try:
        hw.case.lock_out()
        assert hw.sim is not None
        hw.sim.start()
        refused: list[str] = []
        for _ in range(40):
            try:
                hw.driver.read_raw(0.3)
            except WrongRate as exc:
                refused.append(exc.reason)
            except NotReady:
                continue
        assert refused, "the board's conversions were used at the wrong rate"
        assert "converts at 80.0 samples/s, not the configured 10" in refused[0]
        assert "SJ2" in refused[0] and "RATE" in refused[0]
    finally:
        hw.close()


@pytest.mark.parametrize("interface", ["spi", "gpio"])
def test_the_daemon_reports_a_10_sps_board_as_a_sensor_fault_naming_sj2(
    tmp_path: Path, interface: str
) -> None:
    # Calibrated already (a simulation calibrates itself otherwise, which this board refuses).
    cal = Calibration(
        0.0, 1 / 40_000, points=(CalibrationPoint(0.0, 0.0), CalibrationPoint(40_000.0, 1.0))
    )
    save_calibration(daemon.db_path(tmp_path).with_name("calibration.json"), cal)
    scenario = daemon.write_scenario(
        tmp_path / "slow_board.yaml",
        "duration_s: 4\nsensor: {board_rate_sps: 10}\nforce: [{t: 0, n: 0}, {t: 4, n: 0}]\n",
    )
    config = tmp_path / f"{interface}.yaml"
    config.write_text(f"hx711: {{interface: {interface}}}\n", encoding="utf-8")
    proc = daemon.start(tmp_path, scenario, port=None, speed=2.0, args=("-c", str(config)))
    rc, _out, err = daemon.finish(proc, timeout=90)
    assert rc == 0, err[-2000:]
    faults = [e["data"] for e in daemon.stored_events(tmp_path) if e["type"] == "sensor_fault"]
    # One fault, and the right one: not a chip that never answers first (a 10 samples/s board
    # is silent for 0.4 s after its reset, longer than an 80 samples/s board ever is).
    assert [f["reason"] for f in faults] == ["wrong_rate"], faults
    assert "SJ2" in faults[0]["detail"] and "RATE" in faults[0]["detail"]
