"""Strokes: a scenario's passes described, not drawn keyframe by keyframe.

A ``strokes`` block makes ``passes`` presses of ``pass_s`` seconds each, ``lift_s`` apart (the
roller off the skin, at 0 N), every press at a force drawn for it from a normal distribution
(``force_n`` ± ``force_sd_n``, cut at two standard deviations, from a seeded generator, so a
file always makes the same trace)::

    strokes:
      - {t: 66, passes: 12, pass_s: 2.0, lift_s: 0.8, force_n: 1.8, force_sd_n: 0.3, seed: 1}

Optional: ``ramp_s`` (0.2 s to press and to lift), ``sway_n`` (how far the force swings within
a pass, up and down alternately; 0 by default) and ``seed`` (0). The block knows how many
passes it makes; the segmentation under test never tells it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

#: A stroke's force never drops below this within a pass: clearly in contact, above the default
#: lift threshold (pressure.zones.contact_n, 0.3 N) and its hysteresis.
STROKE_MIN_N = 0.6
STROKE_KEYS = {
    "t",
    "passes",
    "pass_s",
    "lift_s",
    "force_n",
    "force_sd_n",
    "ramp_s",
    "sway_n",
    "seed",
}
_REQUIRED = ("t", "passes", "pass_s", "lift_s", "force_n")


@dataclass(frozen=True, slots=True)
class Strokes:
    """One block of passes; :meth:`keyframes` makes its force, :attr:`passes` says how many."""

    t: float
    passes: int
    pass_s: float
    lift_s: float
    force_n: float
    force_sd_n: float = 0.0
    ramp_s: float = 0.2
    sway_n: float = 0.0
    seed: int = 0

    @property
    def end(self) -> float:
        """When the last pass's force is back at 0 N."""
        return self.t + self.passes * (self.pass_s + self.lift_s) - self.lift_s

    def pass_forces(self) -> list[float]:
        """The force of each pass (the same for the same seed)."""
        rng = random.Random(self.seed)
        sd = self.force_sd_n
        return [
            min(max(rng.gauss(self.force_n, sd), self.force_n - 2 * sd), self.force_n + 2 * sd)
            for _ in range(self.passes)
        ]

    def keyframes(self) -> list[tuple[float, float]]:
        frames: list[tuple[float, float]] = []
        for i, force in enumerate(self.pass_forces()):
            t0 = self.t + i * (self.pass_s + self.lift_s)
            sway = self.sway_n if i % 2 == 0 else -self.sway_n
            frames += [
                (t0, 0.0),
                (t0 + self.ramp_s, force),
                (t0 + self.pass_s / 2, force + sway),
                (t0 + self.pass_s - self.ramp_s, force),
                (t0 + self.pass_s, 0.0),
            ]
        return frames


def _number(item: dict[str, Any], key: str, path: str, errors: list[str]) -> float:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        errors.append(f"{path}.{key}: {value!r} is not allowed: must be a number >= 0")
        return 0.0
    return float(value)


def parse_strokes(raw: Any, errors: list[str]) -> list[Strokes]:
    """The ``strokes`` list; each problem is added to ``errors`` with its key path."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append("strokes: must be a list such as [{t: 5, passes: 10, pass_s: 2, ...}]")
        return []
    blocks: list[Strokes] = []
    for i, item in enumerate(raw):
        path = f"strokes[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{path}: {item!r} is not allowed: must be a mapping")
            continue
        problems: list[str] = []
        for key in item:
            if key not in STROKE_KEYS:
                allowed = ", ".join(sorted(STROKE_KEYS))
                problems.append(f"{path}.{key}: unknown key (allowed: {allowed})")
        missing = [key for key in _REQUIRED if key not in item]
        if missing:
            problems.append(f"{path}: needs {', '.join(missing)}")
        if problems:
            errors.extend(problems)
            continue
        values = {
            key: _number(item, key, path, problems)
            for key in STROKE_KEYS - {"passes", "seed"}
            if key in item
        }
        for key in ("passes", "seed"):
            value = item.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{path}.{key}: {value!r} is not allowed: must be an integer >= 0")
        if not problems:
            block = Strokes(passes=item["passes"], seed=item.get("seed", 0), **values)
            problems.extend(_block_errors(block, path))
            if not problems:
                blocks.append(block)
        errors.extend(problems)
    return blocks


def _block_errors(b: Strokes, path: str) -> list[str]:
    errors: list[str] = []
    if b.passes < 1:
        errors.append(f"{path}.passes: {b.passes} is not allowed: must be >= 1")
    if not b.ramp_s > 0:
        errors.append(f"{path}.ramp_s: {b.ramp_s:g} is not allowed: must be > 0")
    if not b.pass_s > 2 * b.ramp_s:
        errors.append(
            f"{path}.pass_s: {b.pass_s:g} is not allowed: must be > 2 x ramp_s ({2 * b.ramp_s:g})"
        )
    if not b.lift_s > 0:
        errors.append(f"{path}.lift_s: {b.lift_s:g} is not allowed: must be > 0")
    low = b.force_n - 2 * b.force_sd_n - b.sway_n
    if low < STROKE_MIN_N:
        errors.append(
            f"{path}.force_n: {b.force_n:g} is not allowed: force_n - 2 x force_sd_n - sway_n "
            f"({low:g}) must be >= {STROKE_MIN_N:g} N, so that every pass is in contact"
        )
    return errors


def overlap_errors(blocks: list[Strokes], frames: list[tuple[float, float]]) -> list[str]:
    """Blocks may not overlap each other or the ``force`` keyframes (the trace would be
    ambiguous)."""
    errors: list[str] = []
    spans = sorted((b.t, b.end, i) for i, b in enumerate(blocks))
    for (_, end, i), (start, _, j) in pairwise(spans):
        if start <= end:
            why = f"strokes[{i}] lasts to {end:g}"
            errors.append(f"strokes[{j}].t: {start:g} is not allowed: {why}")
    for b_start, b_end, i in spans:
        inside = [t for t, _ in frames if b_start <= t <= b_end]
        if inside:
            errors.append(
                f"strokes[{i}]: force keyframes at t={inside[0]:g} fall inside it "
                f"({b_start:g} to {b_end:g}); put them before or after"
            )
    return errors
