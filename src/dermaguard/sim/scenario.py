"""Scenario files: what the simulated hardware does over time.

A scenario gives the force on the roller as keyframes (linear in between), the emulated sensor's
properties and faults at given times. Errors name the key path, like config errors do.

The sterilizing case is driven by an optional ``initial`` state and a ``case`` list of timed
events, each ``t`` plus exactly one action::

    initial: {lid: open, dock: in}      # defaults: lid open, roller out (in the hand)
    case:
      - {t: 2, lid: closed}             # lid: closed | open
      - {t: 700, dock: out}             # dock: in | out
      - {t: 5, sterilize: true}         # a sterilize command, as from MQTT
      - {t: 30, uv_sensor: dark}        # uv_sensor: dark (the sensor fails) | ok (recovers)

With a ``case`` list, ``force`` may be left out (no force on the roller).

Passes can be described rather than drawn: a ``strokes`` list (:mod:`dermaguard.sim.strokes`)
makes them, and the scenario knows how many it made. A scenario drawn with keyframes states
its count as its author counted it: ``expect: {passes: N}``. :attr:`Scenario.expected_passes`
is that count, which tests hold the segmentation to.

``sensor: {board_rate_sps: 10}`` emulates an HX711 board whose RATE pin selects 10 samples/s
(the SparkFun board as shipped, SJ2 uncut) or 80, whatever ``hx711.rate_sps`` says; left out,
the board matches the config.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dermaguard.sim.strokes import Strokes, overlap_errors, parse_strokes

SensorFaultKind = Literal["unplug", "spike", "saturate"]
CaseEventKind = Literal["lid", "dock", "sterilize", "uv_sensor"]
LidLevel = Literal["open", "closed"]
DockLevel = Literal["in", "out"]

CASE_KINDS: tuple[CaseEventKind, ...] = ("lid", "dock", "sterilize", "uv_sensor")
#: Allowed values of each case action, as written in the file.
CASE_VALUES: dict[str, tuple[object, ...]] = {
    "lid": ("closed", "open"),
    "dock": ("in", "out"),
    "sterilize": (True,),
    "uv_sensor": ("dark", "ok"),
}


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
class CaseEvent:
    """Something happens to the case at ``t``.

    ``value`` is ``closed``/``open`` (lid), ``in``/``out`` (dock), ``dark``/``ok`` (uv_sensor)
    or ``request`` (sterilize).
    """

    t: float
    kind: CaseEventKind
    value: str


@dataclass(frozen=True, slots=True)
class CaseInitial:
    """The case at time 0: by default the lid is open and the roller is out, in the hand."""

    lid: LidLevel = "open"
    dock: DockLevel = "out"

    @property
    def lid_closed(self) -> bool:
        return self.lid == "closed"

    @property
    def docked(self) -> bool:
        return self.dock == "in"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    keyframes: tuple[tuple[float, float], ...]
    noise_counts: float = 0.0
    drift_counts_per_s: float = 0.0
    faults: tuple[SensorFault, ...] = field(default_factory=tuple)
    initial: CaseInitial = field(default_factory=CaseInitial)
    case: tuple[CaseEvent, ...] = field(default_factory=tuple)
    #: Config keys the scenario needs (e.g. a short UV cycle), laid over the user's config.
    config_overrides: dict[str, Any] = field(default_factory=dict)
    #: The blocks of passes the force keyframes include (already merged into ``keyframes``).
    strokes: tuple[Strokes, ...] = field(default_factory=tuple)
    #: ``expect: {passes: N}`` as the author wrote it (``None``: not stated).
    stated_passes: int | None = None
    #: Some force comes from hand-drawn ``force`` keyframes (not only from strokes).
    drawn_force: bool = True

    @property
    def expected_passes(self) -> int | None:
        """How many passes the scenario holds: as stated, or as its strokes made them when
        it has no hand-drawn force (``None``: unknown)."""
        if self.stated_passes is not None:
            return self.stated_passes
        if self.strokes and not self.drawn_force:
            return sum(b.passes for b in self.strokes)
        return None

    #: The emulated board's RATE pin: 10 or 80 samples/s; ``None``: as the config says.
    board_rate_sps: int | None = None

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


_TOP_KEYS = {
    "name",
    "description",
    "duration_s",
    "sensor",
    "force",
    "faults",
    "initial",
    "case",
    "config",
    "strokes",
    "expect",
}
_SENSOR_KEYS = {"noise_counts", "drift_counts_per_s", "board_rate_sps"}


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


def _choice(value: Any, allowed: tuple[object, ...], path: str, errors: list[str]) -> bool:
    if value in allowed and isinstance(value, type(allowed[0])):
        return True
    names = " or ".join(str(a).lower() for a in allowed)
    errors.append(f"{path}: {value!r} is not allowed: must be {names}")
    return False


def _initial(raw: Any, errors: list[str]) -> CaseInitial:
    if raw is None:
        return CaseInitial()
    if not isinstance(raw, dict):
        errors.append("initial: must be a mapping such as {lid: open, dock: in}")
        return CaseInitial()
    _unknown(raw, {"lid", "dock"}, "initial", errors)
    lid = raw.get("lid", "open")
    dock = raw.get("dock", "out")
    ok = _choice(lid, CASE_VALUES["lid"], "initial.lid", errors)
    ok = _choice(dock, CASE_VALUES["dock"], "initial.dock", errors) and ok
    return CaseInitial(lid=lid, dock=dock) if ok else CaseInitial()


def _case_events(raw: Any, errors: list[str]) -> list[CaseEvent]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append("case: must be a list such as [{t: 2, lid: closed}]")
        return []
    actions = ", ".join(CASE_VALUES)
    out: list[CaseEvent] = []
    for i, item in enumerate(raw):
        path = f"case[{i}]"
        if not isinstance(item, dict):
            errors.append(
                f"{path}: {item!r} is not allowed: must be a mapping such as {{t: 2, lid: closed}}"
            )
            continue
        _unknown(item, {"t", *CASE_VALUES}, path, errors)
        t = _num(item.get("t"), f"{path}.t", errors)
        given = [key for key in CASE_KINDS if key in item]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            errors.append(f"{path}: needs exactly one of {actions}{got}")
            continue
        kind = given[0]
        value = item[kind]
        if not _choice(value, CASE_VALUES[kind], f"{path}.{kind}", errors):
            continue
        text = "request" if kind == "sterilize" else str(value)
        out.append(CaseEvent(t, kind, text))
    return out


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ScenarioError(source, ["the top level must be a mapping"])
    _unknown(data, _TOP_KEYS, "", errors)
    overrides = data.get("config") or {}
    if not isinstance(overrides, dict):
        errors.append("config: must be a mapping of config keys, e.g. {case: {cycle_min: 1}}")
        overrides = {}
    initial = _initial(data.get("initial"), errors)
    case = _case_events(data.get("case"), errors)
    # A case-only or strokes-only scenario may leave out the force keyframes.
    strokes = parse_strokes(data.get("strokes"), errors)
    no_force = "force" not in data and (data.get("case") is not None or bool(strokes))
    frames = [(0.0, 0.0)] if no_force else _keyframes(data.get("force"), errors)
    errors.extend(overlap_errors(strokes, frames if not no_force else []))
    drawn = any(n != 0.0 for _, n in frames)
    frames = sorted({*frames, *(f for b in strokes for f in b.keyframes())})
    stated = _expect(data.get("expect"), errors)
    sensor = data.get("sensor") or {}
    if not isinstance(sensor, dict):
        errors.append("sensor: must be a mapping")
        sensor = {}
    _unknown(sensor, _SENSOR_KEYS, "sensor", errors)
    noise = _num(sensor.get("noise_counts", 0.0), "sensor.noise_counts", errors)
    drift = _num(
        sensor.get("drift_counts_per_s", 0.0), "sensor.drift_counts_per_s", errors, minimum=None
    )
    board_rate = sensor.get("board_rate_sps")
    if board_rate is not None and board_rate not in (10, 80):
        errors.append(f"sensor.board_rate_sps: {board_rate!r} is not allowed: 10 or 80")
        board_rate = None
    faults = _faults(data.get("faults"), errors)
    last = max([frames[-1][0], *(e.t for e in case)])
    duration = data.get("duration_s", last)
    duration = _num(duration, "duration_s", errors)
    if duration <= 0 and not errors:
        errors.append("duration_s: must be > 0 (or give keyframes or case events after t=0)")
    for i, ev in enumerate(case):
        if ev.t > duration and "duration_s" in data:
            errors.append(
                f"case[{i}].t: {ev.t:g} is not allowed: must be <= duration_s ({duration:g})"
            )
    if errors:
        raise ScenarioError(source, errors)
    return Scenario(
        config_overrides=overrides,
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")).strip(),
        duration_s=duration,
        keyframes=tuple(frames),
        noise_counts=noise,
        drift_counts_per_s=drift,
        faults=tuple(sorted(faults, key=lambda f: f.t)),
        initial=initial,
        case=tuple(sorted(case, key=lambda e: e.t)),
        strokes=tuple(strokes),
        stated_passes=stated,
        drawn_force=drawn,
        board_rate_sps=board_rate,
    )


def _expect(raw: Any, errors: list[str]) -> int | None:
    """``expect: {passes: N}``: what the author counted in the scenario."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.append("expect: must be a mapping such as {passes: 3}")
        return None
    _unknown(raw, {"passes"}, "expect", errors)
    passes = raw.get("passes")
    if passes is None:
        return None
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        errors.append(f"expect.passes: {passes!r} is not allowed: must be an integer >= 0")
        return None
    return passes


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
