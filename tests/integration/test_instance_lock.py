"""One process per state directory: a second daemon, ``calibrate`` and ``check-hardware`` are
refused while a daemon runs there, naming it, and the lock dies with the daemon (SIGKILL too).

Real processes through the real CLI: the lock is the kernel's, so only separate processes can
show it holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dermaguard.daemon.instance_lock import EXIT_IN_USE, NOTE_NAME
from support import daemon
from support.daemon import run_cli

pytestmark = pytest.mark.subprocess


def _running_daemon(state: Path, tmp_path: Path) -> daemon.subprocess.Popen[str]:
    """A simulated daemon, MQTT off, once its start is in the history (it holds the lock)."""
    scenario = daemon.pushes_scenario(tmp_path / "long.yaml", duration=600)
    proc = daemon.start(state, scenario, port=None, speed=1.0)
    daemon.wait_until(
        lambda: (
            proc.poll() is not None
            or any(e["type"] == "daemon_started" for e in daemon.stored_events(state))
        ),
        60.0,
        "the first daemon's start in the history",
    )
    assert proc.poll() is None, proc.communicate()
    return proc


def _starts(state: Path) -> int:
    return sum(1 for e in daemon.stored_events(state) if e["type"] == "daemon_started")


def test_a_second_daemon_calibrate_and_check_hardware_are_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = _running_daemon(state, tmp_path)
    try:
        second = daemon.start(state, tmp_path / "long.yaml", port=None, speed=1.0)
        code, out, err = daemon.finish(second, timeout=60)
        assert code == EXIT_IN_USE, err
        sim_dir = daemon.db_path(state).parent
        assert f"{sim_dir} is in use by another dermaguard process: pid {first.pid} (" in err
        assert "dermaguard run --simulate" in err  # the holder's command line
        assert "stop the other daemon first" in err
        assert "Traceback" not in err
        assert "sterilization" not in out and "calibrated" not in out  # it touched nothing

        tare = run_cli("calibrate", "--simulate", "--tare", state=state)
        assert tare.returncode == EXIT_IN_USE, tare.stderr
        assert f"pid {first.pid}" in tare.stderr and "cmd/tare" in tare.stderr
        assert "tare stored" not in tare.stdout

        check = run_cli("check-hardware", "--simulate", "--seconds", "0.5", state=state)
        assert check.returncode == EXIT_IN_USE, check.stderr
        assert f"pid {first.pid}" in check.stderr

        assert first.poll() is None  # the first daemon runs on, untouched
        assert _starts(state) == 1
    finally:
        code, _, err = daemon.stop(first)
    assert code == 0, err
    assert not (daemon.db_path(state).parent / NOTE_NAME).exists()
    # Stopped cleanly: the directory is free again.
    tare = run_cli("calibrate", "--simulate", "--tare", state=state)
    assert tare.returncode == 0, tare.stderr


def test_the_lock_dies_with_a_killed_daemon(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _running_daemon(state, tmp_path)
    daemon.kill(first)  # SIGKILL: no clean-up of any kind
    assert not Path(f"/proc/{first.pid}").exists()
    # The stale note names a dead process; it never keeps anyone out.
    assert (daemon.db_path(state).parent / NOTE_NAME).read_text().split()[0] == str(first.pid)
    check = run_cli("check-hardware", "--simulate", "--seconds", "0.5", state=state)
    assert check.returncode == 0, check.stdout + check.stderr
