"""The status file is only as live as the daemon that wrote it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dermaguard.daemon.status_file import process_identity, read_status


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
