"""Scenario files: what the simulated hardware does over time.

A scenario gives the force on the roller as keyframes (linear in between), the emulated sensor's
properties and faults at given times. Errors name the key path, like config errors do.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

SensorFaultKind = Literal["unplug", "spike", "saturate"]


class ScenarioError(Exception):
    """A scenario file is wrong; ``str()`` lists every problem with its key path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__("\n".join(f"{source}: {e}" for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class SensorFault:
    """A fault of the emulated HX711 from ``t`` for ``duration_s`` (spikes: ``samples``)."""

    t: float
    kind: SensorFaultKind
    duration_s: float = 0.0
    counts: int = 0
    level: Literal["high", "low"] = "high"
    samples: int = 1


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    keyframes: tuple[tuple[float, float], ...]
    noise_counts: float = 0.0
    drift_counts_per_s: float = 0.0
    faults: tuple[SensorFault, ...] = field(default_factory=tuple)

    def force_at(self, t: float) -> float:
        """The commanded force at ``t`` (newtons), linear between keyframes."""
        times = [k[0] for k in self.keyframes]
        i = bisect.bisect_right(times, t)
        if i == 0:
            return self.keyframes[0][1]
        if i >= len(self.keyframes):
            return self.keyframes[-1][1]
        (t0, f0), (t1, f1) = self.keyframes[i - 1], self.keyframes[i]
        return f0 + (f1 - f0) * (t - t0) / (t1 - t0)


_TOP_KEYS = {"name", "description", "duration_s", "sensor", "force", "faults"}
_SENSOR_KEYS = {"noise_counts", "drift_counts_per_s"}


def _num(value: Any, path: str, errors: list[str], minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(f"{path}: {value!r} is not allowed: must be a number")
        return 0.0
    if minimum is not None and value < minimum:
        errors.append(f"{path}: {value!r} is not allowed: must be >= {minimum:g}")
    return float(value)


def _unknown(data: dict[str, Any], allowed: set[str], path: str, errors: list[str]) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            errors.append(f"{where}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _keyframes(raw: Any, errors: list[str]) -> list[tuple[float, float]]:
    if not isinstance(raw, list) or not raw:
        errors.append("force: must be a non-empty list of {t: seconds, n: newtons}")
        return [(0.0, 0.0)]
    frames: list[tuple[float, float]] = []
    for i, item in enumerate(raw):
        path = f"force[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{path}: {item!r} is not allowed: must be {{t: seconds, n: newtons}}")
            continue
        _unknown(item, {"t", "n"}, path, errors)
        t = _num(item.get("t"), f"{path}.t", errors)
        n = _num(item.get("n"), f"{path}.n", errors, minimum=None)
        if frames and t <= frames[-1][0]:
            errors.append(f"{path}.t: {t:g} is not allowed: must be after {frames[-1][0]:g}")
        frames.append((t, n))
    return frames or [(0.0, 0.0)]


def _faults(raw: Any, errors: list[str]) -> list[SensorFault]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append("faults: must be a list")
        return []
    out: list[SensorFault] = []
    for i, item in enumerate(raw):
        path = f"faults[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{path}: must be a mapping such as {{t: 10, unplug_s: 2}}")
            continue
        _unknown(
            item, {"t", "unplug_s", "spike_counts", "samples", "saturate", "for_s"}, path, errors
        )
        t = _num(item.get("t"), f"{path}.t", errors)
        if "unplug_s" in item:
            out.append(SensorFault(t, "unplug", _num(item["unplug_s"], f"{path}.unplug_s", errors)))
        elif "spike_counts" in item:
            counts = item["spike_counts"]
            if isinstance(counts, bool) or not isinstance(counts, int):
                errors.append(f"{path}.spike_counts: {counts!r} is not allowed: must be an integer")
                counts = 0
            samples = int(_num(item.get("samples", 1), f"{path}.samples", errors, minimum=1))
            out.append(SensorFault(t, "spike", counts=counts, samples=samples))
        elif "saturate" in item:
            level = item["saturate"]
            if level not in ("high", "low"):
                errors.append(f"{path}.saturate: {level!r} is not allowed: must be high or low")
                level = "high"
            duration = _num(item.get("for_s", 1.0), f"{path}.for_s", errors)
            out.append(SensorFault(t, "saturate", duration_s=duration, level=level))
        else:
            errors.append(f"{path}: needs one of unplug_s, spike_counts, saturate")
    return out


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ScenarioError(source, ["the top level must be a mapping"])
    _unknown(data, _TOP_KEYS, "", errors)
    frames = _keyframes(data.get("force"), errors)
    sensor = data.get("sensor") or {}
    if not isinstance(sensor, dict):
        errors.append("sensor: must be a mapping")
        sensor = {}
    _unknown(sensor, _SENSOR_KEYS, "sensor", errors)
    noise = _num(sensor.get("noise_counts", 0.0), "sensor.noise_counts", errors)
    drift = _num(
        sensor.get("drift_counts_per_s", 0.0), "sensor.drift_counts_per_s", errors, minimum=None
    )
    faults = _faults(data.get("faults"), errors)
    duration = data.get("duration_s", frames[-1][0])
    duration = _num(duration, "duration_s", errors)
    if duration <= 0 and not errors:
        errors.append("duration_s: must be > 0 (or give keyframes after t=0)")
    if errors:
        raise ScenarioError(source, errors)
    return Scenario(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")).strip(),
        duration_s=duration,
        keyframes=tuple(frames),
        noise_counts=noise,
        drift_counts_per_s=drift,
        faults=tuple(sorted(faults, key=lambda f: f.t)),
    )


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(str(path), [f"{where}not valid YAML"]) from exc
    return parse_scenario(data, str(path))
