"""The case's single faults on emulated pins (docs/SAFETY.md, H30 and H31): a finger or a jammed
lever on the lid microswitch, a welded S1b, a UV-C driver failed short. The real shell
(CaseIO) reads the SimCase's pins and the real engine decides, on virtual time."""

from __future__ import annotations

import dataclasses
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.config.params import default_case_params, default_engine_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.engine import Engine
from dermaguard.core.events import (
    Command,
    EmitEvent,
    Event,
    EventType,
    Priority,
    SetUv,
    ShowIndicators,
    Tick,
)
from dermaguard.core.filters import Median
from dermaguard.hw.case_io import CaseIO, CaseWiring
from dermaguard.sim.case_pins import SimCase
from dermaguard.sim.scenario import CaseInitial
from support.case_wiring import WIRING

CAL = Calibration(offset=0.0, scale_n_per_count=1 / 40_000)
MISMATCH_S = 1.0
CONFIRM_S = 5.0


@dataclass
class Rig:
    """SimCase pins -> CaseIO -> Engine -> CaseIO.set_uv, stepped by hand on virtual time."""

    sim: SimCase
    io: CaseIO
    engine: Engine
    inputs: queue.SimpleQueue[Any]
    clock: SimClock
    t: float = 0.0
    events: list[Event] = field(default_factory=list)
    shown: ShowIndicators | None = None

    def step(self, until: float, dt: float = 0.1) -> None:
        """Tick the engine every ``dt`` up to ``until``, applying its UV commands to the pins."""
        while self.t < until - 1e-9:
            self.t = round(self.t + dt, 6)
            self.clock.advance_to(self.t)
            self.inputs.put(Tick(self.t))
            self.drain()

    def drain(self) -> None:
        while not self.inputs.empty():
            self.apply(self.engine.handle(self.inputs.get_nowait()))

    def apply(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, SetUv):
                self.io.set_uv(effect.on)
            elif isinstance(effect, ShowIndicators):
                self.shown = effect
            elif isinstance(effect, EmitEvent):
                self.events.append(effect.event)

    def command(self, name: str) -> None:
        self.apply(self.engine.handle(Command(self.t, name, "r-1")))

    def of(self, kind: EventType) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    @property
    def uv_pin(self) -> bool:
        return bool(self.sim.uv_led.state)


@pytest.fixture
def rig(pin_factory: Any, sim_clock: SimClock) -> Iterator[Rig]:
    yield from _rig(pin_factory, sim_clock, WIRING, auto_start=True)


def _rig(factory: Any, clock: SimClock, wiring: CaseWiring, *, auto_start: bool) -> Iterator[Rig]:
    sim = SimCase(factory, clock, wiring, initial=CaseInitial(lid="open", dock="in"))
    case = default_case_params(
        cycle_s=600.0,
        auto_start=auto_start,
        uv_sensor=wiring.uv_sensor is not None,
        uv_confirm_s=CONFIRM_S,
        lid_mismatch_s=MISMATCH_S,
    )
    engine = Engine(default_engine_params(case=case), CAL, (Median(3),), ())
    inputs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with CaseIO(inputs.put, clock, wiring, cap_s=case.cap_s, debounce_s=0.0) as io:
        r = Rig(sim, io, engine, inputs, clock)
        r.apply(engine.startup_effects(0.0))
        for inp in io.initial_inputs():
            inputs.put(inp)
        r.drain()
        yield r
    sim.close()


def test_h30_a_finger_on_the_lever_of_an_open_lid_is_a_fault_and_uv_stays_off(rig: Rig) -> None:
    """The microswitch alone says "shut", the reed switch "open": UV off, alarm, event."""
    rig.sim.press_lever(True)  # S1b closes: the UV-C supply is live, the NC contact opens
    rig.step(MISMATCH_S / 2)
    assert not rig.of(EventType.CASE_FAULT)  # a lid closing slowly disagrees for a moment
    rig.step(MISMATCH_S + 0.5)
    [fault] = rig.of(EventType.CASE_FAULT)
    assert fault.data == {"reason": "lid_mismatch", "lid_reed": "open", "lid_contact": "closed"}
    assert not rig.uv_pin and not rig.sim.light
    assert rig.shown is not None
    assert (rig.shown.alarm, rig.shown.alarm_reason) == (Priority.HIGH, EventType.CASE_FAULT)
    assert rig.engine.device_state(rig.t, rig.t).case_fault == "lid_mismatch"
    # Closing the lid now (both channels agree "shut") neither clears it nor starts a cycle.
    rig.sim.set_lid(True)
    rig.step(rig.t + 2.0)
    rig.command("sterilize")
    assert not rig.uv_pin and not rig.of(EventType.STERILIZATION_STARTED)
    assert rig.engine.case.case_fault == "lid_mismatch"


def test_h30_the_fault_clears_once_both_channels_read_the_lid_open(rig: Rig) -> None:
    rig.sim.press_lever(True)
    rig.step(MISMATCH_S + 0.5)
    assert rig.engine.case.case_fault == "lid_mismatch"
    rig.sim.press_lever(False)  # the finger goes: both read "open"
    rig.step(rig.t + 0.2)
    [cleared] = rig.of(EventType.CASE_FAULT_CLEARED)
    assert cleared.data["reason"] == "lid_mismatch"
    assert rig.engine.case.case_fault is None
    rig.sim.set_lid(True)  # a working lid: a cycle runs again
    rig.step(rig.t + 0.5)
    assert rig.uv_pin and rig.sim.light


def test_h30_a_welded_s1b_is_found_when_the_lid_opens_and_stays_latched(rig: Rig) -> None:
    rig.sim.set_lid(True)
    rig.step(0.5)
    assert rig.uv_pin  # a cycle runs
    rig.sim.weld_s1b()
    rig.sim.set_lid(False)  # the reed opens; the welded contact keeps the NC contact open
    assert not rig.uv_pin  # the shell's own S2, before the engine hears of it
    rig.drain()
    rig.step(rig.t + MISMATCH_S + 0.5)
    [fault] = rig.of(EventType.CASE_FAULT)
    assert fault.data["lid_contact"] == "closed" and fault.data["lid_reed"] == "open"
    assert [e.data["reason"] for e in rig.of(EventType.STERILIZATION_ABORTED)] == ["lid_opened"]
    for closed in (True, False, True, False):  # whatever the lid does, the contact never agrees
        rig.sim.set_lid(closed)
        rig.step(rig.t + 1.0)
        assert not rig.uv_pin
    assert rig.engine.case.case_fault == "lid_mismatch"
    assert not rig.of(EventType.CASE_FAULT_CLEARED)


def test_h31_uv_seen_with_the_lid_closed_and_uv_off_is_a_latched_fault(
    pin_factory: Any, sim_clock: SimClock
) -> None:
    """A MOSFET failed short lights the LED whenever S1b closes; the sensor sees it."""
    for r in _rig(pin_factory, sim_clock, WIRING, auto_start=False):
        r.sim.short_uv_driver()
        r.sim.set_lid(True)
        r.step(CONFIRM_S - 1.0)
        assert r.sim.light and not r.uv_pin
        assert not r.of(EventType.CASE_FAULT)  # within the grace a "dark" may be on its way
        r.step(CONFIRM_S + 1.0)
        [fault] = r.of(EventType.CASE_FAULT)
        assert fault.data == {"reason": "uv_stuck_on"}
        assert r.shown is not None and r.shown.alarm_reason == EventType.CASE_FAULT
        r.command("sterilize")
        assert not r.of(EventType.STERILIZATION_STARTED)
        # Opening the lid (S1b cuts the supply: dark) does not clear it: only a restart does.
        r.sim.set_lid(False)
        r.step(r.t + 2.0)
        assert not r.sim.light
        assert r.engine.case.case_fault == "uv_stuck_on"
        assert not r.of(EventType.CASE_FAULT_CLEARED)


def test_without_the_contact_wired_the_reed_switch_alone_is_the_lid(
    pin_factory: Any, sim_clock: SimClock
) -> None:
    """``pins.lid_contact: null``: one channel, no mismatch to find (docs/SAFETY.md, H30)."""
    wiring = dataclasses.replace(WIRING, lid_contact=None, uv_sensor=None)
    sim = SimCase(pin_factory, sim_clock, wiring, initial=CaseInitial(lid="open", dock="in"))
    case = default_case_params(lid_contact=False, uv_sensor=False)
    engine = Engine(default_engine_params(case=case), CAL, (Median(3),), ())
    inputs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with CaseIO(inputs.put, sim_clock, wiring, cap_s=case.cap_s, debounce_s=0.0) as io:
        r = Rig(sim, io, engine, inputs, sim_clock)
        for inp in io.initial_inputs():
            inputs.put(inp)
        sim.press_lever(True)
        r.step(MISMATCH_S + 2.0)
        assert not r.of(EventType.CASE_FAULT) and not r.uv_pin
        sim.set_lid(True)
        r.step(r.t + 0.5)
        assert r.uv_pin
    sim.close()
