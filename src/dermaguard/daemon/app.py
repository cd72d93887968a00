"""The daemon's assembly from a config: hardware (real or simulated), history, MQTT, calibration.

This is the one module that chooses between the real hardware and the simulator
(docs/ARCHITECTURE.md, Layers): it imports ``dermaguard.sim`` only inside the simulated path, so
a run on the device never loads the simulator. Everything above it (the run loop in
:mod:`dermaguard.daemon.run`, the ui) gets scenarios and simulated hardware from here and never
imports ``dermaguard.sim`` itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from dermaguard import __version__
from dermaguard.common.clock import Clock, RealClock
from dermaguard.common.line_writer import LineWriter
from dermaguard.config.calibration_file import CalibrationFileError, load_calibration
from dermaguard.config.load import Config
from dermaguard.config.params import case_params, engine_params, filter_chains
from dermaguard.config.paths import calibration_file
from dermaguard.core.calibration import Calibration, parse_reference
from dermaguard.core.engine import Engine, History
from dermaguard.daemon.calibrate import add_reference, tare
from dermaguard.daemon.load_cell import chip_pins, open_load_cell
from dermaguard.hw.case_io import CaseIO, CaseWiring
from dermaguard.hw.hx711_protocol import HX711Error, LoadCellADC, NotReady
from dermaguard.hw.indicators import Indicators
from dermaguard.hw.pins import install_pin_factory, real_pin_factory
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.discovery import MODEL, device_name
from dermaguard.mqtt.settings import MqttSettingsError, settings_from_config
from dermaguard.store import Store, StoreError, StoreReader, StoreSink, open_readonly
from dermaguard.store.db import StoreCorrupt, StoreUnavailable, classify, set_aside

if TYPE_CHECKING:
    from dermaguard.sim import scenario as _scenario
    from dermaguard.sim.hardware import SimHardware

#: A simulation's scenario, under the name the modules above use: they take scenarios from here
#: (:func:`load_scenario`, :func:`steady_scenario`) and may not import ``dermaguard.sim``.
Scenario: TypeAlias = "_scenario.Scenario"

log = logging.getLogger(__name__)

SIM_REFERENCE = "500g"
#: At shutdown, how long the outbox may take to deliver what is still waiting.
MQTT_FLUSH_S = 3.0


class StartupError(Exception):
    """The daemon cannot start for a reason a person can fix; the message says how."""


# -- engine and history -----------------------------------------------------------------------


def build_engine(
    config: Config, calibration: Calibration, history: History | None = None
) -> Engine:
    spike, smoothing = filter_chains(config)
    return Engine(engine_params(config), calibration, spike, smoothing, history)


class HistoryOpener:
    """Opens the daemon's history: at start-up, and again from the store's writer for as long
    as it is unavailable (docs/RELIABILITY.md, "The history at start-up").

    Opening closes what a crash left open (sessions, cycles) before anything new is written.
    A corrupt database is never deleted: it is renamed aside (:func:`set_aside`), logged, and a
    new one started; ``on_set_aside`` hears of it. The full, read-only or failing disk is a
    :class:`StoreUnavailable`, for the caller to retry.
    """

    def __init__(
        self,
        config: Config,
        path: Path,
        wall: Callable[[], float],
        on_set_aside: Callable[[Path], None] | None = None,
    ) -> None:
        self.config = config
        self.path = path
        self._wall = wall
        self.on_set_aside = on_set_aside
        #: Where the corrupt database went, if one was set aside by this process.
        self.set_aside: Path | None = None

    def __call__(self) -> Store:
        try:
            return self._open()
        except StoreCorrupt as exc:
            log.error("%s", exc)
            try:
                aside = set_aside(self.path, self._wall())
            except OSError as move:
                raise StoreUnavailable(f"{exc}; it cannot be set aside: {move}") from move
            self.set_aside = aside
            log.error(
                "the corrupt history database is kept as %s (nothing deleted); "
                "a new history starts at %s",
                aside,
                self.path,
            )
            if self.on_set_aside is not None:
                self.on_set_aside(aside)
            return self._open()

    def _open(self) -> Store:
        config = self.config
        store = Store.open(self.path, config.device_id, publish=config.mqtt.enabled)
        try:
            wall = self._wall()
            closed = store.close_interrupted(wall)
            if closed:
                log.warning(
                    "sessions left open by a crash or power cut closed as interrupted: %s", closed
                )
            store.current_roller(wall)  # the first roller is made with the history
        except (OSError, sqlite3.Error) as exc:
            store.close()
            raise classify(exc, f"cannot prepare the history database {self.path}") from exc
        except BaseException:
            store.close()
            raise
        return store


@dataclass(frozen=True)
class HistoryStart:
    """The history as the daemon starts: open (``store``), or unavailable (``problem``) with
    what could still be read of it for the engine."""

    store: Store | None
    history: History
    last_event_wall: float | None
    problem: str | None = None


def read_history(reader: StoreReader) -> History:
    """What the engine needs from the stored past."""
    last = reader.last_session()
    ended = last.get("ended_wall") if last else None
    rollers = reader.rollers()
    roller_id, uses = (
        (int(rollers[-1]["roller_id"]), int(rollers[-1]["uses"])) if rollers else (1, 0)
    )
    return History(
        last_session_no=reader.last_session_no(),
        last_session_end_wall=float(ended) if ended is not None else None,
        last_session_end_synced=last is None or last.get("clock_synced") is not False,
        roller_id=roller_id,
        roller_uses=uses,
        last_cycle_id=reader.last_cycle_id(),
    )


def open_history(opener: HistoryOpener) -> HistoryStart:
    """Open the store and read what the engine needs; a disk that refuses is no reason not to
    start (the alarm and the interlocks need no history).

    Unavailable, the history is read read-only where it still can be (a full disk, usually),
    so session and cycle numbers go on where they were; where it cannot, the engine starts
    from the defaults and a clash of numbers is logged when the history returns. A schema
    newer than this version is still a :class:`StoreError` (a person's fix).
    """
    try:
        store = opener()
    except StoreUnavailable as exc:
        log.error("history unavailable at start-up: %s", exc)
        history, last_wall = _read_what_remains(opener.path)
        return HistoryStart(None, history, last_wall, str(exc))
    return HistoryStart(store, read_history(store), store.last_event_wall())


def _read_what_remains(path: Path) -> tuple[History, float | None]:
    try:
        with open_readonly(path) as reader:
            return read_history(reader), reader.last_event_wall()
    except (StoreError, sqlite3.Error) as exc:
        log.warning("the history cannot be read either (%s): numbering starts afresh", exc)
        return History(), None


class HistoryEvents:
    """The MQTT outbox's read side of the history, opened when the history exists: until then
    (unavailable at start-up) it has nothing to send, and asks again at the next page."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: StoreReader | None = None

    def undelivered(self, after_seq: int, limit: int, /) -> list[dict[str, Any]]:
        if self._reader is None:
            try:
                self._reader = open_readonly(self.path)
            except StoreError:
                return []
        return self._reader.undelivered(after_seq, limit)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


# -- hardware, real or simulated --------------------------------------------------------------


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
        lid_contact=pins.lid_contact,
        dock=pins.dock,
        uv_led=pins.uv_led,
        uv_sensor=pins.uv_sensor,
        lid_active_low=case.lid_active_low,
        dock_active_low=case.dock_active_low,
        uv_active_high=case.uv_active_high,
    )


def open_case(config: Config, clock: Clock, pin_factory: Any = None) -> CaseIO:
    """The case's devices, UV output first and off (S3); inputs go nowhere until wired.

    Pins and active levels come from :func:`case_wiring`, the same description the simulated
    case pins are built from, so the two can never disagree.
    """
    io = CaseIO(
        lambda _signal: None,
        clock,
        case_wiring(config),
        cap_s=case_params(config).cap_s,
        debounce_s=config.case.debounce_s,
        pin_factory=pin_factory,
    )
    io.force_off()
    return io


def load_scenario(path: Path) -> Scenario:
    """The scenario file of ``run --simulate``; a bad one is a :class:`StartupError`."""
    from dermaguard.sim.scenario import ScenarioError
    from dermaguard.sim.scenario import load_scenario as load_file

    try:
        return load_file(path)
    except ScenarioError as exc:
        raise StartupError(str(exc)) from exc


def steady_scenario(
    name: str, force_n: float, *, noise_counts: float = 0.0, board_rate_sps: int | None = None
) -> Scenario:
    """A scenario holding one force for as long as a command runs (calibrate, check-hardware)."""
    from dermaguard.sim.scenario import Scenario as Steady

    return Steady(
        name, "", 1e9, ((0.0, force_n),), noise_counts=noise_counts, board_rate_sps=board_rate_sps
    )


def open_hardware(
    config: Config, scenario: Scenario | None, speed: float, *, system_clock: bool = False
) -> Hardware:
    """Choose real or simulated hardware, once for the process, then open the devices on it.

    ``system_clock``: a simulation dates its records by the system's clock, as the device does
    (:class:`~dermaguard.common.clock.SimClock`'s ``system_calendar``).

    The UV-C output is created and driven off before any other device (S3).
    """
    sim: SimHardware | None = None
    bus: Any = None  # None: the driver opens the configured SPI bus
    max_high_us: float | None = None  # None: the configured limit
    if scenario is None:
        factory = real_pin_factory()
        clock: Clock = RealClock()
    else:
        factory, sim, bus, max_high_us = _simulation(config, scenario, speed, system_clock)
        clock = sim.clock
    # Every device below is given the factory explicitly; it is also gpiozero's process-wide
    # default because gpiozero's exit handler closes only that factory's devices, and because a
    # device that ever misses the argument then lands on this backend, never on a real one
    # gpiozero would load behind a simulation's back. This is the one place that sets it.
    install_pin_factory(factory)
    case = open_case(config, clock, factory)
    try:
        driver = open_load_cell(config, factory, clock, bus=bus, max_clock_high_us=max_high_us)
    except BaseException:
        case.lock_out()
        case.close()
        if sim is not None:
            sim.stop()
        raise
    pins, alarm = config.pins, config.alarm
    indicators = Indicators(
        pins.led_red,
        pins.led_green,
        pins.led_blue,
        pins.buzzer,
        led_active_high=alarm.led_active_high,
        buzzer_active_high=alarm.buzzer_active_high,
        buzzer_enabled=alarm.buzzer,
        pin_factory=factory,
    )
    return Hardware(clock, driver, indicators, case, sim)


def _simulation(
    config: Config, scenario: Scenario, speed: float, system_clock: bool = False
) -> tuple[Any, SimHardware, Any, float | None]:
    """The mock pin factory, the emulated hardware on it, and for the driver: the simulated SPI
    bus or the bit-banged clock-high limit (the emulated chip's power-down is relaxed).

    The emulated chip and case must own their pins before the drivers open them.
    """
    from dermaguard.sim.hardware import SIM_MAX_CLOCK_HIGH_US, SimHardware
    from dermaguard.sim.pins import mock_factory
    from dermaguard.sim.spi_bus import BUS_MODEL_ENV, BUS_MODELS

    factory = mock_factory()
    model = os.environ.get(BUS_MODEL_ENV)
    if model and model not in BUS_MODELS:  # a benchmark's seam, misspelt: say so, no traceback
        raise StartupError(
            f"{BUS_MODEL_ENV}={model} is not a bus model of the simulation "
            f"(one of: {', '.join(BUS_MODELS)}); unset it for the exact one"
        )
    dout, sck = chip_pins(config)
    hx = config.hx711
    sim = SimHardware(
        factory,
        scenario,
        dout=dout,
        sck=sck,
        # The board's RATE pin, which a scenario may set apart from the config (hx711_rate).
        rate_sps=scenario.board_rate_sps or hx.rate_sps,
        gain=hx.gain,
        speed=speed,
        case=case_wiring(config),
        bus_hz=hx.spi.hz,
        bus_mode=hx.spi.mode,
        polled=config.pins.hx711_ready is None,
        system_calendar=system_clock,
    )
    if hx.interface == "spi":
        assert sim.bus is not None, "the simulation was built for the gpio interface"
        return factory, sim, sim.bus, None
    return factory, sim, None, max(hx.max_clock_high_us, SIM_MAX_CLOCK_HIGH_US)


# -- calibration ------------------------------------------------------------------------------


def sim_read(hw: Hardware, force_n: float) -> int:
    """One emulated conversion read through the real driver, stepping virtual time.

    Calibration reads the emulator step by step rather than in real time; after a reset the
    chip needs some periods to settle, so step until it has data (bounded).
    """
    sim = hw.sim
    assert sim is not None

    def look() -> None:
        """A poll just before the conversion: the driver sees DOUT high, as it would."""
        with contextlib.suppress(HX711Error):
            hw.driver.read_raw(0.0, exact_timeout=True)

    for _ in range(int(sim.chip.settle_s / sim.period) + 8):
        if sim.convert_now(force_n, look):
            return hw.driver.read_raw(1.0)
    raise NotReady("the emulated HX711 never became ready")


def calibrate_simulation(
    hw: Hardware, path: Path, gain: int, out: TextIO | LineWriter, capacity_n: float
) -> Calibration:
    """Calibrate against the emulated load cell with the real procedure: tare, then 500 g."""
    sim = hw.sim
    assert sim is not None
    load = 0.0

    def read() -> int:
        return sim_read(hw, load)

    tare(path, read, 40, gain)
    load = parse_reference(SIM_REFERENCE)
    cal = add_reference(path, read, SIM_REFERENCE, 40, capacity_n=capacity_n)
    sim.chip.force_n = 0.0
    out.write(f"simulation: calibrated the emulated load cell (tare, then {SIM_REFERENCE})\n")
    return cal


def load_or_make_calibration(config: Config, hw: Hardware, out: TextIO | LineWriter) -> Calibration:
    if hw.sim is not None:
        path = calibration_file(config, simulated=True)
        try:
            cal = load_calibration(path)
            if cal.is_complete and cal.gain == config.hx711.gain:
                return cal
        except CalibrationFileError:
            pass
        return calibrate_simulation(hw, path, config.hx711.gain, out, config.load_cell.capacity_n)
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


# -- MQTT -------------------------------------------------------------------------------------


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
    name, model = device_name(config.device_id, simulated=simulated), MODEL
    if simulated:
        model = f"{MODEL} (simulation)"
    return MqttBridge(
        settings,
        open_events=lambda: HistoryEvents(db_path),
        device_name=name,
        model=model,
        sw_version=__version__,
        wall=clock.wall,
        monotonic=clock.monotonic,
    )


def close_mqtt(bridge: MqttBridge, sink: StoreSink, *, drain: bool = True) -> None:
    """Shutdown: commit the last events (daemon_stopping), let the outbox deliver them for a
    bounded time (unless not ``drain``: a failed daemon's restart comes first), then say
    offline. What is left is replayed at the next start.

    A writer or publisher thread that died and is still waiting out its restart back-off is
    started again first: the main loop that restarts it has ended, and the last events need it.
    """
    if not sink.writer_alive:
        sink.restart_writer()
    sink.flush(timeout=5.0)
    if not bridge.alive:
        bridge.restart()
    if drain and bridge.connected and not bridge.drain(MQTT_FLUSH_S):
        log.warning("MQTT: not every event was delivered before exit; they go at the next start")
    bridge.close()
