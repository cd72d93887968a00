"""``dermaguard calibrate`` as a person runs it on the emulator: a wrong weight is refused,
every change is said and recorded, and ``--undo`` goes back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from dermaguard.mqtt.outbox import OutEvent
from dermaguard.mqtt.schema_files import load_schema
from dermaguard.store import open_readonly
from support.daemon import run_cli

pytestmark = pytest.mark.subprocess


def calibrate(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("calibrate", "--simulate", *args, state=state)


def ok(*args: str, state: Path) -> str:
    result = calibrate(*args, state=state)
    assert result.returncode == 0, result.stderr
    return result.stdout


def scale(path: Path) -> float:
    return float(json.loads(path.read_text("utf-8"))["scale_n_per_count"])


def test_a_second_reference_with_nothing_on_the_roller_is_refused(tmp_path: Path) -> None:
    sim = tmp_path / "dermaguard" / "simulation"
    ok("--tare", state=tmp_path)
    ok("--reference", "200g", "--sim-load", "200g", state=tmp_path)
    good = (sim / "calibration.json").read_bytes()

    result = calibrate("--reference", "200g", state=tmp_path)  # the weight is not on it

    assert result.returncode == 2
    assert "refused" in result.stderr and "rests on the roller" in result.stderr
    assert "Traceback" not in result.stderr
    assert (sim / "calibration.json").read_bytes() == good


def test_a_change_is_said_recorded_and_undone(tmp_path: Path) -> None:
    sim = tmp_path / "dermaguard" / "simulation"
    path = sim / "calibration.json"
    ok("--tare", state=tmp_path)
    ok("--reference", "200g", "--sim-load", "200g", state=tmp_path)
    first = scale(path)
    # A weight 2 % heavier than its label: within the tolerance, so the line moves, and says so.
    out = ok("--reference", "500g", "--sim-load", "510g", state=tmp_path)
    assert "scale changed by" in out and "over-pressure alarm (4.50 N)" in out
    second = scale(path)
    assert second != first

    out = ok("--undo", state=tmp_path)
    assert "restored the previous calibration" in out
    assert scale(path) == first
    ok("--undo", state=tmp_path)
    assert scale(path) == second

    with open_readonly(sim / "dermaguard.db") as reader:
        rows = [r for r in reader.events() if r["type"] == "calibration_changed"]
    changes = [
        (
            r["data"]["reason"],
            r["data"]["old_scale_n_per_count"],
            r["data"]["new_scale_n_per_count"],
        )
        for r in rows
    ]
    assert changes == [
        ("tare", None, 0.0),
        ("reference", None, first),
        ("reference", first, second),
        ("undo", second, first),
        ("undo", first, second),
    ]
    # Waiting in the outbox, each as a valid MQTT event for the daemon to publish.
    schema = Draft202012Validator(load_schema("event"))
    for row in rows:
        assert not row["delivered"]
        schema.validate(json.loads(OutEvent.from_row(row).payload))


def test_undo_with_nothing_to_restore_says_so(tmp_path: Path) -> None:
    result = calibrate("--undo", state=tmp_path)
    assert result.returncode == 2
    assert "no previous calibration" in result.stderr
