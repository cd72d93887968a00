"""A calibration whose scale is not positive is never made nor used, through the CLI and the
daemon on the emulated load cell (docs/CARE.md, "Calibration checks")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.daemon import run_cli, write_scenario

pytestmark = pytest.mark.subprocess

#: Two pushes over the 4.5 N limit on an emulated roller (no UV-C cycle first: the
#: unsterile-use alarm comes too, which this test does not look at).
PUSHES = """
name: two_pushes
description: 5.2 N and 6 N, each held for a second.
duration_s: 8
force:
  - {t: 0, n: 0}
  - {t: 1, n: 0}
  - {t: 1.5, n: 5.2}
  - {t: 2.5, n: 5.2}
  - {t: 3, n: 0}
  - {t: 4, n: 0}
  - {t: 4.5, n: 6.0}
  - {t: 5.5, n: 6.0}
  - {t: 6, n: 0}
  - {t: 8, n: 0}
"""


def test_a_reference_that_reads_lighter_than_the_tare_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dermaguard" / "simulation" / "calibration.json"
    tared = run_cli("calibrate", "--simulate", "--tare", "--sim-load", "200g", state=tmp_path)
    assert tared.returncode == 0, tared.stderr
    before = path.read_bytes()

    # Nothing on the roller now: the "reference" reads 200 g lighter than the tare.
    result = run_cli("calibrate", "--simulate", "--reference", "200g", state=tmp_path)

    assert result.returncode == 2, result.stdout
    assert "refused" in result.stderr and "lower than at the tare" in result.stderr
    assert "calibrate --tare" in result.stderr and "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert json.loads(before)["scale_n_per_count"] == 0.0  # still a bare tare


def write_negative_scale(tmp_path: Path) -> Path:
    """The calibration an unchecked reference made: a tare under 200 g, then nothing on it."""
    sim = tmp_path / "dermaguard" / "simulation"
    sim.mkdir(parents=True)
    zero = 80_000 + 0.2 * 9.80665 * 40_000
    bad = {
        "version": 1,
        "offset": zero,
        "scale_n_per_count": -25.0001e-6,
        "gain": 128,
        "created": "2026-12-01T00:00:00+00:00",
        "points": [{"raw": zero, "force_n": 0.0}, {"raw": 80_000.0, "force_n": 1.961}],
    }
    path = sim / "calibration.json"
    path.write_text(json.dumps(bad), "utf-8")
    return path


def test_a_stored_negative_scale_is_refused_by_calibrate(tmp_path: Path) -> None:
    write_negative_scale(tmp_path)
    reference = run_cli("calibrate", "--simulate", "--reference", "200g", state=tmp_path)
    assert reference.returncode == 2
    assert "must be more than 0" in reference.stderr and "Traceback" not in reference.stderr


def test_a_stored_negative_scale_is_not_used_and_the_pushes_alarm(tmp_path: Path) -> None:
    path = write_negative_scale(tmp_path)
    scenario = write_scenario(tmp_path / "pushes.yaml", PUSHES)
    run = run_cli("run", "--no-mqtt", "--simulate", str(scenario), "--speed", "10", state=tmp_path)
    assert run.returncode == 0, run.stderr
    # The bad file is not used: the simulation calibrates its cell again, and both pushes alarm.
    assert "calibrated the emulated load cell" in run.stdout
    assert run.stdout.count("ALARM over-pressure") == 2, run.stdout
    assert json.loads(path.read_text("utf-8"))["scale_n_per_count"] > 0
