"""The alarm path through the real shell: emulator → driver → sampler → engine → LED and buzzer.

Everything runs on gpiozero mock pins with the real threads. Waits are bounded only so a broken
build fails instead of hanging; nothing asserts on how fast things happen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dermaguard.common.clock import SimClock
from dermaguard.config.load import default_config
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.events import Command, Effect, EmitEvent, Priority, ShowIndicators
from dermaguard.daemon.app import build_engine
from dermaguard.daemon.runtime import Runtime
from dermaguard.daemon.sampler import MAX_BLIND_S
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.indicators import Indicators
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import wait_until

CONFIG = default_config()
PINS = CONFIG.pins
MODEL = LoadModel()
CAL = Calibration(offset=MODEL.offset_counts, scale_n_per_count=1 / MODEL.counts_per_newton)


class Rig:
    """A running shell on mock pins, with the chip stepped by the test in virtual time."""

    def __init__(self, factory: Any, sinks: list[Any]) -> None:
        self.clock = SimClock()
        self.chip = HX711Chip(
            factory, PINS.hx711_dout, PINS.hx711_sck, clock=self.clock, load=LoadModel()
        )
        self.driver = HX711(PINS.hx711_dout, PINS.hx711_sck, clock=self.clock)
        self.indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
        self.engine = build_engine(CONFIG, CAL)
        self.runtime = Runtime(
            self.engine, self.clock, self.indicators, self.driver, rate_sps=80, sinks=sinks
        )
        self.buzzer_pin = factory.pin(PINS.buzzer)
        self.red_pin = factory.pin(PINS.led_red)
        self.green_pin = factory.pin(PINS.led_green)
        self.blue_pin = factory.pin(PINS.led_blue)
        self.chip_plugged = True

    def step(self, force_n: float, n: int) -> None:
        """Feed ``n`` good samples at ``force_n`` (or ``n`` periods while the chip is unplugged).

        Counting good samples, not conversions, keeps the test exact when the host pauses the
        reader mid-pulse and the chip resets (it then settles for a few periods).
        """
        target = self.runtime.sampler.samples + n
        for _ in range(n * 40):
            self.clock.advance(1 / 80)
            self.chip.force_n = force_n
            seen = self._outcomes()
            if self.chip.convert():
                self.chip.wait_read(2.0)
                wait_until(lambda seen=seen: self._outcomes() > seen, 1.0)
            if self.runtime.sampler.samples >= target:
                return
            if not self.chip_plugged and _ >= n:
                return

    def _outcomes(self) -> int:
        return self.runtime.sampler.samples + self.runtime.sampler.discarded

    def close(self) -> None:
        self.runtime.stop()
        self.indicators.close()
        self.driver.close()
        self.chip.close()


@pytest.fixture
def rig_factory(pin_factory: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(sinks: list[Any] | None = None) -> Rig:
        rig = Rig(pin_factory, sinks or [])
        rigs.append(rig)
        rig.runtime.start()
        return rig

    yield make
    for rig in rigs:
        rig.close()


def sounded(pin: Any) -> bool:
    """Whether the pin was driven high since its history was last cleared."""
    return any(change.state for change in pin.states)


def flashed_red_alone(rig: Rig) -> bool:
    """Red went on and off (flashing) while green and blue stayed off: red, not yellow (which
    lights red and green) nor any zone colour."""
    red = [change.state for change in rig.red_pin.states]
    return red.count(True) >= 2 and False in red[1:] and not sounded(rig.green_pin)


def buzzer_thread_alive() -> bool:
    return any(t.name == "buzzer" and t.is_alive() for t in threading.enumerate())


RUNTIME_THREADS = ("engine", "sampler", "ticker")
#: Commands queued just before a stop: more than the engine answers while ``stop`` does its own
#: work, far fewer than it answers in the time ``stop`` waits for it.
BACKLOG = 5000


def running(rig: Rig) -> list[str]:
    """The runtime's threads that still run."""
    return [name for name in RUNTIME_THREADS if rig.runtime.alive(name)]


def lit(rig: Rig) -> list[str]:
    """The LED and buzzer pins that are high, or a pattern still playing on them."""
    pins = {"red": rig.red_pin, "green": rig.green_pin, "blue": rig.blue_pin}
    on = [name for name, pin in {**pins, "buzzer": rig.buzzer_pin}.items() if pin.state]
    if buzzer_thread_alive():
        on.append("buzzer pattern")
    if rig.indicators.led.is_active:
        on.append("LED pattern")
    return on


def in_use(rig: Rig, force_n: float) -> None:
    """The roller out of its dock and pressed at ``force_n``: a session is open."""
    rig.runtime.put(DockChanged(rig.clock.monotonic(), docked=False))
    rig.step(force_n, 6)


def event_types(seen: list[Effect]) -> list[str]:
    return [e.event.type for e in seen if isinstance(e, EmitEvent)]


def test_s6_over_pressure_alarm_is_local_when_network_and_disk_sinks_fail(
    rig_factory: Any,
) -> None:
    """Sinks standing for MQTT and the disk raise on every effect; the alarm still sounds: the
    buzzer pin is seen high and the LED flashes red (never yellow), from the pins' histories."""
    seen: list[Effect] = []

    def dead_broker(effect: Effect) -> None:
        seen.append(effect)
        raise ConnectionError("broker unreachable")

    def full_disk(effect: Effect) -> None:
        raise OSError(28, "No space left on device")

    rig = rig_factory([dead_broker, full_disk])
    rig.step(2.0, 10)
    assert wait_until(lambda: rig.engine.pressure.zones.zone == "ok")
    assert not sounded(rig.buzzer_pin)
    rig.step(6.0, 4)

    def last_shown() -> ShowIndicators | None:
        shown = [e for e in seen if isinstance(e, ShowIndicators)]
        return shown[-1] if shown else None

    # The sinks hear of an effect after the pins have shown it: wait until they have it too.
    assert wait_until(lambda: (s := last_shown()) is not None and s.alarm is Priority.HIGH)
    shown = last_shown()
    assert shown is not None and shown.alarm_reason == "over_pressure"
    assert rig.engine.pressure.over_pressure
    assert sounded(rig.buzzer_pin), "the buzzer pin never went high"
    # From here on the LED must only flash red: green and blue stay off.
    for pin in (rig.red_pin, rig.green_pin, rig.blue_pin):
        pin.clear_states()
    assert wait_until(lambda: flashed_red_alone(rig), timeout=10), (
        list(rig.red_pin.states),
        list(rig.green_pin.states),
    )
    assert not sounded(rig.green_pin) and not sounded(rig.blue_pin)
    assert rig.runtime.failed is None


def test_the_alarm_clears_and_the_buzzer_falls_silent_when_force_drops(rig_factory: Any) -> None:
    """The buzzer pin is seen sounding during the alarm, then is low with its pattern stopped."""
    events: list[str] = []
    shown: list[ShowIndicators] = []

    def sink(effect: Effect) -> None:
        if isinstance(effect, EmitEvent):
            events.append(effect.event.type)
        elif isinstance(effect, ShowIndicators):
            shown.append(effect)

    rig = rig_factory([sink])
    rig.step(6.0, 6)
    assert wait_until(lambda: "over_pressure" in events)
    assert sounded(rig.buzzer_pin), "the buzzer never sounded"
    rig.step(1.0, 20)
    assert wait_until(lambda: "over_pressure_cleared" in events)
    # Pins first, then sinks: once a sink has the alarm-free state, the pins show it.
    assert wait_until(lambda: bool(shown) and shown[-1].alarm is None)
    assert rig.buzzer_pin.state == 0 and not rig.indicators.buzzer.is_active
    assert not buzzer_thread_alive(), "the buzzer pattern still plays"


def test_s7_unplugged_sensor_raises_fault_and_shows_medium_alarm(rig_factory: Any) -> None:
    shown: list[ShowIndicators] = []
    rig = rig_factory([lambda e: shown.append(e) if isinstance(e, ShowIndicators) else None])
    rig.step(1.5, 10)
    # The limit is a few periods once the board's rate is measured (a read the host spoiled
    # starts the measurement again); until then it allows for a 10 samples/s board.
    while not rig.driver.rate_watch.known:
        rig.step(1.5, 1)
    assert rig.driver.rate_watch.problem is None
    rig.chip.unplug()
    rig.chip_plugged = False
    # Time passes with no data: the sampler's limit is kept on the virtual clock. It is three
    # periods, or up to MAX_BLIND_S if the host spoiled the last read (the chip may be settling).
    rig.step(1.5, round(MAX_BLIND_S * 80) + 1)
    assert wait_until(lambda: rig.engine.pressure.fault == "not_ready")
    assert wait_until(lambda: bool(shown) and shown[-1].alarm is Priority.MEDIUM)
    assert rig.engine.pressure.force_n is None
    rig.chip.replug()
    rig.chip_plugged = True
    rig.step(1.5, 40)
    assert wait_until(lambda: rig.engine.pressure.fault is None)


def test_s3_stop_returns_with_the_session_closed_every_thread_ended_and_the_alarm_silent(
    rig_factory: Any,
) -> None:
    """When ``Runtime.stop`` returns, the daemon closes the hardware and the history: by then the
    engine has handled what was queued before the stop and closed the session
    (``session_ended``, then ``daemon_stopping``), no runtime thread still runs, and the LED and
    buzzer are off although the over-pressure alarm was sounding."""
    seen: list[Effect] = []
    rig = rig_factory([seen.append])
    # Daemon threads: one that does not end within JOIN_S never holds up the process's exit.
    assert all(t.daemon for t in threading.enumerate() if t.name in RUNTIME_THREADS)
    in_use(rig, 6.0)
    assert wait_until(lambda: "over_pressure" in event_types(seen))
    assert running(rig) == list(RUNTIME_THREADS)
    assert event_types(seen)[0] == "daemon_started"
    assert wait_until(lambda: buzzer_thread_alive() and bool(rig.red_pin.state))
    # A backlog queued just before the stop: the engine is still busy with it when the stop
    # comes, and must have answered it all (and shut down) when the stop returns.
    t = rig.clock.monotonic()
    for i in range(BACKLOG):
        rig.runtime.put(Command(t, "ping", f"r{i}"))
    rig.runtime.stop()
    types = event_types(seen)
    assert types.count("command_result") == BACKLOG
    assert "session_ended" in types and types[-1] == "daemon_stopping", types[-5:]
    assert running(rig) == []
    assert lit(rig) == []
    assert rig.runtime.failed is None


def test_s3_a_stop_from_the_engine_thread_silences_the_alarm_and_every_thread_ends(
    rig_factory: Any,
) -> None:
    """``stop`` may come from any thread, the engine's own included (a sink): it then neither
    waits for itself nor fails, silences the alarm, and the engine ends by itself after closing
    the session."""
    seen: list[Effect] = []
    outcome: list[object] = []

    def stop_on_ping(effect: Effect) -> None:
        seen.append(effect)
        if isinstance(effect, EmitEvent) and effect.event.type == "command_result":
            try:
                rig.runtime.stop()
            except Exception as exc:  # the test's verdict, not a sink failure
                outcome.append(exc)
            else:
                outcome.append((running(rig), lit(rig)))

    rig = rig_factory([stop_on_ping])
    in_use(rig, 6.0)
    assert wait_until(lambda: buzzer_thread_alive() and "over_pressure" in event_types(seen))
    rig.runtime.put(Command(rig.clock.monotonic(), "ping", "r1"))
    assert wait_until(lambda: bool(outcome))
    assert outcome == [(["engine"], [])], outcome
    assert wait_until(lambda: running(rig) == [])
    types = event_types(seen)
    assert "session_ended" in types and types[-1] == "daemon_stopping", types[-5:]
    assert lit(rig) == []


def test_s3_after_an_internal_error_the_engine_thread_ends_by_itself(rig_factory: Any) -> None:
    """``Runtime.fail`` (the sampler or a supervisor saw the alarm path fail) stops every thread,
    the engine's too, without a shutdown: the engine's state is not trusted."""
    seen: list[Effect] = []
    rig = rig_factory([seen.append])
    rig.step(2.0, 4)
    rig.runtime.fail(RuntimeError("the alarm path failed"))
    assert wait_until(lambda: running(rig) == []), running(rig)
    assert "daemon_stopping" not in event_types(seen)


def test_s6_a_failing_output_is_logged_once_per_spell_and_again_when_it_works(
    rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An output that fails on every effect (a closed pipe at the sample rate) must not flood
    the log: one error when it starts failing, one line when it works again, one error for the
    next spell; the other outputs go on hearing every effect."""
    broken = [True]
    heard: list[Effect] = []

    def flaky(effect: Effect) -> None:
        if broken[0]:
            raise BrokenPipeError("console closed")

    rig = rig_factory([flaky, heard.append])
    runtime = rig.runtime

    def answered(*commands: str) -> None:
        for name in commands:
            runtime.put(Command(rig.clock.monotonic(), "ping", name))
        assert wait_until(
            lambda: (
                {e.event.data.get("request_id") for e in heard if isinstance(e, EmitEvent)}
                >= set(commands)
            )
        )

    with caplog.at_level(logging.INFO, logger="dermaguard.daemon.runtime"):
        answered("a1", "a2", "a3")
        broken[0] = False
        answered("b1", "b2", "b3")
        broken[0] = True
        answered("c1", "c2", "c3")
    lines = [r.getMessage() for r in caplog.records if r.name == "dermaguard.daemon.runtime"]
    failed = [line for line in lines if line.startswith("output 0 failed")]
    assert len(failed) == 2, lines
    assert lines.count("output 0 works again") == 1, lines
    assert runtime.failed is None


def test_a_failing_driver_stops_the_runtime_as_an_internal_error(rig_factory: Any) -> None:
    """A driver that raises what no read should (here: it was closed under the sampler) is our
    bug, not a sensor fault: the runtime fails (the daemon exits 70 and is restarted)."""
    rig = rig_factory()
    rig.step(1.0, 2)
    rig.driver.close()
    assert wait_until(lambda: rig.runtime.failed is not None)
    assert "closed" in str(rig.runtime.failed)
    assert wait_until(lambda: running(rig) == [])


def tickers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ticker"]


def test_the_ticker_restarts_after_it_died_and_never_while_stopping(rig_factory: Any) -> None:
    """The supervisor's restart: a dead ticker is started again (a daemon thread); a live one is
    left alone, and none is started once the runtime stops."""
    rig = rig_factory()
    runtime = rig.runtime
    first = tickers()
    runtime.restart_ticker()
    assert tickers() == first, "a live ticker was replaced"
    # Setting ``stopping`` ends the ticker (and the sampler): a dead ticker, as a crash leaves.
    runtime.stopping.set()
    assert wait_until(lambda: not runtime.alive("ticker"))
    runtime.restart_ticker()
    assert not runtime.alive("ticker"), "a ticker started while the runtime stops"
    runtime.stopping.clear()
    runtime.restart_ticker()
    assert runtime.alive("ticker")
    assert [t.daemon for t in tickers()] == [True]


class EventsOnly:
    """An output that names the effects it acts on: events."""

    effect_types = (EmitEvent,)

    def __init__(self) -> None:
        self.seen: list[Effect] = []

    def __call__(self, effect: Effect) -> None:
        self.seen.append(effect)


def test_s6_an_output_gets_only_the_effects_it_names_and_one_naming_none_gets_all(
    rig_factory: Any,
) -> None:
    """The runtime offers a sink only the effect types in its ``effect_types``: the force
    samples of every conversion skip the outputs that ignore them; a sink without the
    attribute (the plain callables above) still hears everything."""
    everything: list[Effect] = []
    events = EventsOnly()
    rig = rig_factory([events, everything.append])
    rig.step(2.0, 10)
    rig.step(6.0, 4)
    assert wait_until(lambda: "over_pressure" in event_types(everything))
    assert wait_until(lambda: "over_pressure" in event_types(events.seen))
    assert {type(e) for e in events.seen} == {EmitEvent}
    kinds = {type(e).__name__ for e in everything}
    assert {"EmitEvent", "ForceSample", "ShowIndicators", "DeviceState"} <= kinds
    # In the same order: each effect reaches the sinks in their order, the events-only first.
    heard_by_all = event_types(everything)
    assert event_types(events.seen)[: len(heard_by_all)] == heard_by_all


class NamesNoType:
    """An output whose ``effect_types`` is not a tuple of types: a wiring mistake."""

    def __init__(self, kinds: object) -> None:
        self.effect_types = kinds

    def __call__(self, effect: Effect) -> None:
        raise AssertionError("never offered anything")


@pytest.mark.parametrize("kinds", [EmitEvent, (), ("EmitEvent",), [EmitEvent]])
def test_s6_an_output_naming_its_effects_wrongly_is_refused_when_the_runtime_is_built(
    rig_factory: Any, kinds: object
) -> None:
    """Found on the engine thread at the first effect, a malformed ``effect_types`` would stop
    the daemon mid-session; the runtime refuses it where it is wired, naming the output."""
    rig = rig_factory([])
    with pytest.raises(TypeError, match=r"output 1 \(NamesNoType\): effect_types must be"):
        Runtime(
            rig.engine,
            rig.clock,
            rig.indicators,
            rig.driver,
            rate_sps=80,
            sinks=[EventsOnly(), NamesNoType(kinds)],
        )


def test_s3_stop_returns_only_once_the_engine_has_applied_its_last_effects(
    rig_factory: Any,
) -> None:
    """``Runtime.stop`` waits for the engine thread's shutdown (the cycle aborted, the session
    closed, ``daemon_stopping``) to reach the sinks: what the daemon does after it (flushing the
    history, draining MQTT) must find them there. A sink that takes its time over the last
    event shows it: ``stop`` returns only after that sink has."""
    done = threading.Event()

    def slow_on_the_last_event(effect: Effect) -> None:
        if isinstance(effect, EmitEvent) and effect.event.type == "daemon_stopping":
            threading.Event().wait(0.3)  # a sink's slow moment, off the alarm's time
            done.set()

    rig = rig_factory([slow_on_the_last_event])
    rig.step(2.0, 4)
    rig.runtime.stop()
    assert done.is_set(), "stop returned before the engine's last effects were applied"
