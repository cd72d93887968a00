"""S3 at the UV pin through the daemon's own code: its signal handlers, an engine thread that
raises, and the assembly that creates the UV output before anything else.

tests/hw/test_case_io.py proves the fail-safe hooks of ``CaseIO`` in a child process; these
tests close the gaps docs/ARCHITECTURE.md ("Safety rules") named: the handler the daemon
installs (``daemon/run.py``), the lock-out in ``Runtime._fail`` and the order in
``daemon/app.open_hardware``. Everything runs on gpiozero mock pins; waits are bounded only so a
broken build fails instead of hanging.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from gpiozero.pins.mock import MockFactory
from pytest_mock import MockerFixture

from dermaguard.common.clock import RealClock, SimClock
from dermaguard.config.load import default_config, parse_config
from dermaguard.config.params import default_case_params, default_engine_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged, LidChanged
from dermaguard.core.engine import Engine
from dermaguard.core.events import Command, EmitEvent, Event
from dermaguard.daemon import app, load_cell
from dermaguard.daemon.app import build_engine, open_case
from dermaguard.daemon.run import stop_on_signals
from dermaguard.daemon.runtime import Runtime
from dermaguard.hw.case_io import CaseIO
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.hx711_protocol import NotReady
from dermaguard.hw.indicators import Indicators
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import wait_until

CONFIG = default_config()
PINS = CONFIG.pins
MODEL = LoadModel()
CAL = Calibration(offset=MODEL.offset_counts, scale_n_per_count=1 / MODEL.counts_per_newton)


def shut_lid_and_dock(factory: Any) -> None:
    """The switches as they read with the lid shut and a roller in the dock."""
    case = CONFIG.case
    lid, dock = factory.pin(PINS.lid), factory.pin(PINS.dock)
    lid.drive_low() if case.lid_active_low else lid.drive_high()
    dock.drive_low() if case.dock_active_low else dock.drive_high()


@pytest.fixture
def case(pin_factory: Any) -> Iterator[CaseIO]:
    with open_case(CONFIG, SimClock(), pin_factory) as io:
        yield io


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_s3_the_daemons_signal_handler_switches_uv_off_at_the_pin(
    pin_factory: Any, case: CaseIO, signum: signal.Signals
) -> None:
    uv = pin_factory.pin(PINS.uv_led)
    shut_lid_and_dock(pin_factory)
    assert case.set_uv(True) and uv.state
    stop = threading.Event()
    before = signal.getsignal(signum)
    # The daemon passes CaseIO.lock_out (through install_uv_failsafe, which only adds a guard).
    with stop_on_signals(stop, case.lock_out):
        signal.raise_signal(signum)  # Python runs the handler before the next line
        assert not uv.state
        assert stop.is_set()
        # Locked out: the engine's shutdown, which runs next, cannot switch UV back on.
        assert case.set_uv(True) is False and not uv.state
    assert signal.getsignal(signum) is before


@contextmanager
def uv_on_in_a_cycle(pin_factory: Any, case: CaseIO) -> Iterator[tuple[Runtime, Any]]:
    """The daemon's runtime on the emulated chip, with a cycle running and the UV pin high."""
    clock = SimClock()
    chip = HX711Chip(pin_factory, PINS.hx711_dout, PINS.hx711_sck, clock=clock, load=MODEL)
    driver = HX711(PINS.hx711_dout, PINS.hx711_sck)
    indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
    runtime = Runtime(build_engine(CONFIG, CAL), clock, indicators, driver, case, rate_sps=80)
    case.set_sink(runtime.put)
    uv = pin_factory.pin(PINS.uv_led)
    try:
        runtime.start()
        shut_lid_and_dock(pin_factory)  # the default case starts a cycle on its own
        assert wait_until(lambda: bool(uv.state)), "the cycle never switched UV on"
        yield runtime, uv
    finally:
        runtime.stop()
        indicators.close()
        driver.close()
        chip.close()


def test_s3_an_exception_in_the_engine_thread_locks_uv_out_at_the_pin(
    pin_factory: Any, case: CaseIO, caplog: pytest.LogCaptureFixture
) -> None:
    with uv_on_in_a_cycle(pin_factory, case) as (runtime, uv):
        # A bug anywhere upstream: an input the engine cannot handle raises in its thread.
        runtime.put(cast(Any, object()))
        assert wait_until(lambda: runtime.failed is not None)
        assert not uv.state
        assert isinstance(runtime.failed, AttributeError)
        assert case.set_uv(True) is False and not uv.state
        assert "internal error, stopping" in caplog.text


def test_s3_stopping_the_runtime_locks_uv_out_at_the_pin(
    pin_factory: Any, case: CaseIO, caplog: pytest.LogCaptureFixture
) -> None:
    """``Runtime.stop`` locks UV out before the engine shuts down: nothing still queued (a
    request, a late lid edge) can switch it back on while the daemon stops."""
    with uv_on_in_a_cycle(pin_factory, case) as (runtime, uv):
        assert "refused" not in caplog.text  # the output took the engine's "on"
        runtime.stop()
        assert not uv.state
        assert case.set_uv(True) is False and not uv.state, "UV not locked out by the stop"


def test_a_case_shut_and_docked_before_the_start_takes_a_sterilize_request(
    pin_factory: Any, case: CaseIO
) -> None:
    """The start hands the engine the switches as they read (no edge comes for a lid shut
    before the daemon started): a sterilize request is then accepted and switches UV on."""
    shut_lid_and_dock(pin_factory)
    clock = SimClock()
    chip = HX711Chip(pin_factory, PINS.hx711_dout, PINS.hx711_sck, clock=clock, load=MODEL)
    driver = HX711(PINS.hx711_dout, PINS.hx711_sck)
    indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
    runtime = Runtime(build_engine(CONFIG, CAL), clock, indicators, driver, case, rate_sps=80)
    case.set_sink(runtime.put)
    uv = pin_factory.pin(PINS.uv_led)
    try:
        runtime.start()
        runtime.put(Command(clock.monotonic(), "sterilize", "r1"))
        assert wait_until(lambda: bool(uv.state)), "the request was refused"
    finally:
        runtime.stop()
        indicators.close()
        driver.close()
        chip.close()


class _Bus:
    """The SPI bus of a Pi, as far as the assembly can tell: no chip answers."""

    def transfer(self, data: list[int]) -> list[int]:
        return [0xFF] * len(data)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("interface", ["spi", "gpio"])
def test_s3_the_assembly_creates_the_uv_output_first_and_off(
    mocker: MockerFixture, interface: str
) -> None:
    factory = MockFactory()  # stands for the Pi's GPIO backend (the OS edge)
    mocker.patch.object(app, "real_pin_factory", return_value=factory)
    mocker.patch.object(load_cell, "open_spi", return_value=_Bus())
    hw = app.open_hardware(parse_config({"hx711": {"interface": interface}}), None, 1.0)
    try:
        created = list(factory.pins.values())
        assert len(created) > 3  # the case, the load cell and the indicators all opened
        assert created[0] is factory.pin(PINS.uv_led)
        assert not created[0].state
    finally:
        hw.close()
        factory.close()


class _HungADC:
    """A load cell whose read never returns (a driver stuck in the kernel): no sample, no
    timeout, nothing from the sampler until the test lets it go."""

    interface, gain, rate_sps, settle_s, may_be_settling = "spi", 128, 80, 0.05, False
    reads = discarded = timeouts = 0

    def __init__(self) -> None:
        self.release = threading.Event()

    def read_raw(self, timeout_s: float, *, exact_timeout: bool = False) -> int:
        self.release.wait()
        raise NotReady("released")

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self.release.set()


def test_the_case_timers_run_while_the_sampler_is_stuck(pin_factory: Any) -> None:
    """The ticker, not the samples, keeps time for the case: with the sampler stuck in a read,
    a cycle whose UV is never reported driven still ends (``uv_not_driven``) on time."""
    params = default_engine_params(case=default_case_params(uv_confirm_s=0.3, lid_contact=False))
    events: list[Event] = []
    done = threading.Event()

    def sink(effect: object) -> None:
        if isinstance(effect, EmitEvent):
            events.append(effect.event)
            if effect.event.type == "sterilization_aborted":
                done.set()

    driver = _HungADC()
    indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
    clock = RealClock()
    runtime = Runtime(
        Engine(params, CAL), clock, indicators, cast(Any, driver), rate_sps=80, sinks=[sink]
    )
    try:
        runtime.start()
        runtime.put(DockChanged(clock.monotonic(), True))
        runtime.put(LidChanged(clock.monotonic(), True))
        assert done.wait(30.0), [e.type for e in events]  # a bound, so a broken build fails
        [aborted] = [e for e in events if e.type == "sterilization_aborted"]
        assert aborted.data["reason"] == "uv_not_driven"
    finally:
        driver.close()
        runtime.stop()
        indicators.close()
