"""``run --simulate --system-clock``: the simulated device keeps the device's clock handling.

The system test's VM runs the daemon on emulated hardware; with a calendar of its own a
simulation is synchronised by definition, and the records it makes before NTP could never be
wrong, nor dated again. On the system's calendar it asks the system, as on a Pi. The probe of
the system's time service is the edge replaced here (a VM's flag file is the system test's).
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from dermaguard.config.load import parse_config
from dermaguard.daemon import run as run_module
from dermaguard.daemon.app import steady_scenario


def test_a_simulation_on_the_system_clock_dates_its_early_records_again_once_synchronised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    synced = threading.Event()
    asked: list[bool] = []

    def time_service() -> bool:
        asked.append(synced.is_set())
        return synced.is_set()

    monkeypatch.setattr(run_module, "clock_synchronised", time_service)
    config = parse_config({"mqtt": {"enabled": False}})
    scenario = dataclasses.replace(steady_scenario("system clock", 1.0), duration_s=8.0)
    threading.Timer(2.0, synced.set).start()  # NTP answers 2 s after the start
    started = time.time()
    code = run_module.run_daemon(config, scenario, 1.0, io.StringIO(), system_clock=True)
    ended = time.time()
    assert code == 0
    assert asked[0] is False and asked[-1] is True  # the system was asked, before and after
    [db] = tmp_path.rglob("dermaguard.db")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT seq, type, wall, clock_synced, data FROM events ORDER BY seq"
        ).fetchall()
    syncs = [(seq, data) for seq, kind, _w, _c, data in rows if kind == "clock_sync"]
    assert [json.loads(d)["synced"] for _s, d in syncs] == [False, True]
    synced_at = syncs[1][0]
    before = [r for r in rows if r[0] < synced_at]
    assert [k for _s, k, *_ in before][:2] == ["daemon_started", "clock_sync"]
    # Every record made before the sync is dated again by the synchronised clock and says so.
    assert all(c == 1 for _s, _k, _w, c, _d in rows), rows
    assert all(started - 1 <= w <= ended + 1 for _s, _k, w, _c, _d in rows)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--system-clock"],
        ["run", "--simulate", "scenarios/over_pressure.yaml", "--speed", "10", "--system-clock"],
    ],
)
def test_the_system_clock_is_refused_where_it_cannot_hold(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accelerated, a simulation cannot keep the system's calendar; without a simulation, the
    daemon is on the system's clock anyway. Refused before anything starts, saying why."""
    from dermaguard.ui.cli import main

    config = tmp_path / "dermaguard.yaml"
    config.write_text("mqtt: {enabled: false}\n", encoding="utf-8")
    assert main([*argv, "--config", str(config)]) == 2
    assert "--system-clock runs a simulation in real time" in capsys.readouterr().err
