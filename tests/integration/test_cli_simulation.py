"""The CLI in a child process, as a person runs it: simulation, calibration, config checks."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dermaguard.common.timefmt import utc_epoch
from support import daemon

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

pytestmark = pytest.mark.subprocess


def dermaguard(*args: str, state: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run(
        [sys.executable, "-m", "dermaguard", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def simulate(
    name: str, state: Path, speed: str = "10", timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a shipped scenario through the CLI on simulated hardware."""
    return dermaguard(
        "run",
        "--no-mqtt",
        "--simulate",
        str(SCENARIOS / f"{name}.yaml"),
        "--speed",
        speed,
        state=state,
        timeout=timeout,
    )


def test_over_pressure_scenario_prints_the_alarm_and_its_clearing(tmp_path: Path) -> None:
    result = simulate("over_pressure", tmp_path, "10")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("ALARM over-pressure") == 2, out
    assert out.count("alarm cleared") == 2, out
    assert "zone ok" in out and "zone high" in out
    assert "FAULT" not in out
    # The alarm comes before its clearing.
    assert out.index("ALARM over-pressure") < out.index("alarm cleared")
    assert "simulation finished" in out


def test_gentle_session_raises_no_alarm(tmp_path: Path) -> None:
    result = simulate("gentle_session", tmp_path, "20")
    assert result.returncode == 0, result.stderr
    assert "zone ok" in result.stdout
    assert "ALARM" not in result.stdout and "FAULT" not in result.stdout


def test_unplugged_sensor_in_a_scenario_faults_and_recovers(tmp_path: Path) -> None:
    scenario = tmp_path / "unplug.yaml"
    scenario.write_text(
        "force: [{t: 0, n: 2.0}, {t: 6, n: 2.0}]\nfaults: [{t: 2, unplug_s: 1.5}]\n",
        encoding="utf-8",
    )
    result = dermaguard(
        "run", "--no-mqtt", "--simulate", str(scenario), "--speed", "10", state=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    fault = next(line for line in lines if "FAULT force sensor: not_ready" in line)
    # Reported within 3 sample periods (37.5 ms) of the unplug at t = 2 s on the virtual clock,
    # plus the chip's 50 ms settling time in case a read had just been discarded (the chip might
    # then be resetting, which looks the same as unplugged until settling is over).
    t_fault = float(fault.split("]")[0].strip("[ s"))
    assert 2.0 <= t_fault <= 2.0 + 0.05 + 3 / 80 + 0.0125
    assert any("force sensor recovered" in line for line in lines)


def test_calibrate_non_interactive_round_trip_on_the_emulator(tmp_path: Path) -> None:
    tare = dermaguard("calibrate", "--simulate", "--tare", state=tmp_path)
    assert tare.returncode == 0, tare.stderr
    assert "next: put a known weight" in tare.stdout
    ref = dermaguard(
        "calibrate", "--simulate", "--sim-load", "200g", "--reference", "200g", state=tmp_path
    )
    assert ref.returncode == 0, ref.stderr
    data = json.loads(
        (tmp_path / "dermaguard" / "simulation" / "calibration.json").read_text("utf-8")
    )
    assert [p["force_n"] for p in data["points"]] == pytest.approx([0.0, 0.2 * 9.80665])
    # The emulator's ground truth: 40,000 counts per newton at gain 128.
    assert 1 / data["scale_n_per_count"] == pytest.approx(40_000, rel=1e-3)


def test_reference_without_tare_says_what_to_do(tmp_path: Path) -> None:
    result = dermaguard("calibrate", "--simulate", "--reference", "200g", state=tmp_path)
    assert result.returncode == 2
    assert "tare first" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_reports_key_value_and_rule_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pressure:\n  zones:\n    over_n: -2\n", encoding="utf-8")
    result = dermaguard("check-config", str(bad), state=tmp_path)
    assert result.returncode == 2
    assert (
        "pressure.zones.over_n: -2.0 is not allowed: must be > pressure.zones.high_n (3.0)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_shipped_example(tmp_path: Path) -> None:
    example = ROOT / "src" / "dermaguard" / "data" / "dermaguard.example.yaml"
    result = dermaguard("check-config", str(example), state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_a_bad_scenario_is_a_clear_error(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("force: [{t: 0, n: 1}, {t: 0, n: 2}]\nfoo: 1\n", encoding="utf-8")
    result = dermaguard("run", "--no-mqtt", "--simulate", str(scenario), state=tmp_path)
    assert result.returncode == 2
    assert "force[1].t: 0 is not allowed: must be after 0" in result.stderr
    assert "foo: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_a_pi_says_to_simulate(tmp_path: Path) -> None:
    result = dermaguard("run", state=tmp_path)
    assert result.returncode == 1  # the machine has no GPIO: README's exit 1, not a usage error
    assert "--simulate" in result.stderr
    assert "Traceback" not in result.stderr


def test_sterilize_then_use_completes_a_cycle_and_the_session_is_sterile(tmp_path: Path) -> None:
    result = simulate("sterilize_then_use", tmp_path, "30", timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "UV-C cycle 1 started" in out
    assert "UV-C cycle 1 completed" in out
    assert "case disinfected, UV off, roller disinfected" in out
    assert "without disinfection" not in out and "ABORTED" not in out
    assert "case disinfecting: 5:00 left" in out  # the countdown is shown


def test_s8_unsterile_use_scenario_raises_the_alarm(tmp_path: Path) -> None:
    result = simulate("unsterile_use", tmp_path, "10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ALARM use without disinfection") == 1
    assert "UV-C cycle 1" not in result.stdout


def test_lid_opened_mid_cycle_aborts_and_the_use_is_unsterile(tmp_path: Path) -> None:
    result = simulate("lid_opened_mid_cycle", tmp_path, "20")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "UV-C cycle 1 started" in out
    assert "UV-C cycle 1 ABORTED" in out and "lid_opened" in out
    assert "completed" not in out
    assert out.index("ABORTED") < out.index("ALARM use without disinfection")


def test_history_report_and_status_after_a_simulated_session(tmp_path: Path) -> None:
    run = simulate("gentle_session", tmp_path, "20")
    assert run.returncode == 0, run.stderr
    history = dermaguard("history", state=tmp_path)
    assert history.returncode == 0, history.stderr
    assert "showing the simulation's" in history.stdout
    rows = [line for line in history.stdout.splitlines() if re.match(r"1\s+\d{4}-", line)]
    assert len(rows) == 1, history.stdout
    as_json = json.loads(dermaguard("history", "--json", state=tmp_path).stdout)
    assert as_json[0]["session_no"] == 1 and as_json[0]["sterile_at_start"] is True
    assert as_json[0]["over_episodes"] == 0 and as_json[0]["contact_s"] > 20
    png = tmp_path / "s1.png"
    report = dermaguard("report", "1", "-o", str(png), state=tmp_path)
    assert report.returncode == 0, report.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    calendar = tmp_path / "cal.png"
    assert dermaguard("report", "--weeks", "4", "-o", str(calendar), state=tmp_path).returncode == 0
    assert calendar.stat().st_size > 1000
    status = dermaguard("status", state=tmp_path)
    assert status.returncode == 0 and "NOT allowed yet" in status.stdout
    assert "open (daemon stopped: last known state at " in status.stdout
    missing = dermaguard("report", "99", "-o", str(tmp_path / "x.png"), state=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def _start_daemon(scenario: Path, state: Path, speed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dermaguard",
            "run",
            "--no-mqtt",
            "--simulate",
            str(scenario),
            "--speed",
            speed,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:  # ends at EOF: a daemon that never prints it fails the test
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never printed: {''.join(seen)}")


def test_sigkill_mid_session_leaves_the_session_interrupted_on_next_start(tmp_path: Path) -> None:
    proc = _start_daemon(SCENARIOS / "over_pressure.yaml", tmp_path, "20")
    try:
        _wait_for_line(proc, "ALARM over-pressure")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    # Until then status names the session the kill cut short, never "none yet".
    status = dermaguard("status", "--simulation", state=tmp_path)
    assert status.returncode == 0, status.stderr
    last = next(line for line in status.stdout.splitlines() if line.startswith("Last session"))
    assert "#1" in last and "cut short: the daemon stopped during it" in last, status.stdout
    # The next start closes the session the kill left open, from what was stored.
    rerun = simulate("unsterile_use", tmp_path, "20")
    assert rerun.returncode == 0, rerun.stderr
    sessions = json.loads(dermaguard("history", "--json", state=tmp_path).stdout)
    by_no = {s["session_no"]: s for s in sessions}
    assert by_no[1]["status"] == "interrupted"
    assert by_no[1]["started_at"] and by_no[1]["roller_use"] == 1
    assert by_no[2]["status"] == "completed" and by_no[2]["sterile_at_start"] is False


#: ``dermaguard`` as ``python -m dermaguard`` runs it, then, once ``main`` has returned and
#: before the interpreter's exit hooks (the UV failsafe among them) run, one line on the
#: simulated UV output: its level and every level it took. The pin is picked up by reference
#: while the daemon runs, since the daemon closes its pin factory on the way out.
UV_PIN_WITNESS = textwrap.dedent(
    """
    import sys, threading, time
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory
    from dermaguard.config.load import default_config
    from dermaguard.ui.cli import main

    UV = default_config().pins.uv_led
    found = []

    def watch():
        while not found:
            factory = Device.pin_factory
            if isinstance(factory, MockFactory):
                found.extend(p for info, p in list(factory.pins.items()) if UV in info.names)
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    rc = main(sys.argv[1:])
    if found:
        levels = "".join(str(int(change.state)) for change in found[0].states)
        print(f"UV pin at return: {int(found[0].state)}, levels {levels}", flush=True)
    else:
        print("UV pin never seen", flush=True)
    sys.exit(rc)
    """
)


def test_s3_sigterm_mid_cycle_switches_the_uv_pin_off_and_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM while a UV-C cycle runs: the UV output was high and is low when the daemon's
    own stop path returns (before any exit hook), the cycle is aborted, and the exit is 0."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    scenario = SCENARIOS / "sterilize_then_use.yaml"
    args = ["run", "--no-mqtt", "--simulate", str(scenario), "--speed", "30"]
    proc = subprocess.Popen(
        [sys.executable, "-c", UV_PIN_WITNESS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        _wait_for_line(proc, "UV-C cycle 1 started")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "UV-C cycle 1 ABORTED" in out and "case aborted (daemon_stopped), UV off" in out, out
    [witness] = [line for line in out.splitlines() if line.startswith("UV pin")]
    # Low at start, high for the cycle, low again: and low before any exit hook ran.
    assert witness == "UV pin at return: 0, levels 010", witness


def test_sigterm_stops_cleanly_closing_the_session(tmp_path: Path) -> None:
    proc = _start_daemon(SCENARIOS / "over_pressure.yaml", tmp_path, "20")
    try:
        _wait_for_line(proc, "session 1 started")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "session 1 ended (shutdown)" in out
    assert "stopping" in out
    sessions = json.loads(dermaguard("history", "--json", state=tmp_path).stdout)
    assert sessions[0]["status"] == "completed" and sessions[0]["end_reason"] == "shutdown"


def test_a_stop_during_a_uv_cycle_aborts_it_and_status_never_shows_it_live(
    tmp_path: Path,
) -> None:
    scenario = SCENARIOS / "sterilize_then_use.yaml"
    proc = _start_daemon(scenario, tmp_path, "30")
    try:
        _wait_for_line(proc, "UV-C cycle 1 started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "UV-C cycle 1 ABORTED" in out and "daemon_stopped" in out
    assert "case aborted (daemon_stopped), UV off" in out
    assert out.index("case aborted") < out.index("stopping")
    assert "simulation finished" not in out
    assert re.search(r"simulation stopped after \d+ s of the 700 s scenario", out), out
    status = dermaguard("status", state=tmp_path).stdout
    assert "cut short" in status and "daemon stopped: last known state at" in status
    assert "left" not in status.splitlines()[1], status

    # A SIGKILL leaves no word behind: the file still says "running", the process is gone.
    proc = _start_daemon(scenario, tmp_path, "30")
    try:
        _wait_for_line(proc, "UV-C cycle 2 started")
        # Killed once the cycle is on disk and in the status file (both written off-thread).
        live = tmp_path / "dermaguard" / "simulation" / "status.json"
        daemon.wait_until(
            lambda: '"sterilizing"' in live.read_text() and _cycle_stored(tmp_path, 2),
            30,
            "cycle 2 to be recorded",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    status = dermaguard("status", state=tmp_path).stdout
    assert "cut short" in status and "daemon stopped: last known state" in status, status
    rerun = simulate("gentle_session", tmp_path, "20")
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(daemon.db_path(tmp_path)) as conn:
        rows = conn.execute("SELECT started_at, ended_at, reason FROM cycles").fetchall()
    assert [r[2] for r in rows[:2]] == ["daemon_stopped", "interrupted"], rows
    assert all(end >= start for start, end, _ in rows), rows


def _cycle_stored(state: Path, cycle_id: int) -> bool:
    return any(
        e["type"] == "sterilization_started" and e["data"].get("cycle_id") == cycle_id
        for e in daemon.stored_events(state)
    )


TOUCH = """
name: touch
description: out of the dock, one short touch
duration_s: 20
initial: {lid: open, dock: out}
force:
  - {t: 0, n: 0}
  - {t: 2, n: 2.0}
  - {t: 6, n: 2.0}
  - {t: 7, n: 0}
"""


def test_simulated_records_never_lie_in_the_future_and_too_soon_reads_locally(
    tmp_path: Path,
) -> None:
    scenario = daemon.write_scenario(tmp_path / "touch.yaml", TOUCH)
    first = dermaguard(
        "run", "--no-mqtt", "--simulate", str(scenario), "--speed", "10", state=tmp_path
    )
    assert first.returncode == 0, first.stderr
    second = dermaguard(
        "run", "--no-mqtt", "--simulate", str(scenario), "--speed", "10", state=tmp_path
    )
    assert second.returncode == 0, second.stderr
    after = time.time()
    events = daemon.stored_events(tmp_path)
    walls = [utc_epoch(e["ts"]) or math.inf for e in events]
    assert walls and all(w <= after for w in walls), walls
    second_start = [e["type"] for e in events].index("daemon_started", 1)
    assert min(walls[second_start:]) >= max(walls[:second_start])  # the second run comes after
    line = next(x for x in second.stdout.splitlines() if "too soon" in x)
    assert re.search(
        r"too soon: next allowed (Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} \w{3} \d\d:\d\d \(only", line
    )
