"""Raw HX711 counts to newtons: a least-squares line through a tare and reference weights."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

STANDARD_GRAVITY = 9.80665  # m/s², the conventional value used to turn a mass into a force


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    """One measured point: the mean raw code with a known force applied."""

    raw: float
    force_n: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """``force_n = (raw - offset) * scale_n_per_count``.

    ``points`` are the measurements since the last full tare, kept so that adding a reference
    weight later refits the line through all of them.
    """

    offset: float
    scale_n_per_count: float
    gain: int = 128
    points: tuple[CalibrationPoint, ...] = ()
    created: str = ""

    def force(self, raw: float) -> float:
        return (raw - self.offset) * self.scale_n_per_count

    def raw_for(self, force_n: float) -> float:
        """The raw code that corresponds to ``force_n`` (used for validity limits)."""
        return self.offset + force_n / self.scale_n_per_count

    @property
    def is_complete(self) -> bool:
        """True once the scale comes from a real reference weight, not just a tare."""
        return any(p.force_n != 0.0 for p in self.points) and self.scale_n_per_count != 0.0


class CalibrationError(ValueError):
    """The points do not define a usable line."""


# -- what a calibration must satisfy (docs/CARE.md, "Calibration checks") --------------------

#: The HX711's code is 24-bit two's complement: its full-scale input gives ±2**23 counts.
HX711_FULL_SCALE_COUNTS = 2**23
#: Rated outputs (mV/V at rated capacity) of the load cells a scale is accepted for. The BOM's
#: TAL220B is 1.0 ± 0.15 mV/V; full-bridge strain-gauge cells are made from about 1 to 3 mV/V;
#: the low end, 0.5, leaves room for a mount that lets part of the force past the cell.
RATED_OUTPUT_MV_PER_V = (0.5, 3.0)
#: A reference weight must move the reading by at least this many times the measured noise...
REFERENCE_MIN_STEP_NOISES = 20.0
#: ...taking a noise below one count as one count (the code's own resolution), so a perfectly
#: quiet reading still needs a real step.
NOISE_FLOOR_COUNTS = 1.0


def counts_per_newton(rated_mv_per_v: float, capacity_n: float, gain: int) -> float:
    """Counts per newton of a cell of this rated output and capacity on an HX711 at ``gain``.

    The HX711's full-scale differential input is ±0.5·AVDD/gain, and the bridge, excited from
    the same AVDD, gives rated_mv_per_v·AVDD at rated capacity: the ratio is independent of
    the supply, so counts/N = rated·1e-3 · 2·gain · 2**23 / capacity.
    """
    return rated_mv_per_v * 1e-3 * 2 * gain * HX711_FULL_SCALE_COUNTS / capacity_n


@dataclass(frozen=True, slots=True)
class ScaleRange:
    """The plausible scales (N per count) for a load cell of one capacity at one gain."""

    low: float
    high: float

    def __contains__(self, scale: object) -> bool:
        return isinstance(scale, float | int) and self.low <= scale <= self.high

    def describe(self) -> str:
        return f"{self.low * 1e6:.2f} to {self.high * 1e6:.2f} µN/count"


def plausible_scale(capacity_n: float, gain: int) -> ScaleRange:
    """The scales a good calibration can have: those of a cell rated within
    :data:`RATED_OUTPUT_MV_PER_V` at ``capacity_n`` (``load_cell.capacity_n``) and ``gain``."""
    low_mv, high_mv = RATED_OUTPUT_MV_PER_V
    return ScaleRange(
        1.0 / counts_per_newton(high_mv, capacity_n, gain),
        1.0 / counts_per_newton(low_mv, capacity_n, gain),
    )


def stored_scale_problem(cal: Calibration) -> str | None:
    """Why a stored calibration cannot be used (``None`` when it can): its scale must be a
    positive number, a heavier load reading a higher code. Zero stands only in a bare tare,
    where it means "no scale yet" (``dermaguard calibrate --reference`` makes one)."""
    scale = cal.scale_n_per_count
    if not math.isfinite(scale) or scale < 0 or (scale == 0 and _has_reference(cal)):
        return (
            f"scale_n_per_count is {scale!r}, but it must be more than 0 (a heavier load reads "
            "a higher code): the calibration was made from a reference weight that read no "
            "heavier than the tare; calibrate again (`dermaguard calibrate`)"
        )
    return None


def _has_reference(cal: Calibration) -> bool:
    return any(p.force_n != 0.0 for p in cal.points)


#: A field tare (the ``tare`` command) is refused when the force it would call zero reads more
#: than this above zero (N)... A load cell's zero drifts by hundredths of a newton with
#: temperature and creep, so more than this is a load on the roller, and taring it away would
#: move the over-pressure alarm up by as much.
TARE_BAND_MIN_N = 0.1
#: ...or than this many times the measured noise, where the noise is larger.
TARE_BAND_NOISES = 3.0
#: A tare is taken only from a steady reading: its spread (highest code less lowest) over the
#: window at most this many times the measured noise (white noise stays well inside; a hand,
#: a roller being set down or picked up does not).
TARE_STEADY_NOISES = 10.0
#: The median of |x[i+1] - x[i]| over sqrt(2) times this is the standard deviation of white
#: noise (the median of a half-normal is 0.6745 sigma).
_MEDIAN_ABS_NORMAL = 0.6745


def sample_noise(codes: Sequence[float]) -> float:
    """The noise of a run of codes (standard deviation, counts), at least one count.

    Estimated from the median step between neighbours, which a slow change of load (a hand
    resting on the roller) or a single step barely moves, so a spread can be judged against it.
    """
    steps = [abs(b - a) for a, b in itertools.pairwise(codes)]
    if not steps:
        return NOISE_FLOOR_COUNTS
    sigma = statistics.median(steps) / (math.sqrt(2.0) * _MEDIAN_ABS_NORMAL)
    return max(sigma, NOISE_FLOOR_COUNTS)


def check_tare(cal: Calibration, codes: Sequence[float]) -> float:
    """The zero a field tare takes from ``codes`` (their mean), or :class:`CalibrationError`
    saying why not and what to do.

    The reading must be steady (:data:`TARE_STEADY_NOISES`) and not positive beyond
    max(:data:`TARE_BAND_MIN_N`, :data:`TARE_BAND_NOISES` times the noise) on ``cal``. A negative
    reading is accepted: nothing pressing on the roller reads lower, and it is what a zero
    taken under load looks like (the remedy for ``negative_force``).
    """
    problem = stored_scale_problem(cal)
    if problem is not None or cal.scale_n_per_count <= 0:
        raise CalibrationError(
            "the calibration in use has no usable scale: calibrate with a known weight "
            "(`dermaguard calibrate`)"
        )
    scale = cal.scale_n_per_count
    noise = sample_noise(codes)
    spread = max(codes) - min(codes)
    if spread > TARE_STEADY_NOISES * noise:
        raise CalibrationError(
            f"the reading is not steady (it moved {spread * scale:.3f} N in the last second, "
            f"{spread / noise:.0f} times its noise of {noise * scale:.4f} N): let the roller "
            "rest untouched, docked or on a table, and tare again"
        )
    zero = statistics.fmean(codes)
    reads = cal.force(zero)
    band = max(TARE_BAND_MIN_N, TARE_BAND_NOISES * noise * scale)
    if reads > band:
        raise CalibrationError(
            f"the roller reads {reads:.3f} N, more than the {band:.3f} N a tare may take as "
            "zero: take everything off the roller so that nothing touches it, and tare "
            "again (a tare under load would raise the over-pressure alarm by as much)"
        )
    return zero


#: A reference weight added to a finished calibration must read, on the line it refines, within
#: this fraction of its force (or within REFERENCE_TOLERANCE_MIN_N, for light weights). A weight
#: that is not on the roller, a wrong mass or a hand on the handle is far outside it; a good
#: weight on a good line is well inside (a load cell is linear to a fraction of a percent).
REFERENCE_TOLERANCE = 0.05
REFERENCE_TOLERANCE_MIN_N = 0.05


def check_on_line(cal: Calibration, raw: float, force_n: float, weight: str) -> None:
    """Refuse a reference weight that the finished calibration it refines disagrees with.

    Refitting through such a point would move the scale, and with it the force at which the
    over-pressure alarm trips, with no more than a warning. A new calibration (a tare first)
    starts without this check.
    """
    if not cal.is_complete:
        return
    reads = cal.force(raw)
    allowed = max(REFERENCE_TOLERANCE * force_n, REFERENCE_TOLERANCE_MIN_N)
    if abs(reads - force_n) > allowed:
        raise CalibrationError(
            f"refused: {weight} is {force_n:.3f} N, but the calibration you have reads "
            f"{reads:.3f} N now (off by {reads - force_n:+.3f} N; at most {allowed:.3f} N is "
            "accepted). Check that the weight rests on the roller, that nothing else touches "
            "it and that its mass is right. Nothing was changed. To start a new calibration "
            "instead: `dermaguard calibrate --tare` with nothing on the roller, then "
            "`--reference` with each weight"
        )


def with_checked_reference(
    cal: Calibration,
    raw: float,
    noise_counts: float,
    force_n: float,
    *,
    weight: str,
    capacity_n: float,
    created: str,
) -> Calibration:
    """The calibration with this reference weight added, or :class:`CalibrationError` saying
    what to check. The one place every reference weight is judged (the CLI, the interactive
    calibration, the simulation's own).

    ``raw`` is the mean code with the weight on and ``noise_counts`` the standard deviation
    of those codes. The weight must agree with a finished line (:func:`check_on_line`), read
    heavier than the tare by at least :data:`REFERENCE_MIN_STEP_NOISES` times the noise, and
    the line through every point must have a scale in :func:`plausible_scale`.
    """
    check_on_line(cal, raw, force_n, weight)
    step = raw - cal.offset
    noise = max(noise_counts, NOISE_FLOOR_COUNTS)
    if step <= 0:
        raise CalibrationError(
            f"refused: with {weight} on it the load cell reads {-step:.0f} counts lower than "
            "at the tare, not higher. Check that the weight rests on the roller now, that "
            "nothing was on it at the tare (tare again with nothing touching it: "
            "`dermaguard calibrate --tare`), and that the load cell is not mounted or wired "
            "the wrong way round (turn it, or swap A+ and A-). Nothing was changed"
        )
    if step < REFERENCE_MIN_STEP_NOISES * noise:
        raise CalibrationError(
            f"refused: {weight} reads only {step:.0f} counts above the tare, less than "
            f"{REFERENCE_MIN_STEP_NOISES:g} times the noise ({noise:.1f} counts). Check that the "
            "weight rests on the roller and nothing else touches it, keep it still, or use a "
            "heavier weight. Nothing was changed"
        )
    new = with_reference(cal, raw, force_n, created)
    allowed = plausible_scale(capacity_n, cal.gain)
    if new.scale_n_per_count not in allowed:
        raise CalibrationError(
            f"refused: with {weight} the scale would be "
            f"{new.scale_n_per_count * 1e6:.2f} µN/count, outside the "
            f"{allowed.describe()} a {capacity_n:g} N load cell rated "
            f"{RATED_OUTPUT_MV_PER_V[0]:g} to {RATED_OUTPUT_MV_PER_V[1]:g} mV/V gives at gain "
            f"{cal.gain} (docs/CARE.md). Check the weight's mass and unit (200g, not 200kg), "
            "that it alone rests on the roller, and that load_cell.capacity_n and hx711.gain "
            "match the cell. Nothing was changed"
        )
    return new


def fit(points: Sequence[CalibrationPoint]) -> tuple[float, float]:
    """Least-squares fit of force against raw; returns ``(offset, scale_n_per_count)``."""
    if len(points) < 2:
        raise CalibrationError("need a tare and at least one reference weight")
    n = len(points)
    mean_raw = sum(p.raw for p in points) / n
    mean_f = sum(p.force_n for p in points) / n
    sxx = sum((p.raw - mean_raw) ** 2 for p in points)
    sxy = sum((p.raw - mean_raw) * (p.force_n - mean_f) for p in points)
    if sxx == 0.0 or sxy == 0.0:
        raise CalibrationError(
            "the reference readings do not differ from the tare: is the weight on the roller "
            "and the load cell wired?"
        )
    scale = sxy / sxx
    intercept = mean_f - scale * mean_raw
    return -intercept / scale, scale


def with_tare(cal: Calibration | None, raw_zero: float, gain: int, created: str) -> Calibration:
    """Zero the scale at ``raw_zero``: keeps the slope, starts a fresh set of points."""
    scale = cal.scale_n_per_count if cal is not None else 0.0
    return Calibration(
        offset=raw_zero,
        scale_n_per_count=scale,
        gain=gain,
        points=(CalibrationPoint(raw_zero, 0.0),),
        created=created,
    )


def with_zero(cal: Calibration, raw_zero: float, created: str) -> Calibration:
    """Re-zero a complete calibration in the field (a tare with the roller unloaded).

    The zero drifts (temperature, creep) while the slope stays: shift the offset and every
    stored point by the same amount, so the calibration stays complete and a later reference
    weight still refits through consistent points.
    """
    delta = raw_zero - cal.offset
    points = tuple(CalibrationPoint(p.raw + delta, p.force_n) for p in cal.points)
    return replace(cal, offset=raw_zero, points=points, created=created)


def with_reference(cal: Calibration, raw: float, force_n: float, created: str) -> Calibration:
    """Add a reference weight reading and refit the line through all points."""
    points = (*cal.points, CalibrationPoint(raw, force_n))
    offset, scale = fit(points)
    return replace(cal, offset=offset, scale_n_per_count=scale, points=points, created=created)


_MASS = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+)\s*(g|kg|n|N)?\s*$")


def parse_reference(text: str) -> float:
    """``"200g"``, ``"0.2kg"`` or ``"1.96N"`` → newtons. A bare number is refused: 200 could
    be grams or newtons, and a wrong guess would skew every reading silently."""
    m = _MASS.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a weight: write e.g. 200g, 0.5kg or 1.96N")
    if m.group(2) is None:
        number = m.group(1)
        raise ValueError(
            f"{text!r} is a weight without a unit: write {number}g, {number}kg or {number}N"
        )
    value = float(m.group(1))
    unit = m.group(2).lower()
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r}: a reference weight must be more than zero")
    if unit == "g":
        return value / 1000.0 * STANDARD_GRAVITY
    if unit == "kg":
        return value * STANDARD_GRAVITY
    return value
