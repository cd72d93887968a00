"""The daemon starts without its history: a full disk, a read-only disk, a corrupt database.

Through the real CLI in a child process, as systemd starts it. The disk faults are real: the
state directory is a small tmpfs, filled to the last byte or remounted read-only (as
tests/faults/test_disk_sensor_lid_clock.py makes a full disk). The daemon must start, sound the
over-pressure alarm, say that the history is unavailable (status file, ``dermaguard status``),
and write everything it held once the disk is repaired, numbering on from the old history.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dermaguard.daemon.status_file import STATUS_NAME, read_status
from support import daemon
from support.broker import Broker, Recorder
from support.daemon import run_cli

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a status the broken disk refuses goes (the service's RuntimeDirectory), for the
    daemon, ``dermaguard status`` and this test alike (child processes inherit it)."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    return run


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs under tmp_path; skipped where mounting is not allowed (not root, or no
    CAP_SYS_ADMIN in a container), as the tmpfs case of the mid-run disk test is."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("a size-limited tmpfs needs root and mount(8)")
    point = tmp_path / "small-fs"
    point.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        if subprocess.run([umount, str(point)], timeout=10, check=False).returncode != 0:
            subprocess.run([umount, "-l", str(point)], timeout=10, check=False)


class BrokenDisk:
    """``full``: a filler file takes every byte; ``read-only``: the tmpfs is remounted ro."""

    def __init__(self, point: Path, kind: str) -> None:
        self.point = point
        self.kind = kind
        self.filler = point / "filler"

    def breaks(self) -> None:
        if self.kind == "read-only":
            self._remount("ro")
            return
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 4096, 512, 1):
                block = b"\0" * size
                while True:
                    try:
                        if os.write(fd, block) < size:
                            break
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def repair(self) -> None:
        if self.kind == "read-only":
            self._remount("rw")
        else:
            self.filler.unlink()

    def _remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.point)], check=True, timeout=10)


def _status(state: Path) -> dict[str, Any]:
    return read_status(daemon.db_path(state).parent / STATUS_NAME) or {}


def _prepare(state: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """One earlier run: the simulation's calibration and a history with a session in it."""
    scenario = daemon.pushes_scenario(tmp_path / "before.yaml", duration=20)
    code, _, err = daemon.finish(daemon.start(state, scenario, port=None, speed=10.0))
    assert code == 0, err
    events = daemon.stored_events(state)
    assert any(e["type"] == "session_started" for e in events)
    return events


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_the_daemon_starts_on_a_broken_disk_alarms_says_so_and_recovers_its_history(
    kind: str, small_fs: Path, tmp_path: Path
) -> None:
    state = small_fs
    before = _prepare(state, tmp_path)
    last_session = max(e["data"]["session_no"] for e in before if e["type"] == "session_started")
    disk = BrokenDisk(small_fs, kind)
    disk.breaks()
    scenario = daemon.pushes_scenario(tmp_path / "long.yaml", duration=600)
    proc = daemon.start(state, scenario, port=None, speed=1.0)
    try:
        # It runs, and a push over the limit sounds the alarm, with no history at all.
        daemon.wait_until(
            lambda: proc.poll() is not None or _status(state).get("alarm") == "over_pressure",
            90.0,
            "the over-pressure alarm of a daemon started on a broken disk",
        )
        assert proc.poll() is None, proc.communicate()
        status = _status(state)
        assert status["running"] is True
        assert status["history"] == "unavailable"
        assert status["history_problem"]
        shown = run_cli("status", "--simulation", state=state)
        assert "History:       UNAVAILABLE (" in shown.stdout, shown.stdout + shown.stderr
        assert "the alarm and the UV-C interlocks work" in shown.stdout
        assert daemon.stored_events(state) == before  # nothing of this run is on the disk yet

        disk.repair()
        # Space returns: the daemon opens the history by itself and writes what it held.
        daemon.wait_until(
            lambda: (
                _status(state).get("history") == "available"
                and any(
                    e["type"] == "over_pressure" and e["seq"] > before[-1]["seq"]
                    for e in daemon.stored_events(state)
                )
            ),
            120.0,
            "the history to be opened and the held events written",
        )
    finally:
        code, out, err = daemon.stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert "ALARM over-pressure" in out
    events = daemon.stored_events(state)
    assert events[: len(before)] == before  # the old history untouched
    new = events[len(before) :]
    types = [e["type"] for e in new]
    assert types[0] == "daemon_started"
    assert {"session_started", "over_pressure", "session_ended"} <= set(types)
    assert types[-1] == "daemon_stopping"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Numbering went on from the history read while the disk was broken: no clash.
    [started] = [e for e in new if e["type"] == "session_started"]
    assert started["data"]["session_no"] == last_session + 1
    assert _status(state)["running"] is False


def test_a_corrupt_history_is_kept_aside_and_a_new_one_started(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _prepare(state, tmp_path)
    db = daemon.db_path(state)
    garbage = b"not a database, whatever it once was\n" * 300
    db.write_bytes(garbage)
    for side in ("-wal", "-shm"):
        db.with_name(db.name + side).unlink(missing_ok=True)

    scenario = daemon.pushes_scenario(tmp_path / "after.yaml", duration=20)
    code, out, err = daemon.finish(daemon.start(state, scenario, port=None, speed=10.0))
    assert code == 0, err
    [aside] = db.parent.glob("dermaguard.db.corrupt-*")
    assert aside.read_bytes() == garbage  # kept as it was, never deleted
    assert f"the corrupt history database is kept as {aside}" in err
    assert "ALARM over-pressure" in out
    types = [e["type"] for e in daemon.stored_events(state)]
    assert types[0] == "daemon_started" and "over_pressure" in types
    assert _status(state)["history_set_aside"] == str(aside)


@pytest.mark.broker
def test_with_mqtt_the_state_says_the_history_is_unavailable_and_its_events_go_out_later(
    small_fs: Path, tmp_path: Path, broker: Broker
) -> None:
    """No history at all (the file is gone and the full disk cannot make one): the publisher
    keeps running, the retained state says why, and once space returns every event of the run
    is published from the new history, once and in order."""
    state = small_fs
    _prepare(state, tmp_path)
    db = daemon.db_path(state)
    for name in (db.name, db.name + "-wal", db.name + "-shm"):
        db.with_name(name).unlink(missing_ok=True)
    disk = BrokenDisk(small_fs, "full")
    disk.breaks()
    base = f"dermaguard/{daemon.DEVICE}"
    scenario = daemon.pushes_scenario(tmp_path / "long.yaml", duration=600)
    with Recorder(broker, [f"{base}/#"]) as rec:
        proc = daemon.start(state, scenario, port=broker.port, speed=1.0)
        try:

            def states() -> list[dict[str, Any]]:
                return [m.json() for m in rec.messages(f"{base}/state")]

            rec.wait_for(
                lambda _m: any(
                    s["history"] == "unavailable" and s["alarm"] == "over_pressure"
                    for s in states()
                ),
                timeout=90,
            )
            assert proc.poll() is None
            down = next(s for s in states() if s["history"] == "unavailable")
            assert "cannot" in down["history_problem"]
            assert not rec.messages(f"{base}/event")  # nothing stored, so nothing published

            disk.repair()
            rec.wait_for(
                lambda m: (
                    any(
                        x.topic == f"{base}/event" and x.json()["type"] == "over_pressure"
                        for x in m
                    )
                    and states()[-1]["history"] == "available"
                ),
                timeout=120,
            )
        finally:
            code, _, err = daemon.stop(proc)
        assert code == 0, err
        stored = daemon.stored_events(state)
        rec.wait_for(
            lambda m: len({x.json()["id"] for x in m if x.topic == f"{base}/event"}) >= len(stored)
        )
        seen: dict[str, dict[str, Any]] = {}
        for body in rec.json(f"{base}/event"):
            seen.setdefault(body["id"], body)
        assert [e["id"] for e in seen.values()] == [e["id"] for e in stored]
        assert stored[0]["type"] == "daemon_started"
        daemon.assert_valid_payloads(rec.messages())
