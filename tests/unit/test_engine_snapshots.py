"""The engine's state snapshots: built only when what they show changes, never missed.

The engine compares a key read straight from its machines instead of building a
:class:`DeviceState` for every sample. These walks drive it through everything a dashboard
shows (sessions, passes, alarms and silences, cycles, faults, tares, sterility running out, a
new roller, thread failures) and check, after every input, that the key it keeps is the key of
the snapshot it stands for, and that a snapshot goes out exactly when that key moved.
"""

from __future__ import annotations

import random

import pytest

from dermaguard.config.params import default_case_params, default_engine_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged, LidChanged, LidContactChanged, UvSensed
from dermaguard.core.engine import Engine, EngineInput
from dermaguard.core.events import (
    ClockSync,
    Command,
    CommandName,
    DeviceState,
    ForceRead,
    ReadFailed,
    SetUv,
    ThreadFailed,
    Tick,
    UvOutput,
)
from dermaguard.core.filters import Median

CAL = Calibration(offset=0.0, scale_n_per_count=1 / 40_000)
#: Forces the walk presses with (N): unloaded, light, the zones, over the limit, beyond range.
FORCES = (0.0, 0.0, 0.3, 1.5, 2.5, 3.6, 4.2, 5.5, 9.0)
COMMANDS = (
    CommandName.STERILIZE,
    CommandName.SILENCE,
    CommandName.TARE,
    CommandName.NEW_ROLLER,
    CommandName.PING,
)


def _walk(seed: int, steps: int, *, calm: bool) -> list[tuple[EngineInput, float]]:
    """Inputs and wall times: mostly samples at 80/s, with everything else now and then.

    A calm walk starts with the roller docked and the lid shut (a cycle starts), with no time
    jumps and no switch moves after: a long cycle counts down through every step of the
    snapshot's countdown.
    """
    rng = random.Random(seed)
    t, wall = 0.0, 1_700_000_000.0
    force = 0.0
    docked = calm
    out: list[tuple[EngineInput, float]] = []
    if calm:
        out.append((DockChanged(t, True), wall))
        out.append((LidChanged(t, True), wall))
        out.append((LidContactChanged(t, True), wall))
    for i in range(steps):
        jump = not calm and rng.random() >= 0.97
        t += rng.choice((0.3, 2.0, 31.0, 400.0)) if jump else 1 / 80
        wall = wall + 1 / 80 if rng.random() < 0.999 else wall + rng.uniform(-5.0, 3600.0)
        if rng.random() < 0.02:
            # A roller rests unloaded in the dock, mostly, and is lifted out unloaded.
            force = rng.choice(FORCES) if not docked or rng.random() < 0.1 else 0.0
        roll = 0.0 if calm and rng.random() < 0.99 else rng.random()
        if calm and 0.96 <= roll < 0.976:
            roll = 0.98  # no switch moves and the sensor agrees: a command instead
        inp: EngineInput
        if roll < 0.95:
            code = round((force + rng.gauss(0, 0.01)) * 40_000)
            inp = ForceRead(t, 0x7FFFFF if rng.random() < 0.002 else code)
        elif roll < 0.96:
            inp = ReadFailed(t, "timeout", "no data")
        elif roll < 0.967:
            docked = rng.random() < 0.6
            force = 0.0
            inp = DockChanged(t, docked)
        elif roll < 0.974:
            closed = rng.random() < 0.6
            out.append((LidChanged(t, closed), wall))
            # Its second channel moves with it, but for a rare faulty lid (a case fault).
            inp = LidContactChanged(t, closed if rng.random() < 0.98 else not closed)
        elif roll < 0.976:
            inp = UvSensed(t, rng.random() < 0.5)  # a sensor that errs now and then
        elif roll < 0.99:
            inp = Command(t, rng.choice(COMMANDS), request_id=f"r{i}")
        elif roll < 0.992:
            inp = ThreadFailed(t, "mqtt", "boom", 1.0, i)
        elif roll < 0.995:
            inp = ClockSync(t, rng.random() < 0.7)
        else:
            inp = Tick(t)
        out.append((inp, wall))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_the_state_key_is_the_key_of_the_snapshot_it_stands_for(seed: int) -> None:
    # Short cycles complete often; long ones count down across the snapshot's 30 s steps.
    cycle_s = 2.0 if seed % 2 else 75.0
    params = default_engine_params(case=default_case_params(cycle_s=cycle_s, uv_sensor=True))
    engine = Engine(params, CAL, (Median(3),), ())
    engine.startup_effects(0.0, 1_700_000_000.0)
    shown = engine.device_state(0.0, 1_700_000_000.0).key()
    snapshots = 0
    driven = False
    calm = seed % 3 == 2
    countdown: set[int] = set()
    pending = _walk(seed, 6_000, calm=calm)
    pending.reverse()
    step = 0
    while pending:
        inp, wall = pending.pop()
        effects = engine.handle(inp, wall)
        want = engine.device_state(inp.t, wall).key()
        states = [e for e in effects if isinstance(e, DeviceState)]
        where = f"seed {seed}, step {step}, after {inp!r}"
        assert engine._state_key == want, where
        assert len(states) == (1 if want != shown else 0), where
        if states:
            assert states[0] == engine.device_state(inp.t, wall), where
            shown = want
            snapshots += 1
            if states[0].remaining_s is not None:
                countdown.add(int(states[0].remaining_s // 30))
        # A working shell reports each UV level it drove, then the sensor sees it: the next
        # inputs (pushed in reverse, as ``pending`` is popped from its end).
        levels = [e.on for e in effects if isinstance(e, SetUv)]
        if levels and levels[-1] != driven:
            driven = levels[-1]
            pending.extend([(UvSensed(inp.t, driven), wall), (UvOutput(inp.t, driven), wall)])
        step += 1
    # The walk moved what a dashboard shows, many times; a calm one with a long cycle went
    # through its countdown's steps.
    assert snapshots > (10 if calm else 50)
    if calm and cycle_s > 60:
        assert countdown >= {2, 1, 0}, countdown
