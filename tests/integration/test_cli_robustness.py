"""Every command against a hostile machine: a state directory it cannot use, an unreadable
history, a closed standard output, an output it cannot write. Each gives a message naming what
failed and a non-zero exit; never a traceback, made-up figures or a directory created silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermaguard.ui.cli import main
from support import daemon

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "src" / "dermaguard" / "data" / "dermaguard.example.yaml"
SHORT = """
name: short
description: three seconds of nothing
duration_s: 3
force:
  - {t: 0, n: 0}
"""


def cli(state: Path, *args: str, closed_stdout: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI; with ``closed_stdout`` its standard output is a pipe nobody reads."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermaguard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=daemon.env_for(state),
    )
    assert proc.stdout is not None and proc.stderr is not None
    if closed_stdout:
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode not in (0, None), result
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with a simulated session in its history (only read by the tests)."""
    state = tmp_path_factory.mktemp("state")
    scenario = str(ROOT / "scenarios/gentle_session.yaml")
    run = cli(state, "run", "--no-mqtt", "--simulate", scenario, "--speed", "20")
    assert run.returncode == 0, run.stderr
    return state


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("history",),
        ("history", "--json"),
        ("check-config", str(EXAMPLE)),
    ],
)
def test_a_closed_standard_output_is_a_message_and_exit_1(
    history: Path, args: tuple[str, ...]
) -> None:
    result = cli(history, *args, closed_stdout=True)
    assert_clean_failure(result, "standard output was closed")
    assert result.returncode == 1


def test_the_daemon_carries_on_when_its_output_closes_and_says_so(tmp_path: Path) -> None:
    scenario = daemon.write_scenario(tmp_path / "short.yaml", SHORT)
    result = cli(
        tmp_path,
        "run",
        "--no-mqtt",
        "--simulate",
        str(scenario),
        "--speed",
        "5",
        closed_stdout=True,
    )
    assert_clean_failure(result, "console output stopped", "standard output failed")
    # The run itself went on to the end: its history was written.
    assert any(e["type"] == "daemon_stopping" for e in daemon.stored_events(tmp_path))


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--no-mqtt", "--simulate", str(ROOT / "scenarios/gentle_session.yaml")),
        ("calibrate", "--simulate", "--tare"),
        ("calibrate", "--simulate", "--reference", "200g"),
    ],
)
def test_a_state_directory_that_cannot_be_made_is_named(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "dermaguard").write_text("a file where the state directory should be")
    result = cli(tmp_path, *args)
    assert_clean_failure(result, str(tmp_path / "dermaguard"))


def test_a_read_only_state_directory_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, with the refusal a read-only file system gives (root ignores permissions)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)

    def refuse(path: object, *_args: object, **_kw: object) -> None:
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(os, "mkdir", refuse)
    assert main(["calibrate", "--simulate", "--tare"]) == 1
    err = capsys.readouterr().err
    assert "Read-only file system" in err and str(tmp_path / "dermaguard") in err


def test_creating_the_state_directory_is_said(tmp_path: Path) -> None:
    result = cli(tmp_path, "calibrate", "--simulate", "--tare")
    assert result.returncode == 0, result.stderr
    assert f"created the state directory {tmp_path / 'dermaguard' / 'simulation'}" in result.stderr


@pytest.mark.parametrize("args", [("status",), ("history",), ("history", "--json")])
def test_an_unreadable_history_is_an_error_not_an_empty_one(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    db = daemon.db_path(tmp_path)
    db.parent.mkdir(parents=True)
    db.write_text("not a database")
    result = cli(tmp_path, *args)
    assert_clean_failure(result, str(db), "not a database")
    assert "uses" not in result.stdout and "[]" not in result.stdout, result.stdout


def test_status_without_any_history_invents_no_roller_uses(tmp_path: Path) -> None:
    result = cli(tmp_path, "status")
    assert result.returncode == 0, result.stderr
    assert "uses" not in result.stdout and "nothing recorded there yet" in result.stdout


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("nodir/s.png", "does not exist"),
        ("s.jpg", "PNG images only"),
        ("s", "PNG images only"),
    ],
)
def test_report_refuses_an_output_it_cannot_write_and_creates_nothing(
    history: Path, tmp_path_factory: pytest.TempPathFactory, name: str, needle: str
) -> None:
    out_dir = tmp_path_factory.mktemp("out")
    result = cli(history, "report", "1", "-o", str(out_dir / name))
    assert_clean_failure(result, needle)
    assert list(out_dir.iterdir()) == []


def test_new_roller_never_creates_a_history_and_the_simulation_fallback_stays(
    history: Path, tmp_path: Path
) -> None:
    device_db = history / "dermaguard" / "dermaguard.db"
    refused = cli(history, "new-roller")
    assert refused.returncode == 2, refused
    assert "no device history yet" in refused.stderr and "--simulation" in refused.stderr
    assert not device_db.exists()
    # Still the simulation's history, and each command says which history it read.
    sim_db = daemon.db_path(history)
    for args in (
        ("status",),
        ("history",),
        ("report", "--weeks", "1", "-o", str(tmp_path / "c.png")),
    ):
        result = cli(history, *args)
        assert f"showing the simulation's, {sim_db}" in result.stdout + result.stderr, result
    as_json = cli(history, "history", "--json")
    assert as_json.stdout.startswith("[") and str(sim_db) in as_json.stderr


def test_new_roller_on_a_fresh_machine_creates_nothing(tmp_path: Path) -> None:
    for args in (("new-roller",), ("new-roller", "--simulation")):
        result = cli(tmp_path, *args)
        assert result.returncode == 2 and "nothing to change" in result.stderr, result
    assert list(tmp_path.iterdir()) == []


def test_every_history_command_names_the_history_it_read(tmp_path: Path) -> None:
    device_db = tmp_path / "dermaguard" / "dermaguard.db"
    for args in (("status",), ("history",)):
        result = cli(tmp_path, *args)
        assert f"(device history: {device_db})" in result.stdout, result
    result = cli(tmp_path, "status", "--simulation")
    assert f"(simulation history: {daemon.db_path(tmp_path)})" in result.stdout, result


def test_report_names_the_missing_session_and_what_there_is(history: Path, tmp_path: Path) -> None:
    result = cli(history, "report", "99", "-o", str(tmp_path / "s.png"))
    assert_clean_failure(result, "there is no session 99 in", "it holds sessions 1 to 1")
    assert result.returncode == 2


def test_history_limit_below_one_is_a_usage_error(history: Path) -> None:
    result = cli(history, "history", "-n", "0")
    assert_clean_failure(result, "-n/--limit must be at least 1, got 0")
    assert "No sessions yet" not in result.stdout


def test_a_reference_weight_without_a_unit_is_refused(tmp_path: Path) -> None:
    assert cli(tmp_path, "calibrate", "--simulate", "--tare").returncode == 0
    result = cli(tmp_path, "calibrate", "--simulate", "--reference", "200")
    assert_clean_failure(result, "'200' is a weight without a unit: write 200g, 200kg or 200N")
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("command", "name", "help_text"),
    [("report", "SESSION_NO", "the session to draw"), ("check-config", "file", "config file")],
)
def test_positional_arguments_have_help(
    command: str, name: str, help_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    positional = capsys.readouterr().out.split("positional arguments:")[1]
    positional = positional.split("options:")[0]
    assert name in positional and help_text in " ".join(positional.split()), positional


def closed_fd1(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with descriptor 1 closed (``>&-``), not merely a pipe nobody reads."""
    return subprocess.run(
        ["sh", "-c", 'exec "$0" -m dermaguard "$@" >&-', sys.executable, *args],
        capture_output=True,
        text=True,
        env=daemon.env_for(state),
        timeout=120,
        check=False,
    )


def test_a_command_started_without_standard_output_says_so_and_exits_1(history: Path) -> None:
    result = closed_fd1(history, "status")
    assert_clean_failure(result, "standard output is not open")
    assert result.returncode == 1


def test_the_daemon_started_without_standard_output_says_so_and_runs_to_the_end(
    tmp_path: Path,
) -> None:
    scenario = daemon.write_scenario(tmp_path / "short.yaml", SHORT)
    result = closed_fd1(tmp_path, "run", "--no-mqtt", "--simulate", str(scenario), "--speed", "5")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "standard output is not open" in result.stderr
    assert any(e["type"] == "daemon_stopping" for e in daemon.stored_events(tmp_path))


def test_a_negative_reference_weight_is_refused_in_our_words(tmp_path: Path) -> None:
    result = cli(tmp_path, "calibrate", "--simulate", "--reference", "-200g")
    assert_clean_failure(result, "'-200g': a reference weight must be more than zero")
    assert result.returncode == 2 and "expected one argument" not in result.stderr


@pytest.mark.parametrize("speed", ["nan", "inf", "0", "-1"])
def test_a_speed_that_is_not_a_positive_number_is_refused(tmp_path: Path, speed: str) -> None:
    scenario = Path(__file__).parents[2] / "scenarios" / "over_pressure.yaml"
    result = cli(tmp_path, "run", "--simulate", str(scenario), "--speed", speed)
    assert_clean_failure(result, f"--speed {float(speed):g} is not allowed")
    assert result.returncode == 2


def test_a_report_the_machine_refuses_to_write_exits_1(history: Path) -> None:
    result = cli(history, "report", "1", "-o", "/proc/x.png")
    assert_clean_failure(result, "cannot write /proc/x.png")
    assert result.returncode == 1


@pytest.mark.parametrize("command", [("check-hardware",), ("calibrate", "--tare")])
def test_no_gpio_on_this_machine_is_the_machine_refusing_exit_1(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # The test machine is no Raspberry Pi: no GPIO backend loads, and that is not a mistake
    # in what was asked.
    result = cli(tmp_path, *command)
    assert_clean_failure(result, "No GPIO backend could be loaded")
    assert result.returncode == 1
