"""The scenario library's passes: each scenario states (or its strokes know) how many passes it
holds, and the engine's segmentation finds exactly that many, with any noise within the
hysteresis. Played through the real engine (calibration, filters, zones, sessions) on virtual
time, the emulated chip's load model turning force into codes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from dermaguard.config.load import default_config
from dermaguard.config.params import default_pass_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine
from dermaguard.core.events import DeviceState, EmitEvent, EventType, ForceRead, ReadFailed
from dermaguard.daemon.app import build_engine
from dermaguard.sim.hx711_chip import LoadModel
from dermaguard.sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
LIBRARY = sorted(SCENARIOS.glob("*.yaml"))
MODEL = LoadModel()  # the emulator's defaults: offset 80,000 counts, 40,000 counts/N
CALIBRATION = Calibration(MODEL.offset_counts, 1 / MODEL.counts_per_newton)


Summary = dict[str, Any]


def play(
    scenario: Scenario, *, rate: int = 80, seed: int = 0, noise_n: float = 0.0
) -> list[Summary]:
    """The ``session_ended`` summaries of one run of ``scenario`` through the engine, with
    ``noise_n`` (N, one standard deviation) of noise added to the scenario's own."""
    engine: Engine = build_engine(default_config(), CALIBRATION)
    noise = (scenario.noise_counts**2 + (noise_n * MODEL.counts_per_newton) ** 2) ** 0.5
    model = LoadModel(MODEL.offset_counts, MODEL.counts_per_newton, noise)
    rng = random.Random(seed)
    docks = [(e.t, e.value == "in") for e in scenario.case if e.kind == "dock"]
    docked = scenario.initial.docked
    # Before the roller first leaves the dock no session can start: skip that stretch.
    start = next((t for t, d in docks if not d), 0.0) - 1.0 if docked else 0.0
    engine.handle(DockChanged(max(start, 0.0), docked))
    ended: list[Summary] = []
    spikes = {}
    for fault in scenario.faults:
        if fault.kind == "spike":
            first = round(fault.t * rate)
            spikes.update(dict.fromkeys(range(first, first + fault.samples), fault.counts))
    n0, n1 = round(max(start, 0.0) * rate), round(scenario.duration_s * rate)
    for n in range(n0, n1 + 1):
        t = n / rate
        while docks and docks[0][0] <= t:
            effects = engine.handle(DockChanged(docks[0][0], docks.pop(0)[1]))
            ended += [e.event.data for e in effects if _ended(e)]
        code = model.code_for(scenario.force_at(t), t, 128, rng) + spikes.get(n, 0)
        code = max(min(code, 0x7FFFFF), -0x800000)
        unplugged = any(
            f.kind == "unplug" and f.t <= t < f.t + f.duration_s for f in scenario.faults
        )
        inp = ReadFailed(t, "timeout") if unplugged else ForceRead(t, code)
        ended += [e.event.data for e in engine.handle(inp) if _ended(e)]
    ended += [e.event.data for e in engine.shutdown(n1 / rate + 0.1) if _ended(e)]
    return ended


def _ended(effect: object) -> bool:
    return isinstance(effect, EmitEvent) and effect.event.type == EventType.SESSION_ENDED


def passes(summaries: list[Summary]) -> int:
    return sum(s["technique"]["passes"] for s in summaries)


def test_every_scenario_in_the_library_says_how_many_passes_it_holds() -> None:
    unknown = [p.name for p in LIBRARY if load_scenario(p).expected_passes is None]
    assert not unknown, f"state expect: {{passes: N}} in {unknown}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_segmentation_is_exact_on_the_scenario_library(path: Path) -> None:
    scenario = load_scenario(path)
    assert passes(play(scenario)) == scenario.expected_passes


@pytest.mark.parametrize("seed", [1, 2])
def test_the_scalp_session_is_stable_under_noise_within_the_hysteresis(seed: int) -> None:
    """Noise of a third of the hysteresis (three standard deviations span it) added to the
    sensor's: the count does not move."""
    scenario = load_scenario(SCENARIOS / "scalp_session.yaml")
    noise = default_pass_params().hysteresis_n / 3
    (summary,) = play(scenario, seed=seed, noise_n=noise)
    assert summary["technique"]["passes"] == scenario.expected_passes == 46


def test_strokes_know_their_passes_and_keep_each_press_in_contact() -> None:
    strokes = [{"t": 5, "passes": 4, "pass_s": 1.2, "lift_s": 0.5, "force_n": 2.0}]
    scenario = parse_scenario({"strokes": strokes, "duration_s": 20})
    assert scenario.expected_passes == 4
    assert scenario.force_at(5.6) == pytest.approx(2.0)  # mid-press
    assert scenario.force_at(6.45) == 0.0  # lifted
    (summary,) = play(_out_of_dock(scenario))
    assert summary["technique"]["passes"] == 4


def test_keyframes_with_strokes_need_the_authors_count() -> None:
    data = {
        "force": [{"t": 0, "n": 0}, {"t": 1, "n": 2.0}, {"t": 3, "n": 0}],
        "strokes": [{"t": 5, "passes": 2, "pass_s": 1, "lift_s": 1, "force_n": 2.0}],
    }
    assert parse_scenario(data).expected_passes is None
    assert parse_scenario({**data, "expect": {"passes": 3}}).expected_passes == 3


@pytest.mark.parametrize(
    ("strokes", "message"),
    [
        ([{"t": 0, "passes": 2}], "strokes[0]: needs pass_s, lift_s, force_n"),
        (
            [{"t": 0, "passes": 2, "pass_s": 1, "lift_s": 1, "force_n": 0.7, "force_sd_n": 0.2}],
            "strokes[0].force_n: 0.7 is not allowed: force_n - 2 x force_sd_n - sway_n (0.3)",
        ),
        (
            [{"t": 0, "passes": 1, "pass_s": 0.3, "lift_s": 1, "force_n": 2}],
            "strokes[0].pass_s: 0.3 is not allowed: must be > 2 x ramp_s (0.4)",
        ),
        (
            [
                {"t": 0, "passes": 3, "pass_s": 1, "lift_s": 1, "force_n": 2},
                {"t": 4, "passes": 1, "pass_s": 1, "lift_s": 1, "force_n": 2},
            ],
            "strokes[1].t: 4 is not allowed: strokes[0] lasts to 5",
        ),
        (
            [{"t": 0, "passes": 1, "pass_s": 1, "lift_s": 1, "force_n": 2, "speed": 3}],
            "strokes[0].speed: unknown key",
        ),
    ],
)
def test_bad_strokes_are_refused_naming_the_key(
    strokes: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"strokes": strokes})
    assert any(message in e for e in info.value.errors), info.value.errors


def _out_of_dock(scenario: Scenario) -> Scenario:
    assert not scenario.initial.docked
    return scenario


def test_the_state_snapshot_carries_the_passes_without_following_the_force() -> None:
    """The retained snapshot gives the pass count and the latest pass's force, and is not sent
    for every sample: a few snapshots a pass (zone changes, a pass starting, counted, ended,
    its force moving by half a newton)."""
    strokes = [{"t": 1, "passes": 3, "pass_s": 2.0, "lift_s": 1.0, "force_n": 2.0}]
    scenario = parse_scenario({"strokes": strokes, "duration_s": 10})
    engine = build_engine(default_config(), CALIBRATION)
    engine.handle(DockChanged(0.0, False))
    states: list[DeviceState] = []
    rng = random.Random(0)
    for n in range(80 * 10):
        t = n / 80
        code = MODEL.code_for(scenario.force_at(t), t, 128, rng)
        states += [e for e in engine.handle(ForceRead(t, code)) if isinstance(e, DeviceState)]
    assert [s.passes for s in states if s.passes is not None][-1] == 3
    finished = [s for s in states if s.passes is not None and not s.pass_open]
    # 2 N held, less the 0.2 s ramps at each end of the 2 s pass.
    assert finished[-1].pass_force_n == pytest.approx(1.85, abs=0.05)
    # While a pass runs, the force shown follows it to within the half-newton step.
    before_end = [s for s in states if s.pass_open and s.t < finished[-1].t][-1]
    assert before_end.pass_force_n == pytest.approx(1.85, abs=0.25)
    assert len(states) < 15 * 3  # a few a pass, not one per sample (800 here)


def test_the_snapshot_follows_a_pass_whose_force_changes_within_its_zone() -> None:
    """A pass that presses 1.3 N, then 2.7 N (both in ok): while it runs, the force in the last
    snapshot sent is never half a newton or more from the pass's force, though neither the
    zone nor the count changes."""
    keyframes = [(0, 0), (1, 0), (1.1, 1.3), (3, 1.3), (3.1, 2.7), (7, 2.7), (7.1, 0), (9, 0)]
    scenario = parse_scenario({"force": [{"t": t, "n": n} for t, n in keyframes]})
    engine = build_engine(default_config(), CALIBRATION)
    engine.handle(DockChanged(0.0, False))
    shown: DeviceState | None = None
    rng = random.Random(0)
    worst = 0.0
    for n in range(80 * 9):
        t = n / 80
        code = MODEL.code_for(scenario.force_at(t), t, 128, rng)
        for effect in engine.handle(ForceRead(t, code)):
            if isinstance(effect, DeviceState):
                shown = effect
        current = engine.sessions.current
        seg = None if current is None else current.segmenter
        if seg is not None and seg.pass_open and seg.force_n is not None and 2 < t < 7:
            assert shown is not None and shown.pass_force_n is not None
            worst = max(worst, abs(shown.pass_force_n - seg.force_n))
    assert 0.2 < worst < 0.5  # it moved (by 0.9 N in all), and the snapshot kept up
