"""The simulated case: switch pins, the UV sensor emulation, and scenarios played end to end
through the real shell (CaseIO) and the pure machine on virtual time."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpiozero import DigitalInputDevice, DigitalOutputDevice

from dermaguard.common.clock import SimClock
from dermaguard.config.params import default_case_params
from dermaguard.core.case import (
    CaseInput,
    CaseMachine,
    CaseParams,
    CaseSignal,
    DockChanged,
    SterilizeRequested,
)
from dermaguard.core.events import Event, Tick
from dermaguard.hw.case_io import CaseIO
from dermaguard.hw.hx711 import HX711, HX711Error
from dermaguard.sim.case_pins import SimCase
from dermaguard.sim.hardware import SimHardware
from dermaguard.sim.scenario import CaseEvent, CaseInitial, Scenario, load_scenario, parse_scenario
from support.case_wiring import DOCK, LID, SENSOR, UV, WIRING

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


# --- pins -----------------------------------------------------------------------------------


def test_switches_follow_the_scenario_whatever_the_pull(pin_factory: Any) -> None:
    sim = SimCase(pin_factory, SimClock(), WIRING, initial=CaseInitial(lid="closed", dock="in"))
    # gpiozero sets the pull-up when it opens the pins: a closed switch still holds them low.
    lid = DigitalInputDevice(LID, pull_up=True)
    dock = DigitalInputDevice(DOCK, pull_up=True)
    try:
        assert lid.is_active and dock.is_active
        sim.lid.set_switch(False)
        sim.dock.set_switch(False)
        assert not lid.is_active and not dock.is_active  # open: the pull-up decides
    finally:
        lid.close()
        dock.close()


def test_an_active_high_switch_closes_to_3v3(pin_factory: Any, sim_clock: SimClock) -> None:
    wiring = dataclasses.replace(
        WIRING, uv_sensor=None, lid_active_low=False, dock_active_low=False
    )
    SimCase(pin_factory, sim_clock, wiring, initial=CaseInitial(lid="closed", dock="out"))
    with CaseIO(lambda inp: None, sim_clock, wiring, cap_s=60, debounce_s=0.02) as io:
        assert io.lid_closed and not io.docked
        assert pin_factory.pin(LID).state and pin_factory.pin(LID).pull == "down"


def test_the_sensor_sees_light_only_through_the_closed_lid(pin_factory: Any) -> None:
    sim = SimCase(pin_factory, SimClock(), WIRING, initial=CaseInitial(lid="open", dock="in"))
    uv = DigitalOutputDevice(UV, initial_value=False)
    sensor = DigitalInputDevice(SENSOR)
    try:
        uv.on()  # driven, but the lid's series switch cuts the LED supply
        assert sim.uv_driven and not sim.light and not sensor.is_active
        sim.apply(0.0)
        sim.set_lid(True)
        assert sim.light and sensor.is_active
        uv.off()
        assert not sensor.is_active
    finally:
        uv.close()
        sensor.close()


def test_a_dark_sensor_fault_and_its_recovery(pin_factory: Any) -> None:
    events = (CaseEvent(1.0, "uv_sensor", "dark"), CaseEvent(2.0, "uv_sensor", "ok"))
    sim = SimCase(
        pin_factory, SimClock(), WIRING, initial=CaseInitial("closed", "in"), events=events
    )
    uv = DigitalOutputDevice(UV, initial_value=True)
    sensor = DigitalInputDevice(SENSOR)
    try:
        assert sensor.is_active
        sim.apply(1.0)
        assert not sensor.is_active and sim.light  # the LED shines; the sensor failed
        sim.apply(2.5)
        assert sensor.is_active
    finally:
        uv.close()
        sensor.close()


def test_an_active_low_sensor_is_high_when_dark(pin_factory: Any) -> None:
    wiring = dataclasses.replace(WIRING, uv_sensor_active_high=False)
    SimCase(pin_factory, SimClock(), wiring)
    sensor = DigitalInputDevice(SENSOR, pull_up=True)
    try:
        assert pin_factory.pin(SENSOR).state and not sensor.is_active
    finally:
        sensor.close()


def test_the_sim_must_own_its_pins_before_gpiozero_opens_them(pin_factory: Any) -> None:
    uv = DigitalOutputDevice(UV)
    try:
        with pytest.raises(RuntimeError, match="create the SimCase before"):
            SimCase(pin_factory, SimClock(), WIRING)
    finally:
        uv.close()


def test_requests_go_to_the_sink_with_the_clock_time(pin_factory: Any) -> None:
    clock = SimClock()
    events = (CaseEvent(3.0, "sterilize", "request"), CaseEvent(4.0, "sterilize", "request"))
    sim = SimCase(pin_factory, clock, WIRING, events=events)
    got: list[SterilizeRequested] = []
    clock.advance_to(3.0)
    sim.apply(3.0)
    assert sim.requests_dropped == 1  # nothing wired yet: dropped, and counted
    sim.request_sink = got.append
    clock.advance_to(4.0)
    sim.apply(4.0)
    assert got == [SterilizeRequested(4.0, "scenario-2")]


# --- end to end on virtual time -------------------------------------------------------------


@dataclass
class Bench:
    """Scenario → SimCase pins → CaseIO → machine → CaseIO.set_uv → pins, stepped by hand."""

    factory: Any
    scenario: Scenario
    params: CaseParams
    sensor: bool = False
    clock: SimClock = field(default_factory=SimClock)
    events: list[Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    sterile_at: dict[float, tuple[bool, int | None]] = field(default_factory=dict)

    def run(self, step: float = 0.1, probe: tuple[float, ...] = ()) -> CaseMachine:
        wiring = WIRING if self.sensor else dataclasses.replace(WIRING, uv_sensor=None)
        sim = SimCase(
            self.factory,
            self.clock,
            wiring,
            initial=self.scenario.initial,
            events=self.scenario.case,
        )
        inputs: queue.SimpleQueue[CaseInput] = queue.SimpleQueue()
        sim.request_sink = inputs.put
        machine = CaseMachine(self.params)
        with CaseIO(inputs.put, self.clock, wiring, cap_s=self.params.cap_s, debounce_s=0.0) as io:
            for inp in io.initial_inputs():
                inputs.put(inp)
            k = 0
            while (t := k * step) <= self.scenario.duration_s:
                self.clock.advance_to(t)
                sim.apply(t)
                inputs.put(Tick(t))
                while not inputs.empty():
                    up = machine.handle(inputs.get_nowait())
                    self.events.extend(up.events)
                    if up.refused:
                        self.refused.append(up.refused)
                    # The machine may lag the pins (a lid-open report still queued): then the
                    # shell refuses, and only then.
                    assert io.set_uv(up.uv_on) or not io.lid_closed
                for p in probe:
                    if abs(t - p) < step / 2:
                        self.sterile_at[p] = machine.sterility(t)
                k += 1
            assert not (io.uv_on and not io.lid_closed)
        sim.close()
        return machine

    def kinds(self) -> list[tuple[str, float, object]]:
        return [(e.type, round(e.t, 1), e.data.get("reason")) for e in self.events]


def test_scenario_sterilize_then_use(pin_factory: Any) -> None:
    bench = Bench(
        pin_factory, load_scenario(SCENARIOS / "sterilize_then_use.yaml"), default_case_params()
    )
    machine = bench.run(probe=(621.0, 623.0, 700.0))
    assert bench.kinds() == [
        ("sterilization_started", 2.0, None),
        ("sterilization_completed", 602.0, None),
    ]
    assert bench.sterile_at[621.0] == (True, 1)
    assert bench.sterile_at[623.0] == (True, 1)  # out of the dock, within the window
    assert machine.sterile_until(623.0) == pytest.approx(622.0 + 900.0, abs=0.2)
    assert not pin_factory.pin(UV).state


def test_scenario_unsterile_use(pin_factory: Any) -> None:
    bench = Bench(
        pin_factory, load_scenario(SCENARIOS / "unsterile_use.yaml"), default_case_params()
    )
    bench.run(probe=(3.0,))
    assert bench.events == []
    assert bench.sterile_at[3.0] == (False, None)


def test_scenario_lid_opened_mid_cycle(pin_factory: Any) -> None:
    bench = Bench(
        pin_factory, load_scenario(SCENARIOS / "lid_opened_mid_cycle.yaml"), default_case_params()
    )
    machine = bench.run(probe=(65.0,))
    assert bench.kinds() == [
        ("sterilization_started", 2.0, None),
        ("sterilization_aborted", 62.0, "lid_opened"),
    ]
    assert bench.sterile_at[65.0] == (False, None)
    assert machine.state == "open"


def test_s5_emulated_sensor_confirms_uv_and_its_failure_aborts_as_uv_dark(
    pin_factory: Any,
) -> None:
    text = """
    initial: {lid: open, dock: in}
    case:
      - {t: 1, lid: closed}
      - {t: 20, uv_sensor: dark}
      - {t: 40, lid: open}
    """
    scenario = parse_scenario(_yaml(text))
    params = default_case_params(uv_sensor=True, uv_confirm_s=5.0, cycle_s=600.0)
    bench = Bench(pin_factory, scenario, params, sensor=True)
    machine = bench.run()
    # Lit at once through the emulated sensor (no uv_dark at t = 6), dark at 20, abort at 25.
    assert bench.kinds() == [
        ("sterilization_started", 1.0, None),
        ("sterilization_aborted", 25.0, "uv_dark"),
    ]
    assert machine.fault is None  # cleared by opening the lid at 40


def test_opening_the_lid_with_a_sensor_aborts_as_lid_opened_not_uv_dark(
    pin_factory: Any,
) -> None:
    """The interlock darkens the sensor in the same instant: the reason must still be right."""
    text = "initial: {lid: open, dock: in}\ncase: [{t: 1, lid: closed}, {t: 30, lid: open}]\n"
    bench = Bench(
        pin_factory, parse_scenario(_yaml(text)), default_case_params(uv_sensor=True), sensor=True
    )
    bench.run()
    assert bench.kinds()[-1] == ("sterilization_aborted", 30.0, "lid_opened")


def test_a_scenario_request_starts_a_cycle_and_one_with_the_lid_open_is_refused(
    pin_factory: Any,
) -> None:
    text = """
    initial: {lid: open, dock: in}
    case:
      - {t: 1, sterilize: true}
      - {t: 2, lid: closed}
      - {t: 3, sterilize: true}
    duration_s: 5
    """
    bench = Bench(pin_factory, parse_scenario(_yaml(text)), default_case_params(auto_start=False))
    bench.run()
    assert bench.refused == ["lid_open"]
    [started] = bench.events
    assert started.type == "sterilization_started"
    assert started.data["trigger"] == "command" and started.data["request_id"] == "scenario-2"


def _yaml(text: str) -> Any:
    return yaml.safe_load(textwrap.dedent(text))


# --- SimHardware plays the case in its lockstep loop -----------------------------------------


def test_sim_hardware_plays_case_events_in_step_with_the_samples(pin_factory: Any) -> None:
    scenario = parse_scenario(
        _yaml("initial: {lid: open, dock: out}\ncase: [{t: 0.2, dock: in}]\nduration_s: 0.5\n")
    )
    sim = SimHardware(pin_factory, scenario, dout=5, sck=6, speed=50.0, case=WIRING)
    assert sim.case is not None
    seen: list[CaseSignal] = []
    io = CaseIO(seen.append, sim.clock, WIRING, cap_s=60, debounce_s=0)
    driver = HX711(5, 6)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            with contextlib.suppress(HX711Error):
                driver.read_raw(0.05)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sim.start()
        assert sim.finished.wait(10.0)
        assert io.docked
        [docked] = seen
        assert isinstance(docked, DockChanged)
        assert docked.docked and docked.t == pytest.approx(0.2, abs=1 / 80 + 1e-9)
    finally:
        stop.set()
        reader.join(2.0)
        sim.stop()
        io.close()
        driver.close()


def test_sim_hardware_without_case_wiring_keeps_working(pin_factory: Any) -> None:
    scenario = Scenario("s", "", 1.0, ((0.0, 1.0),))
    sim = SimHardware(pin_factory, scenario, dout=5, sck=6)
    assert sim.case is None
    assert sim.convert_now(1.0)
