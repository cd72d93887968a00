"""The status file is only as live as the daemon that wrote it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermaguard.daemon.status_file import (
    STATUS_NAME,
    StatusFile,
    fallback_path,
    process_identity,
    read_status,
)
from support.waiting import wait_until


def _write(path: Path, **state: object) -> Path:
    path.write_text(json.dumps({"case_state": "sterilizing", "running": True, **state}))
    return path


def test_a_live_writer_reads_as_running(tmp_path: Path) -> None:
    status = read_status(_write(tmp_path / "s.json", **process_identity()))
    assert status is not None and status["running"] is True


def test_a_killed_writer_reads_as_stopped(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    status = read_status(_write(tmp_path / "s.json", pid=child.pid, pid_start=None))
    assert status is not None and status["running"] is False


def test_a_reused_pid_reads_as_stopped(tmp_path: Path) -> None:
    identity = process_identity()
    assert isinstance(identity["pid_start"], int)
    path = _write(tmp_path / "s.json", pid=os.getpid(), pid_start=identity["pid_start"] + 1)
    status = read_status(path)
    assert status is not None and status["running"] is False


def test_a_file_without_a_pid_cannot_claim_to_be_live(tmp_path: Path) -> None:
    status = read_status(_write(tmp_path / "s.json"))
    assert status is not None and status["running"] is False


def test_a_disk_that_refuses_the_status_sends_it_to_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history's disk refusing the status file (full, read-only) must not hide that the
    history is unavailable: the status goes to the runtime directory and is read from there."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be: nothing can go in it")
    path = blocked / STATUS_NAME
    status = StatusFile(path, lambda: 1_790_000_000.0)
    problem = "storage full: no space left on device"
    status.set_history(problem)
    assert wait_until(lambda: (read_status(path) or {}).get("history") == "unavailable")
    live = read_status(path)
    assert live is not None and live["running"] is True and live["history_problem"] == problem
    assert fallback_path(path).parent == run and fallback_path(path).exists()
    assert "history unavailable" in status.summary()
    status.close()
    final = read_status(path)
    assert final is not None and final["running"] is False
