"""The shipped reversed-cell scenario through the CLI: a press read the wrong way round is a
sensor fault that says what to check, never silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "reversed_cell.yaml"

pytestmark = pytest.mark.subprocess


def test_a_reversed_cell_held_at_minus_6_n_prints_a_fault_saying_what_to_check(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("STATE_DIRECTORY", None)
    command = ["run", "--no-mqtt", "--simulate", str(SCENARIO), "--speed", "10"]
    result = subprocess.run(
        [sys.executable, "-m", "dermaguard", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    def at(line: str) -> float:
        return float(line.split("]", maxsplit=1)[0].strip("[ s"))

    faults = [line for line in lines if "FAULT force sensor: negative_force" in line]
    assert len(faults) == 2, result.stdout  # one per press
    assert "wrong way round" in faults[0] and "tare" in faults[0]
    # The first press passes -0.5 N at about t = 2.04 s: the fault follows within 10 samples
    # (0.125 s at 80 samples/s) plus one sample of the emulator's timing.
    assert 2.04 <= at(faults[0]) <= 2.04 + 11 / 80
    # Nothing claims a zone while the roller is pressed (2.04 s to 8.96 s on the scenario).
    zones = [line for line in lines if "] zone " in line]
    assert not [z for z in zones if 2.0 < at(z) < 8.9], zones
    assert sum("force sensor recovered" in line for line in lines) == 2
