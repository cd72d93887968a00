"""A calibration's scale is positive and plausible for the load cell, however it is made.

A reference weight must read heavier than the tare by at least 20 times the measured noise, and
give a scale that a cell of the configured capacity can have (docs/CARE.md, "Calibration
checks"); a stored scale that is not positive is refused at load.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.config.calibration_file import (
    CalibrationFileError,
    load_calibration,
    save_calibration,
)
from dermaguard.config.params import default_engine_params
from dermaguard.core.calibration import (
    Calibration,
    CalibrationError,
    CalibrationPoint,
    counts_per_newton,
    plausible_scale,
    with_checked_reference,
    with_tare,
)
from dermaguard.core.engine import Engine
from dermaguard.core.events import Command, EmitEvent, ForceRead, SaveCalibration
from dermaguard.core.filters import Median
from dermaguard.daemon.calibrate import CalibrateError, add_reference, interactive, tare

CAPACITY_N = 50.0  # load_cell.capacity_n by default
EMULATOR_COUNTS_PER_N = 40_000.0  # the emulated cell at gain 128 (sim/hx711_chip.py)


def tared(zero: float, gain: int = 128) -> Calibration:
    return with_tare(None, zero, gain, "t0")


def test_the_bom_cell_and_the_emulator_lie_inside_the_plausible_range() -> None:
    allowed = plausible_scale(CAPACITY_N, 128)
    tal220b = 1.0 / counts_per_newton(1.0, 5 * 9.80665, 128)  # 5 kg, 1.0 mV/V
    assert tal220b in allowed and 1.0 / EMULATOR_COUNTS_PER_N in allowed
    assert allowed.low == pytest.approx(7.76e-6, rel=1e-3)
    assert allowed.high == pytest.approx(46.57e-6, rel=1e-3)


def test_a_reference_lighter_than_the_tare_is_refused_saying_what_to_check() -> None:
    # The tare taken with 200 g on the roller, the "reference" with nothing on it.
    load = 0.2 * 9.80665 * EMULATOR_COUNTS_PER_N
    with pytest.raises(CalibrationError) as refused:
        with_checked_reference(
            tared(80_000 + load),
            80_000,
            0.0,
            1.96,
            weight="200g",
            capacity_n=CAPACITY_N,
            created="t1",
        )
    message = str(refused.value)
    assert "lower than at the tare" in message and "calibrate --tare" in message
    assert "wrong way round" in message and "Nothing was changed" in message


@settings(max_examples=300, deadline=None)
@given(
    zero=st.floats(-4e6, 4e6),
    step=st.floats(-3e6, 3e6),
    noise=st.floats(0.0, 5_000.0),
    force_n=st.floats(0.05, 40.0),
    gain=st.sampled_from([128, 64, 32]),
    capacity_n=st.floats(5.0, 2000.0),
)
def test_every_accepted_reference_gives_a_positive_plausible_scale_above_the_noise(  # noqa: PLR0917
    zero: float, step: float, noise: float, force_n: float, gain: int, capacity_n: float
) -> None:
    try:
        cal = with_checked_reference(
            tared(zero, gain),
            zero + step,
            noise,
            force_n,
            weight="w",
            capacity_n=capacity_n,
            created="t1",
        )
    except CalibrationError as exc:
        assert "refused" in str(exc) and "Nothing was changed" in str(exc)
        return
    assert step >= 20 * max(noise, 1.0)
    assert cal.scale_n_per_count > 0
    assert cal.scale_n_per_count in plausible_scale(capacity_n, gain)


@settings(max_examples=200, deadline=None)
@given(
    rated=st.floats(0.501, 2.999),  # inside the bounds, clear of rounding at them
    force_n=st.floats(0.5, 20.0),
    gain=st.sampled_from([128, 64, 32]),
)
def test_a_good_weight_on_a_cell_of_any_supported_rating_is_accepted(
    rated: float, force_n: float, gain: int
) -> None:
    per_n = counts_per_newton(rated, CAPACITY_N, gain)
    cal = with_checked_reference(
        tared(80_000.0, gain),
        80_000.0 + force_n * per_n,
        30.0,
        force_n,
        weight="w",
        capacity_n=CAPACITY_N,
        created="t1",
    )
    assert cal.scale_n_per_count == pytest.approx(1.0 / per_n)


class Roller:
    """The emulated load cell's codes with ``load_n`` on it."""

    def __init__(self, load_n: float) -> None:
        self.load_n = load_n

    def read(self) -> int:
        return round(80_000 + self.load_n * EMULATOR_COUNTS_PER_N)


def test_a_reference_with_nothing_on_after_a_tare_under_load_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller(0.2 * 9.80665)
    tare(path, roller.read, 8, 128)
    before = path.read_bytes()
    roller.load_n = 0.0
    with pytest.raises(CalibrateError, match="lower than at the tare"):
        add_reference(path, roller.read, "200g", 8, capacity_n=CAPACITY_N)
    assert path.read_bytes() == before


def test_a_weight_in_the_wrong_unit_gives_an_implausible_scale_and_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller(0.0)
    tare(path, roller.read, 8, 128)
    before = path.read_bytes()
    roller.load_n = 0.2 * 9.80665  # 200 g on the roller, typed as 200 kg
    with pytest.raises(CalibrateError, match=r"outside the .* µN/count") as refused:
        add_reference(path, roller.read, "200kg", 8, capacity_n=CAPACITY_N)
    assert "200g, not 200kg" in str(refused.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("scale", [-25e-6, 0.0, math.nan])
def test_a_stored_calibration_without_a_positive_scale_is_refused_at_load(
    tmp_path: Path, scale: float
) -> None:
    path = tmp_path / "calibration.json"
    points = (CalibrationPoint(80_000.0, 0.0), CalibrationPoint(1_000.0, 1.96))
    save_calibration(path, Calibration(80_000.0, scale, points=points))
    with pytest.raises(CalibrationFileError) as refused:
        load_calibration(path)
    message = str(refused.value)
    assert str(path) in message and "must be more than 0" in message
    assert "dermaguard calibrate" in message


def test_a_bare_tare_keeps_its_zero_scale_meaning_no_scale_yet(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    save_calibration(path, tared(80_000.0))
    cal = load_calibration(path)
    assert cal.scale_n_per_count == 0.0 and not cal.is_complete
    assert json.loads(path.read_text("utf-8"))["points"] == [{"raw": 80_000.0, "force_n": 0.0}]


class Script(io.StringIO):
    """What a person types at the interactive calibration; each line read can change the load
    on the roller first (``loads``: the load from that line on)."""

    def __init__(self, lines: list[str], roller: Roller, loads: list[float]) -> None:
        super().__init__("".join(f"{line}\n" for line in lines))
        self.roller, self.loads = roller, list(loads)

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if self.loads:
            self.roller.load_n = self.loads.pop(0)
        return super().readline(size)


def test_the_interactive_calibration_refuses_a_reference_lighter_than_its_tare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "calibration.json"
    roller = Roller(0.0)
    grams_200 = 0.2 * 9.80665
    # Enter for the tare with 200 g still on the roller, then "200g" typed with nothing on it,
    # then Enter to finish.
    script = Script(["", "200g", ""], roller, [grams_200, 0.0, 0.0])
    monkeypatch.setattr("sys.stdin", script)
    out = io.StringIO()
    with pytest.raises(CalibrateError, match="no reference weight"):
        interactive(path, roller.read, 8, 128, out, capacity_n=CAPACITY_N)
    assert "lower than at the tare" in out.getvalue()
    assert load_calibration(path).scale_n_per_count == 0.0  # still the bare tare


def test_the_tare_command_refuses_a_calibration_without_a_positive_scale() -> None:
    bad = Calibration(
        0.0, -25e-6, points=(CalibrationPoint(0.0, 0.0), CalibrationPoint(-80_000.0, 2.0))
    )
    engine = Engine(default_engine_params(), bad, (Median(3),), ())
    for i in range(80):
        engine.handle(ForceRead(i / 80, 0))
    effects = engine.handle(Command(1.0, "tare"))
    results = [x.event.data for x in effects if isinstance(x, EmitEvent)]
    assert results[0]["ok"] is False and "no usable scale" in results[0]["error"]
    assert not any(isinstance(x, SaveCalibration) for x in effects)
