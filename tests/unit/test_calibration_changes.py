"""A calibration is never moved silently: a disagreeing weight is refused, every change keeps
the calibration it replaced (``--undo``), and says what it does to the over-pressure alarm."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermaguard.config.calibration_file import (
    CalibrationFileError,
    backup_path,
    in_effect,
    load_calibration,
    restore_previous,
)
from dermaguard.config.load import parse_config
from dermaguard.core.calibration import (
    REFERENCE_TOLERANCE,
    Calibration,
    CalibrationPoint,
    parse_reference,
)
from dermaguard.daemon.calibrate import (
    CalibrateError,
    add_reference,
    change_event,
    check_reference,
    describe_change,
    record_change,
    tare,
)
from dermaguard.store.reader import open_readonly

ZERO = 80_000
COUNTS_PER_N = 40_000.0  # the emulator's load cell at gain 128
CAPACITY_N = 50.0  # load_cell.capacity_n by default


class Roller:
    """A load cell read through its raw codes: ``load_n`` is what rests on it."""

    def __init__(self) -> None:
        self.load_n = 0.0

    def read(self) -> int:
        return round(ZERO + self.load_n * COUNTS_PER_N)


def line(scale: float) -> Calibration:
    """A finished calibration through zero and one weight at ``scale`` N per count."""
    points = (CalibrationPoint(0.0, 0.0), CalibrationPoint(COUNTS_PER_N, COUNTS_PER_N * scale))
    return Calibration(0.0, scale, points=points)


def calibrated(path: Path, roller: Roller) -> Calibration:
    """A good calibration: tare with nothing on the roller, then 200 g on it."""
    roller.load_n = 0.0
    tare(path, roller.read, 8, 128)
    roller.load_n = parse_reference("200g")
    cal = add_reference(path, roller.read, "200g", 8, capacity_n=CAPACITY_N)
    roller.load_n = 0.0
    return cal


def test_a_second_reference_with_nothing_on_the_roller_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller()
    good = calibrated(path, roller)
    before = path.read_bytes()
    with pytest.raises(CalibrateError) as refused:
        # The weight is not on the roller.
        add_reference(path, roller.read, "200g", 8, capacity_n=CAPACITY_N)
    message = str(refused.value)
    assert "refused" in message and "reads 0.000 N" in message
    assert "rests on the roller" in message and "calibrate --tare" in message
    assert path.read_bytes() == before
    assert load_calibration(path) == good


def test_a_reference_that_agrees_with_the_line_refines_it(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller()
    calibrated(path, roller)
    roller.load_n = parse_reference("500g")
    cal = add_reference(path, roller.read, "500g", 8, capacity_n=CAPACITY_N)
    assert [p.force_n for p in cal.points] == pytest.approx([0.0, 1.96133, 4.903325])
    assert cal.force(ZERO + 4.5 * COUNTS_PER_N) == pytest.approx(4.5, rel=1e-4)


@pytest.mark.parametrize(("error", "refused"), [(0.9, False), (1.1, True)])
def test_the_tolerance_is_the_stated_fraction_of_the_weight(error: float, refused: bool) -> None:
    cal = line(1 / COUNTS_PER_N)
    force = 10.0
    raw = force * (1 + error * REFERENCE_TOLERANCE) * COUNTS_PER_N
    if refused:
        with pytest.raises(CalibrateError, match="refused"):
            check_reference(cal, raw, force, "10N")
    else:
        check_reference(cal, raw, force, "10N")


def test_a_tare_starts_a_new_calibration_whose_first_weight_is_not_checked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller()
    calibrated(path, roller)
    # A different load cell now: twice as sensitive. The tare starts again, so its first
    # weight is taken as it is, and the old calibration stays kept.
    roller.load_n = 0.0
    tare(path, roller.read, 8, 128)
    roller.load_n = 2 * parse_reference("200g")
    cal = add_reference(path, roller.read, "200g", 8, capacity_n=CAPACITY_N)
    assert cal.scale_n_per_count == pytest.approx(0.5 / COUNTS_PER_N, rel=1e-4)
    kept = load_calibration(backup_path(path))
    assert kept.scale_n_per_count == pytest.approx(1 / COUNTS_PER_N, rel=1e-4)


def test_undo_restores_the_replaced_calibration_and_undo_again_goes_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller()
    first = calibrated(path, roller)
    roller.load_n = parse_reference("510g")  # a heavier weight than its label: accepted, 2 %
    second = add_reference(path, roller.read, "500g", 8, capacity_n=CAPACITY_N)
    assert second.scale_n_per_count != first.scale_n_per_count
    restored, replaced = restore_previous(path)
    assert restored == first and replaced == second
    assert load_calibration(path) == first
    restored, replaced = restore_previous(path)
    assert restored == second and replaced == first
    assert load_calibration(path) == second


def test_a_bare_tare_does_not_push_the_usable_calibration_out_of_the_backup(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller()
    good = calibrated(path, roller)
    tare(path, roller.read, 8, 128)
    tare(path, roller.read, 8, 128)  # twice: the second replaces a tare-only file
    assert load_calibration(backup_path(path)) == good
    assert in_effect(path) == good


def test_undo_without_a_previous_calibration_says_so(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    with pytest.raises(CalibrationFileError, match="no previous calibration"):
        restore_previous(path)


def test_a_moved_scale_is_said_in_terms_of_the_alarm() -> None:
    old, halved = line(1 / COUNTS_PER_N), line(0.5 / COUNTS_PER_N)
    text = describe_change(old, halved, 4.5)
    assert text is not None
    assert "-50.00 %" in text and "read as 9.00 N" in text and "--undo" in text
    assert describe_change(old, old, 4.5) is None
    event = change_event("reference", old, halved, 1.0)
    assert event.type == "calibration_changed"
    assert event.data["old_scale_n_per_count"] == old.scale_n_per_count
    assert event.data["new_scale_n_per_count"] == halved.scale_n_per_count


def test_a_change_is_recorded_in_the_history_for_the_daemon_to_publish(tmp_path: Path) -> None:
    config = parse_config({"state_dir": str(tmp_path)})
    record_change(config, "reference", line(5e-5), line(4e-5), simulated=False)
    with open_readonly(tmp_path / "dermaguard.db") as history:
        events = history.events()
    assert [
        (e["type"], e["data"]["reason"], e["data"]["new_scale_n_per_count"]) for e in events
    ] == [("calibration_changed", "reference", 4e-5)]
    assert not events[0]["delivered"]  # waiting in the outbox for the daemon


def test_a_history_that_cannot_be_written_is_named_in_the_error(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the state directory should be\n", encoding="utf-8")
    config = parse_config({"state_dir": str(blocked)})
    with pytest.raises(
        CalibrateError, match=r"could not be recorded in the history .*not-a-directory"
    ):
        record_change(config, "tare", None, line(5e-5), simulated=False)


def test_a_simulated_change_goes_into_the_simulations_history_not_the_devices(
    tmp_path: Path,
) -> None:
    config = parse_config({"state_dir": str(tmp_path)})
    record_change(config, "tare", None, line(5e-5), simulated=True)
    assert not (tmp_path / "dermaguard.db").exists()
    with open_readonly(tmp_path / "simulation" / "dermaguard.db") as history:
        assert [e["type"] for e in history.events()] == ["calibration_changed"]
