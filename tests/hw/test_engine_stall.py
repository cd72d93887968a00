"""A stalled engine thread through the real runtime: the watchdog starves, the queue holds.

The engine is blocked at an edge, a sink that waits on an event, as a stuck output would block
it. The sampler keeps turning on the real SPI driver (the emulated chip stays silent and the
virtual clock stands still, so it reports nothing) and force samples are queued as the sampler
queues them. The heartbeat's decisions are checked with :meth:`ServiceHeartbeat.tick` at chosen
times, never by waiting for a timer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.config.load import default_config
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import LidChanged
from dermaguard.core.events import (
    Command,
    Effect,
    EmitEvent,
    Event,
    ForceRead,
    ForceSample,
)
from dermaguard.daemon.app import build_engine
from dermaguard.daemon.load_cell import chip_pins, open_load_cell
from dermaguard.daemon.runtime import Runtime
from dermaguard.daemon.sd_notify import (
    ENGINE_STALL_S,
    Notifier,
    ServiceHeartbeat,
    engine_verdict,
)
from dermaguard.hw.indicators import Indicators
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.sim.spi_bus import SimSpiBus
from support.waiting import wait_until

CONFIG = default_config()
PINS = CONFIG.pins
MODEL = LoadModel()
CAL = Calibration(offset=MODEL.offset_counts, scale_n_per_count=1 / MODEL.counts_per_newton)
BOUND = 16
#: A light touch (1 N): valid, no alarm.
RAW_1N = int(MODEL.offset_counts + MODEL.counts_per_newton)


class BlockingSink:
    """Records events; once armed, blocks the engine thread on the next force sample."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.armed = threading.Event()
        self.blocked = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, effect: Effect) -> None:
        if isinstance(effect, EmitEvent):
            with self._lock:
                self.events.append(effect.event)
        if isinstance(effect, ForceSample) and self.armed.is_set():
            self.armed.clear()
            self.blocked.set()
            assert self.release.wait(30.0), "the test never released the engine"

    def of(self, etype: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.type.value == etype]


class Rig:
    def __init__(self, factory: Any) -> None:
        self.clock = SimClock()
        dout, _ = chip_pins(CONFIG)
        self.chip = HX711Chip(factory, dout, None, clock=self.clock, load=MODEL)
        spi = CONFIG.hx711.spi
        self.bus = SimSpiBus(self.chip, hz=spi.hz, mode=spi.mode)
        self.driver = open_load_cell(CONFIG, factory, self.clock, bus=self.bus)
        self.indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
        self.engine = build_engine(CONFIG, CAL)
        self.sink = BlockingSink()
        self.runtime = Runtime(
            self.engine,
            self.clock,
            self.indicators,
            self.driver,
            rate_sps=80,
            sinks=[self.sink],
            queue_bound=BOUND,
        )
        self.n = 0

    def sample(self) -> None:
        """One force sample, queued as the sampler queues it."""
        self.n += 1
        self.runtime.put(ForceRead(self.clock.monotonic(), RAW_1N))

    def handled_all(self) -> bool:
        return (
            self.runtime.inputs.qsize() == 0 and self.runtime.inputs.progress().busy_since is None
        )

    def close(self) -> None:
        self.sink.release.set()
        self.runtime.stop()
        self.indicators.close()
        self.driver.close()
        self.chip.close()


@pytest.fixture
def rig(pin_factory: Any) -> Iterator[Rig]:
    r = Rig(pin_factory)
    r.runtime.start()
    try:
        yield r
    finally:
        r.close()


def test_a_stalled_engine_starves_the_watchdog_bounds_its_queue_and_loses_no_switch_change(
    rig: Rig,
) -> None:
    runtime = rig.runtime
    notifier = Notifier("@dermaguard-unused", watchdog_interval_s=0.2)
    hb = ServiceHeartbeat(
        notifier,
        lambda: runtime.sampler.cycles,
        lambda: "running",
        engine=runtime.inputs.progress,
        interval_s=0.1,
    )

    def sampler_turns() -> None:
        cycles = runtime.sampler.cycles
        assert wait_until(lambda: runtime.sampler.cycles > cycles), "the sampler stopped"

    # Healthy: samples flow, the engine keeps up, the watchdog is fed.
    for _ in range(5):
        rig.sample()
    assert wait_until(rig.handled_all)
    assert hb.tick(0.0) == []  # the baseline
    sampler_turns()
    assert hb.tick(0.1) == ["READY=1", "STATUS=running"]
    sampler_turns()
    assert hb.tick(0.2) == ["WATCHDOG=1"]

    # The engine blocks in an output on the next sample.
    rig.sink.armed.set()
    rig.sample()
    assert rig.sink.blocked.wait(5.0)
    stuck_at = runtime.inputs.progress().busy_since
    assert stuck_at is not None
    sampler_turns()
    assert hb.tick(stuck_at + ENGINE_STALL_S / 2) == ["WATCHDOG=1"]  # not stuck for long yet
    sampler_turns()
    assert hb.tick(stuck_at + ENGINE_STALL_S + 0.1) == []  # the sampler turns: not enough

    # Three times the bound of samples arrive, with a lid opening and a command among them.
    for i in range(3 * BOUND):
        rig.sample()
        if i == BOUND + 3:
            runtime.put(LidChanged(rig.clock.monotonic(), closed=True))
            runtime.put(Command(rig.clock.monotonic(), "silence", request_id="r1"))
        assert runtime.inputs.samples_waiting <= BOUND
    assert runtime.inputs.peak == BOUND
    assert runtime.inputs.dropped == 2 * BOUND
    assert "queue is full" in engine_verdict(runtime.inputs.progress(), stuck_at)
    sampler_turns()
    assert hb.tick(stuck_at + 10.0) == []

    # The engine runs again: the switch change and the command are handled, the stall is a
    # sensor fault that clears with good samples, and the watchdog is fed again.
    rig.sink.release.set()
    assert wait_until(rig.handled_all)
    assert rig.engine.case.lid_reed  # the reed switch change was handled
    assert [e.data.get("request_id") for e in rig.sink.of("command_result")] == ["r1"]
    fault = rig.sink.of("sensor_fault")
    assert [e.data["reason"] for e in fault] == ["engine_stalled"]
    for _ in range(CONFIG.pressure.valid_samples_for_recovery):
        rig.sample()
    assert wait_until(lambda: rig.sink.of("sensor_recovered"))
    assert rig.sink.of("sensor_recovered")[0].data["after"] == "engine_stalled"
    assert runtime.inputs.dropped == 2 * BOUND  # nothing more dropped once it kept up
    assert "32 force samples dropped" in runtime.inputs.summary()
    sampler_turns()
    assert hb.tick(stuck_at + 20.0) == ["WATCHDOG=1"]
    assert runtime.failed is None
