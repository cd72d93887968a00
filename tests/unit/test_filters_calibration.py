"""Filters state their delay truthfully; calibration fits and parses weights."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermaguard.core.calibration import (
    STANDARD_GRAVITY,
    Calibration,
    CalibrationError,
    CalibrationPoint,
    fit,
    parse_reference,
    with_reference,
    with_tare,
)
from dermaguard.core.filters import Ema, Median, MovingAverage, build_filter


@pytest.mark.parametrize("window", [3, 5, 7])
def test_median_passes_a_step_after_its_stated_delay(window: int) -> None:
    f = Median(window)
    for _ in range(window):
        f(0.0)
    outs = [f(1.0) for _ in range(window)]
    first = outs.index(1.0)
    assert first == f.delay_samples


def test_median_removes_a_single_spike() -> None:
    f = Median(3)
    outs = [f(x) for x in [1.0, 1.0, 50.0, 1.0, 1.0]]
    assert max(outs) == 1.0


def test_moving_average_and_ema_settle_to_the_input() -> None:
    ma, ema = MovingAverage(4), Ema(0.5)
    for _ in range(40):
        a, b = ma(2.0), ema(2.0)
    assert a == pytest.approx(2.0) and b == pytest.approx(2.0)
    assert ma.delay_samples == 1.5 and ema.delay_samples == 1.0


def test_build_filter_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="odd"):
        build_filter("median", window=4)
    with pytest.raises(ValueError, match="alpha"):
        build_filter("ema", alpha=0.0)
    with pytest.raises(ValueError, match="unknown"):
        build_filter("kalman")


@settings(max_examples=200)
@given(
    offset=st.integers(-2_000_000, 2_000_000),
    counts_per_n=st.floats(1_000, 200_000),
    forces=st.lists(st.floats(0.5, 40.0), min_size=1, max_size=4, unique=True),
)
def test_tare_and_references_recover_the_true_line(
    offset: int, counts_per_n: float, forces: list[float]
) -> None:
    cal = with_tare(None, float(offset), 128, "t0")
    for f in forces:
        cal = with_reference(cal, offset + f * counts_per_n, f, "t1")
    assert cal.is_complete
    assert cal.offset == pytest.approx(offset, abs=1e-3 * counts_per_n)
    assert cal.force(offset + 3.0 * counts_per_n) == pytest.approx(3.0, rel=1e-6)


def test_retare_keeps_the_slope() -> None:
    cal = Calibration(offset=100.0, scale_n_per_count=0.001, points=())
    re = with_tare(cal, 250.0, 128, "t")
    assert re.offset == 250.0 and re.scale_n_per_count == 0.001
    assert re.force(1250.0) == pytest.approx(1.0)


def test_fit_refuses_a_reference_equal_to_the_tare() -> None:
    with pytest.raises(CalibrationError, match="do not differ"):
        fit([CalibrationPoint(10.0, 0.0), CalibrationPoint(10.0, 1.0)])
    with pytest.raises(CalibrationError, match="at least one reference"):
        fit([CalibrationPoint(10.0, 0.0)])


@pytest.mark.parametrize(
    ("text", "newtons"),
    [
        ("200g", 0.2 * STANDARD_GRAVITY),
        ("0.5kg", 0.5 * STANDARD_GRAVITY),
        ("1.96N", 1.96),
    ],
)
def test_parse_reference(text: str, newtons: float) -> None:
    assert parse_reference(text) == pytest.approx(newtons)


@pytest.mark.parametrize("text", ["", "heavy", "-5g", "0g", "5 lb"])
def test_parse_reference_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="weight"):
        parse_reference(text)


def test_a_weight_without_a_unit_is_refused_never_taken_as_grams() -> None:
    with pytest.raises(ValueError, match="without a unit: write 200g, 200kg or 200N"):
        parse_reference("200")
