"""Raw HX711 counts to newtons: a least-squares line through a tare and reference weights."""

from __future__ import annotations

import math
import re
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


_MASS = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(g|kg|n|N)?\s*$")


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
