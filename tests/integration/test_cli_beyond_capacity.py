"""The shipped beyond-capacity scenario through the CLI: pressing past the load cell's range
keeps the over-pressure alarm on (a fault beside it), never downgrades it to a fault (S7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import daemon

SCENARIO = daemon.SCENARIOS / "beyond_capacity.yaml"

pytestmark = pytest.mark.subprocess


def test_s7_sixty_newtons_held_past_the_cells_capacity_keeps_the_over_pressure_alarm(
    tmp_path: Path,
) -> None:
    result = daemon.run_cli(
        "run",
        "--no-mqtt",
        "--simulate",
        str(SCENARIO),
        "--speed",
        "10",
        state=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    def at(line: str) -> float:
        return float(line.split("]", maxsplit=1)[0].strip("[ s"))

    alarms = [at(line) for line in lines if "ALARM over-pressure" in line]
    cleared = [at(line) for line in lines if "alarm cleared: over-pressure" in line]
    faults = [line for line in lines if "FAULT force sensor: beyond_capacity" in line]
    # One alarm per push (60 N from 2.5 s to 6.5 s, 250 N from 9.5 s to 11.5 s), each cleared
    # only once the force drops on release (at 7 s and 12 s), never while the cell is pinned.
    assert len(alarms) == 2 and len(cleared) == 2, result.stdout
    assert alarms[0] < 2.5 and 6.5 < cleared[0] < 7.5, result.stdout
    assert 7.5 < alarms[1] < 9.5 and 11.5 < cleared[1] < 12.5, result.stdout
    # The fault stands beside the alarm, saying the force is at least the capacity.
    assert faults and all(alarms[0] < at(f) for f in faults), result.stdout
    assert "at least 50 N" in faults[0] and "force unknown" not in faults[0]
