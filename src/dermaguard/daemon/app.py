"""Assembling the daemon from a config: hardware (real or simulated), engine and runtime."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from gpiozero import Device

from dermaguard import __version__
from dermaguard.common.clock import Clock, RealClock
from dermaguard.common.line_writer import LineWriter
from dermaguard.config.calibration_file import (
    CalibrationFileError,
    load_calibration,
    save_calibration,
)
from dermaguard.config.load import Config, simulation_config
from dermaguard.config.params import case_params, engine_params
from dermaguard.core.calibration import Calibration, parse_reference
from dermaguard.core.engine import Engine, History
from dermaguard.core.events import Effect, SaveCalibration
from dermaguard.core.filters import build_filter
from dermaguard.daemon.calibrate import add_reference, tare
from dermaguard.daemon.console import ConsolePrinter
from dermaguard.daemon.load_cell import chip_pins, open_load_cell
from dermaguard.daemon.runtime import Runtime
from dermaguard.daemon.sd_notify import Notifier, ServiceHeartbeat
from dermaguard.daemon.status_file import STATUS_NAME, StatusFile
from dermaguard.hw.case_io import CaseIO, CaseWiring, install_uv_failsafe
from dermaguard.hw.hx711_protocol import LoadCellADC, NotReady
from dermaguard.hw.indicators import Indicators
from dermaguard.hw.pins import install_pin_factory, real_pin_factory
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.discovery import MODEL
from dermaguard.mqtt.settings import MqttSettingsError, settings_from_config
from dermaguard.sim.hardware import SimHardware
from dermaguard.sim.pins import mock_factory
from dermaguard.sim.scenario import Scenario
from dermaguard.store import Store, StoreError, StoreSink

log = logging.getLogger(__name__)

SIM_REFERENCE = "500g"
SWITCH_INTERVAL_S = 0.05


class StartupError(Exception):
    """The daemon cannot start for a reason a person can fix; the message says how."""


def build_engine(
    config: Config, calibration: Calibration, history: History | None = None
) -> Engine:
    spike = tuple(build_filter(f.kind, f.window, f.alpha) for f in config.pressure.spike_filters)
    smoothing = tuple(
        build_filter(f.kind, f.window, f.alpha) for f in config.pressure.smoothing_filters
    )
    return Engine(engine_params(config), calibration, spike, smoothing, history)


DB_NAME = "dermaguard.db"


def store_path(config: Config, *, simulated: bool) -> Path:
    """The history database: the simulation's lives apart from the device's."""
    base = simulation_state_dir(config) if simulated else config.resolved_state_dir()
    return base / DB_NAME


def open_history(config: Config, *, simulated: bool, wall: float) -> tuple[Store, History]:
    """Open the store, close sessions a crash left open, and read what the engine needs."""
    store = Store.open(
        store_path(config, simulated=simulated), config.device_id, publish=config.mqtt.enabled
    )
    try:
        closed = store.close_interrupted(wall)
        if closed:
            log.warning(
                "sessions left open by a crash or power cut closed as interrupted: %s", closed
            )
        last = store.last_session()
        ended = last.get("ended_wall") if last else None
        roller_id, uses = store.current_roller(wall)
        history = History(
            last_session_no=store.last_session_no(),
            last_session_end_wall=float(ended) if ended is not None else None,
            roller_id=roller_id,
            roller_uses=uses,
            last_cycle_id=store.last_cycle_id(),
        )
    except BaseException:
        store.close()
        raise
    return store, history


def simulation_state_dir(config: Config) -> Path:
    """Simulation keeps its own state, so it never overwrites a real calibration or history."""
    return config.resolved_state_dir() / "simulation"


@dataclass
class Hardware:
    clock: Clock
    driver: LoadCellADC
    indicators: Indicators
    case: CaseIO
    sim: SimHardware | None

    def close(self) -> None:
        self.case.lock_out()
        if self.sim is not None:
            self.sim.stop()
        self.indicators.close()
        self.driver.close()
        self.case.close()


def case_wiring(config: Config) -> CaseWiring:
    pins, case = config.pins, config.case
    return CaseWiring(
        lid=pins.lid,
        dock=pins.dock,
        uv_led=pins.uv_led,
        uv_sensor=pins.uv_sensor,
        lid_active_low=case.lid_active_low,
        dock_active_low=case.dock_active_low,
        uv_active_high=case.uv_active_high,
    )


def open_case(config: Config, clock: Clock) -> CaseIO:
    """The case's devices, UV output first and off (S3); inputs go nowhere until wired.

    Pins and active levels come from :func:`case_wiring`, the same description the simulated
    case pins are built from, so the two can never disagree.
    """
    io = CaseIO(
        lambda _signal: None,
        clock,
        cap_s=case_params(config).cap_s,
        debounce_s=config.case.debounce_s,
        **dataclasses.asdict(case_wiring(config)),
    )
    io.force_off()
    return io


def open_hardware(config: Config, scenario: Scenario | None, speed: float) -> Hardware:
    """Choose the pin backend once for the process, then create the devices on it.

    The UV-C output is created and driven off before any other device (S3).
    """
    pins = config.pins
    sim: SimHardware | None = None
    clock: Clock
    if scenario is not None:
        factory = mock_factory()
        install_pin_factory(factory)
        # The emulated chip must own its pins before the driver opens them.
        dout, sck = chip_pins(config)
        sim = SimHardware(
            factory,
            scenario,
            dout=dout,
            sck=sck,
            rate_sps=config.hx711.rate_sps,
            gain=config.hx711.gain,
            speed=speed,
            case=case_wiring(config),
            bus_hz=config.hx711.spi.hz,
            bus_mode=config.hx711.spi.mode,
        )
        clock = sim.clock
    else:
        factory = real_pin_factory()
        install_pin_factory(factory)
        clock = RealClock()
    case = open_case(config, clock)
    try:
        driver = open_load_cell(config, factory, clock, sim)
    except BaseException:
        case.lock_out()
        case.close()
        if sim is not None:
            sim.stop()
        raise
    indicators = Indicators(
        pins.led_red,
        pins.led_green,
        pins.led_blue,
        pins.buzzer,
        led_active_high=config.alarm.led_active_high,
        buzzer_active_high=config.alarm.buzzer_active_high,
        buzzer_enabled=config.alarm.buzzer,
    )
    return Hardware(clock, driver, indicators, case, sim)


def sim_read(hw: Hardware, force_n: float) -> int:
    """One emulated conversion read through the real driver, stepping virtual time.

    Calibration reads the emulator step by step rather than in real time; after a reset the
    chip needs some periods to settle, so step until it has data (bounded).
    """
    sim = hw.sim
    assert sim is not None
    for _ in range(int(sim.chip.settle_s / sim.period) + 8):
        if sim.convert_now(force_n):
            return hw.driver.read_raw(1.0)
    raise NotReady("the emulated HX711 never became ready")


def calibrate_simulation(
    hw: Hardware, path: Path, gain: int, out: TextIO | LineWriter
) -> Calibration:
    """Calibrate against the emulated load cell with the real procedure: tare, then 500 g."""
    sim = hw.sim
    assert sim is not None
    load = 0.0

    def read() -> int:
        return sim_read(hw, load)

    tare(path, read, 40, gain)
    load = parse_reference(SIM_REFERENCE)
    cal = add_reference(path, read, SIM_REFERENCE, 40)
    sim.chip.force_n = 0.0
    out.write(f"simulation: calibrated the emulated load cell (tare, then {SIM_REFERENCE})\n")
    return cal


def load_or_make_calibration(config: Config, hw: Hardware, out: TextIO | LineWriter) -> Calibration:
    if hw.sim is not None:
        path = simulation_state_dir(config) / "calibration.json"
        try:
            cal = load_calibration(path)
            if cal.is_complete and cal.gain == config.hx711.gain:
                return cal
        except CalibrationFileError:
            pass
        return calibrate_simulation(hw, path, config.hx711.gain, out)
    path = config.calibration_path()
    try:
        cal = load_calibration(path)
    except CalibrationFileError as exc:
        raise StartupError(str(exc)) from exc
    if not cal.is_complete:
        raise StartupError(
            f"{path} holds a tare but no reference weight: run "
            "`dermaguard calibrate --reference 200g` with a known weight on the roller"
        )
    if cal.gain != config.hx711.gain:
        raise StartupError(
            f"{path} was made at gain {cal.gain} but hx711.gain is {config.hx711.gain}: "
            "calibrate again"
        )
    return cal


#: At shutdown, how long the outbox may take to deliver what is still waiting.
MQTT_FLUSH_S = 3.0


def open_mqtt(
    config: Config,
    db_path: Path,
    clock: Clock,
    *,
    simulated: bool = False,
) -> MqttBridge | None:
    """The MQTT bridge, or ``None`` when MQTT is off. Bad settings stop the start-up."""
    if not config.mqtt.enabled:
        log.info(
            "MQTT is off (mqtt.enabled: false): this run's events stay in the local history "
            "and are never published, not even when MQTT is on again"
        )
        return None
    try:
        settings = settings_from_config(config)
    except MqttSettingsError as exc:
        raise StartupError(str(exc)) from exc
    name, model = f"dermaguard {config.device_id}", MODEL
    if simulated:
        name, model = f"{name} (simulation)", f"{MODEL} (simulation)"
    return MqttBridge(
        settings,
        db_path=db_path,
        device_name=name,
        model=model,
        sw_version=__version__,
        wall=clock.wall,
        monotonic=clock.monotonic,
    )


def close_mqtt(bridge: MqttBridge, sink: StoreSink) -> None:
    """Shutdown: commit the last events (daemon_stopping), let the outbox deliver them for a
    bounded time, then say offline. What is left is replayed at the next start."""
    sink.flush(timeout=5.0)
    if bridge.connected and not bridge.drain(MQTT_FLUSH_S):
        log.warning("MQTT: not every event was delivered before exit; they go at the next start")
    bridge.close()


def calibration_file(config: Config, *, simulated: bool) -> Path:
    return (
        simulation_state_dir(config) / "calibration.json"
        if simulated
        else config.calibration_path()
    )


class CalibrationSaver:
    """Writes a calibration changed by a command (a tare) to its file, off the engine thread:
    an fsync on an SD card can take longer than the alarm path may wait."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, effect: Effect) -> None:
        if isinstance(effect, SaveCalibration):
            threading.Thread(
                target=self._save, args=(effect.calibration,), name="save-calibration"
            ).start()

    def _save(self, cal: Calibration) -> None:
        with self._lock:
            try:
                save_calibration(self.path, cal)
            except OSError as exc:
                log.error("the new tare could not be saved to %s: %s", self.path, exc)


def service_status(status: StatusFile, bridge: MqttBridge | None) -> str:
    """One line for ``systemctl status``: what the device does and whether MQTT is up."""
    mqtt = (
        "MQTT off"
        if bridge is None
        else ("MQTT connected" if bridge.connected else "MQTT not connected")
    )
    return f"{status.summary()}; {mqtt}"


@contextmanager
def stop_on_signals(stop: threading.Event, uv_off: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT switch UV off at once (S3), then ask for a clean stop (exit 0)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        uv_off()
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_daemon(config: Config, scenario: Scenario | None, speed: float, out: TextIO) -> int:
    """Run until the scenario ends (simulation) or a signal arrives; returns the exit code."""
    if config.hx711.interface == "gpio":
        # Bit-banged from Python, the chip powers down if PD_SCK stays high over 60 µs. At the
        # default 5 ms switch interval the interpreter hands the GIL to any waiting thread in
        # the middle of a pulse, which stretched a high phase past the limit in a few percent
        # of reads under load. Every thread here blocks on its own after a short burst, so a
        # long interval costs no responsiveness and keeps each read in one piece. On the SPI
        # bus a read is one transfer that the controller clocks, so none of this is needed.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    if scenario is not None:
        config = simulation_config(config)  # never poses as the real device
    hw = open_hardware(config, scenario, speed)
    uv_off = install_uv_failsafe(hw.case.lock_out)
    sink: StoreSink | None = None
    bridge: MqttBridge | None = None
    notifier = Notifier.from_environ()  # under systemd (Type=notify) only
    heartbeat: ServiceHeartbeat | None = None
    console = LineWriter(out)  # never lets a blocked or closed stdout stop the engine thread
    try:
        cal = load_or_make_calibration(config, hw, console)
        try:
            store, history = open_history(
                config, simulated=scenario is not None, wall=hw.clock.wall()
            )
        except StoreError as exc:
            raise StartupError(str(exc)) from exc
        last_stored = store.last_event_wall()
        if hw.sim is not None and last_stored is not None:
            hw.sim.clock.resume_after(last_stored)  # never before what an earlier run stored

        def storage_fault(message: str | None) -> None:
            if message is None:
                log.warning("history storage works again")
            else:
                log.error("history storage failing (kept in memory, retrying): %s", message)

        bridge = open_mqtt(
            config,
            store_path(config, simulated=scenario is not None),
            hw.clock,
            simulated=scenario is not None,
        )
        sink = StoreSink(
            store,
            hw.clock.wall,
            on_fault=storage_fault,
            on_stored=bridge.on_stored if bridge is not None else None,
            trace_hz=config.session.trace_hz,
        )
        engine = build_engine(config, cal, history)
        printer = ConsolePrinter(hw.clock.monotonic(), console)
        status = StatusFile(
            store_path(config, simulated=scenario is not None).parent / STATUS_NAME,
            hw.clock.wall,
        )
        runtime = Runtime(
            engine,
            hw.clock,
            hw.indicators,
            hw.driver,
            hw.case,
            rate_sps=config.hx711.rate_sps,
            timeout_periods=config.hx711.ready_timeout_periods,
            sinks=[
                printer,
                sink,
                status,
                CalibrationSaver(calibration_file(config, simulated=scenario is not None)),
                *([bridge] if bridge is not None else []),
            ],
        )
        if bridge is not None:
            bridge.bind(put_command=runtime.put, mark_delivered=sink.mark_delivered)
        hw.case.set_sink(runtime.put)
        if hw.sim is not None and hw.sim.case is not None:
            hw.sim.case.request_sink = runtime.put
        stop = threading.Event()
        with stop_on_signals(stop, uv_off):
            if bridge is not None:
                bridge.start()
            runtime.start()
            if notifier is not None:
                heartbeat = ServiceHeartbeat(
                    notifier, lambda: runtime.sampler.cycles, lambda: service_status(status, bridge)
                )
                heartbeat.start()
            if hw.sim is not None:
                hw.sim.start()
            while not stop.is_set() and not runtime.stopping.is_set():
                if hw.sim is not None and hw.sim.finished.is_set():
                    break
                stop.wait(0.1)
            if heartbeat is not None:
                heartbeat.stop("stopping: closing the session, writing history, sending events")
            runtime.stop()
            if bridge is not None:
                close_mqtt(bridge, sink)
                bridge = None
        status.close()
        if runtime.failed is None and hw.sim is not None and scenario is not None:
            if hw.sim.finished.is_set():
                console.write(
                    f"simulation finished: {scenario.duration_s:g} s of scenario, "
                    f"{runtime.sampler.samples} samples\n"
                )
            else:
                console.write(
                    f"simulation stopped after {hw.sim.played_s:.0f} s of the "
                    f"{scenario.duration_s:g} s scenario\n"
                )
        console.close()
        if runtime.failed is not None:
            return 70  # EX_SOFTWARE: our bug, logged with its traceback
        if console.error is not None:
            log.error("standard output failed, part of the output is missing: %s", console.error)
            return 1
        return 0
    finally:
        console.close()
        if heartbeat is not None:
            heartbeat.stop()
        if bridge is not None:
            bridge.close(timeout=0.5)
        if sink is not None and not sink.close(timeout=10.0):
            log.error("history: not everything could be written before exit")
        hw.close()
        Device.pin_factory = None
        if notifier is not None:
            notifier.close()
