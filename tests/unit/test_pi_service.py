"""calibrate on a Pi next to the installed service: never against it, never beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from dermaguard.config.load import default_config
from dermaguard.daemon import pi_service
from dermaguard.daemon.pi_service import calibrate_clash, service_state
from dermaguard.ui.cli import main

HOME_ENV = {"XDG_STATE_HOME": "/home/pi/.local/state"}


def test_a_running_service_stops_calibration_with_the_exact_commands() -> None:
    message = calibrate_clash(default_config(), None, "calibrate --tare", "active", HOME_ENV)
    assert message is not None and "running and holds the GPIO" in message
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert lines == [
        "sudo systemctl stop dermaguard",
        "sudo -u dermaguard env STATE_DIRECTORY=/var/lib/dermaguard LG_WD=/tmp "
        "/opt/dermaguard/venv/bin/dermaguard calibrate --tare -c /etc/dermaguard/dermaguard.yaml",
        "sudo systemctl start dermaguard",
    ]


def test_an_installed_service_is_not_calibrated_beside_its_state_directory() -> None:
    message = calibrate_clash(default_config(), None, "calibrate", "installed", HOME_ENV)
    assert message is not None
    assert "reads its calibration from /var/lib/dermaguard" in message
    assert "/home/pi/.local/state/dermaguard" in message


def test_as_the_service_user_in_its_state_directory_calibration_goes_ahead() -> None:
    env = {"STATE_DIRECTORY": "/var/lib/dermaguard"}
    assert calibrate_clash(default_config(), None, "calibrate", "installed", env) is None
    assert calibrate_clash(default_config(), None, "calibrate", "absent", HOME_ENV) is None


def test_the_cli_refuses_before_touching_the_gpio(
    mocker: MockerFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = tmp_path / "dg.yaml"
    config.write_text("device_id: bathroom\n")
    mocker.patch.object(pi_service, "service_state", return_value="active")
    opened = mocker.patch("dermaguard.daemon.app.open_hardware")
    assert main(["calibrate", "--reference", "200 g", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"dermaguard calibrate --reference '200 g' -c {config}" in err
    opened.assert_not_called()


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ("LoadState=loaded\nActiveState=active\n", "active"),
        ("LoadState=loaded\nActiveState=inactive\n", "installed"),
        ("LoadState=not-found\nActiveState=inactive\n", "absent"),
    ],
)
def test_service_state_reads_systemd(mocker: MockerFixture, shown: str, expected: str) -> None:
    mocker.patch("shutil.which", return_value="/usr/bin/systemctl")
    mocker.patch.object(Path, "is_dir", return_value=True)
    run = mocker.patch("subprocess.run", return_value=subprocess.CompletedProcess([], 0, shown, ""))
    assert service_state() == expected
    assert run.call_args.args[0][-1] == "dermaguard.service"


def test_without_systemd_there_is_no_service(mocker: MockerFixture) -> None:
    mocker.patch("shutil.which", return_value=None)
    assert service_state() == "absent"
