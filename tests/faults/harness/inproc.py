"""One schedule against the whole daemon assembled in this process.

``run_daemon`` itself runs, on gpiozero's mock pins with the emulated HX711 and case and the
virtual clock, exactly as ``dermaguard run --simulate`` does. The harness only wraps edges:
the pin factory (recording pins), the emulated SPI device, SQLite's connections, the engine's
``handle`` (a stall), the clock's wall time (a step), one extra effect sink (the recorder), and
the systemd notify socket. Faults fire from the simulator's per-period step, at scenario times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import logging
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dermaguard.daemon.run as run_module
import dermaguard.sim.pins as sim_pins
from dermaguard.config.calibration_file import save_calibration
from dermaguard.config.load import Config, default_config, simulation_config
from dermaguard.config.paths import calibration_file, store_path
from dermaguard.core.calibration import Calibration, CalibrationPoint
from dermaguard.core.events import Command
from dermaguard.daemon.app import Hardware, StartupError
from dermaguard.hw.pins import install_pin_factory
from dermaguard.sim.case_pins import SimCase
from dermaguard.sim.hx711_chip import LoadModel
from dermaguard.sim.scenario import CaseEvent, CaseInitial, Scenario, SensorFault

from .catalogue import CYCLE_S, DURATION_S, Fault, Schedule
from .inject import FlakySpi, RunHung, Stall, corrupt, faulty_sqlite, raise_in_thread, time_limit
from .record import Recording, WatchdogListener, recording_factory

log = logging.getLogger(__name__)

#: Virtual seconds per real second asked of the simulator (it slows down if the host cannot).
SPEED = 20.0
#: With an engine stall the scenario runs slower, so that the stall (1.5-2.5 real seconds)
#: sits inside it and the watchdog has a chance to be seen fed or not while the alarm is late.
STALL_SPEED = 2.0
#: A schedule whose case hardware fails runs slower: the case judges its grace on stamped
#: (virtual) times, so at 20x an engine 15 ms late already looks like a LED gone dark.
CASE_SPEED = 4.0
#: Real seconds a run may take before it counts as hung (a daemon that does not stop).
RUN_LIMIT_S = 10.0
#: The watchdog timeout given to the daemon (real seconds): pings every half of it.
WATCHDOG_S = 0.4
MODEL = LoadModel()
#: The emulated load cell's true line, stored as a complete calibration (a tare and 500 g).
CALIBRATION = Calibration(
    offset=MODEL.offset_counts,
    scale_n_per_count=1 / MODEL.counts_per_newton,
    points=(
        CalibrationPoint(MODEL.offset_counts, 0.0),
        CalibrationPoint(MODEL.offset_counts + 4.903325 * MODEL.counts_per_newton, 4.903325),
    ),
)
#: The calibration the daemon starts with: its zero 0.05 N off the cell's true one (the daemon
#: reads a little high, on the safe side), so the schedule's tare really changes what the file
#: must hold (``tare_saved``).
STORED_CALIBRATION = dataclasses.replace(
    CALIBRATION, offset=CALIBRATION.offset - 0.05 * MODEL.counts_per_newton
)
#: The emulated case's own failures, by fault kind (catalogue.CASE_KINDS).
CASE_FAULTS = {
    "uv_led_dies": "kill_uv_led",
    "uv_driver_shorted": "short_uv_driver",
    "s1b_welded": "weld_s1b",
}
THREAD_OF_KIND = {
    "exc_engine": "engine",
    "exc_sampler": "sampler",
    "exc_ticker": "ticker",
    "exc_store_writer": "store-writer",
    "exc_mqtt": "mqtt",
    "exc_status_file": "status-file",
}


@dataclass
class RunResult:
    """What one daemon run left: its exit, the recording, and what the history holds."""

    schedule: Schedule
    config: Config
    recording: Recording
    exit_code: int | None = None  # None: ran to the scenario's end and returned 0
    exit_reason: str = ""
    finished: bool = False
    landed: dict[str, int] = field(default_factory=dict)  # fault kind -> times it fired
    failed_at: float | None = None  # virtual time the runtime failed
    failed_real: float | None = None  # real time (perf_counter) it said it failed
    exited: float | None = None  # real time (perf_counter) run_daemon returned or raised
    stored_events: list[dict[str, Any]] | None = None
    db_error: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    stored_scales: list[float] = field(default_factory=list)
    #: The offset in the calibration file after the run (None: no file, or unreadable).
    saved_offset: float | None = None
    wall_s: float = 0.0
    runs: int = 1
    hung: bool = False


#: The UV sensor's pin in a schedule whose case hardware fails, and its grace: the scenario's
#: lid stays shut about 2 s at a time, so a fault must show well inside that (the config
#: file's minimum is 1 s; the harness builds its config past that check, as for the cycle);
#: at CASE_SPEED it is 125 ms of real time.
UV_SENSOR_PIN = 26
UV_CONFIRM_S = 0.5
#: A flickering LED: dark FLICKER_DARK_S of every FLICKER_S (virtual), lit 1/5 of the time.
FLICKER_S = 0.25
FLICKER_DARK_S = 0.2


def harness_config(state: Path, broker_port: int | None, *, uv_sensor: bool = False) -> Config:
    """The defaults with a short UV cycle (below the config file's 1 min minimum), this
    schedule's state directory, MQTT to the test broker or off, and a UV sensor if asked."""
    c = default_config()
    mqtt = dataclasses.replace(
        c.mqtt,
        enabled=broker_port is not None,
        host="127.0.0.1",
        port=broker_port or 1,
        keepalive_s=5,
    )
    case = dataclasses.replace(c.case, cycle_min=CYCLE_S / 60)
    pins = c.pins
    if uv_sensor:
        case = dataclasses.replace(case, uv_confirm_s=UV_CONFIRM_S)
        pins = dataclasses.replace(pins, uv_sensor=UV_SENSOR_PIN)
    return dataclasses.replace(c, state_dir=str(state), case=case, pins=pins, mqtt=mqtt)


def sim_config(config: Config) -> Config:
    """``simulation_config`` for a config whose short cycle and grace the file schema would
    refuse."""
    valid = dataclasses.replace(
        config, case=dataclasses.replace(config.case, cycle_min=1.0, uv_confirm_s=1.0)
    )
    return dataclasses.replace(simulation_config(valid), case=config.case)


def scenario_of(s: Schedule) -> Scenario:
    """The scenario every schedule shares, with the seed's pushes and lid timing.

    Docked in the open case; the lid closes and a cycle runs (cut short by the lid one time in
    seven); the roller is taken out and pressed twice beyond the alarm limit; docked again, a
    tare, a second cycle.
    """
    (p1_t, p1), (p2_t, p2) = s.pushes
    frames = [
        (0.0, 0.0),
        (p1_t, 0.0),
        (p1_t + 0.001, p1),
        (p1_t + 0.6, p1),
        (p1_t + 0.601, 1.5),
        (p1_t + 1.0, 1.5),
        (p1_t + 1.001, 0.0),
        (p2_t, 0.0),
        (p2_t + 0.001, p2),
        (p2_t + 0.5, p2),
        (p2_t + 0.501, 0.0),
        (DURATION_S, 0.0),
    ]
    first_open = 1.2 if s.lid_early else 0.6 + CYCLE_S + 0.4
    case = (
        CaseEvent(0.3, "lid", "closed"),
        CaseEvent(first_open, "lid", "open"),
        CaseEvent(2.6, "dock", "out"),
        CaseEvent(5.0, "dock", "in"),
        CaseEvent(5.6, "lid", "closed"),
        CaseEvent(5.6 + CYCLE_S + 0.5, "lid", "open"),
    )
    faults: list[SensorFault] = []
    for f in s.faults:
        if f.kind == "unplug":
            faults.append(SensorFault(f.t, "unplug", f.duration_s))
        elif f.kind == "saturate_high":
            faults.append(SensorFault(f.t, "saturate", f.duration_s, level="high"))
    return Scenario(
        f"faults-{s.seed}",
        "fault schedule",
        DURATION_S,
        tuple(frames),
        faults=tuple(faults),
        initial=CaseInitial(lid="open", dock="in"),
        case=case,
    )


class Player:
    """Fires the schedule's faults from the simulator's step, each once, at scenario time."""

    def __init__(self, result: RunResult, broker: Any, state: Path) -> None:
        self.result = result
        self.broker = broker
        self.state = state
        self.actions: list[tuple[float, str, Callable[[], None]]] = []
        self.spi: FlakySpi | None = None
        self.case: SimCase | None = None
        self.stall = Stall()
        self.wall_offset = 0.0
        self.runtime: Any = None
        self.save_fault = threading.Event()
        self.db: Path = state / "simulation" / "dermaguard.db"
        self._done: set[int] = set()

    def _led(self, lit: bool) -> bool:
        if self.case is None:
            return False
        self.case.kill_uv_led(not lit)
        return True

    def landed(self, kind: str) -> None:
        self.result.landed[kind] = self.result.landed.get(kind, 0) + 1

    def plan(self, schedule: Schedule, disk: Any) -> None:
        for f in schedule.faults:
            self._plan(f, disk)
        self.actions.append((schedule.tare_at, "tare", self._tare))
        self.actions.sort(key=lambda a: a[0])

    def _plan(self, f: Fault, disk: Any) -> None:
        k = f.kind
        add = self.actions.append
        if k in THREAD_OF_KIND:
            name = THREAD_OF_KIND[k]
            add((f.t, k, lambda: self.landed(k) if raise_in_thread(name) else None))
        elif k == "exc_save_calibration":
            self.save_fault.set()
        elif k in ("disk_full_mid", "disk_readonly_mid"):
            mode = "full" if "full" in k else "readonly"

            def fill() -> None:
                disk.mode = mode
                self.landed(k)

            add((f.t, k, fill))
            add((f.t + f.duration_s, k + ":end", lambda: setattr(disk, "mode", None)))
        elif k in ("disk_full_start", "disk_readonly_start"):
            disk.mode = "full" if "full" in k else "readonly"
            self.landed(k)
            add((f.duration_s, k + ":end", lambda: setattr(disk, "mode", None)))
        elif k == "disk_corrupt_start":
            corrupt(self.db, whole=True)
            self.landed(k)
        elif k == "disk_corrupt_mid":
            add((f.t, k, lambda: (corrupt(self.db, whole=False), self.landed(k))))
        elif k == "spi_burst":

            def burst() -> None:
                if self.spi is not None:
                    self.spi.burst(int(f.amount))
                    self.landed(k)

            add((f.t, k, burst))
        elif k in ("unplug", "saturate_high", "overload", "retained_command"):
            self.landed(k)  # in the scenario, or before the start
        elif k == "engine_stall":
            add((f.t, k, lambda: (self.stall.start(f.duration_s), self.landed(k))))
        elif k == "uv_led_flickers":
            # Dark for most of each FLICKER_S, every spell shorter than the grace: the dark
            # time must not count as UV (S5).
            def dark(first: bool) -> None:
                if self._led(False) and first:
                    self.landed(k)

            for n in range(max(1, int(f.duration_s / FLICKER_S))):
                at = f.t + n * FLICKER_S
                add((at, k, functools.partial(dark, n == 0)))
                add((at + FLICKER_DARK_S, k + ":lit", functools.partial(self._led, True)))
        elif k in CASE_FAULTS:
            method = CASE_FAULTS[k]

            def fail_case() -> None:
                if self.case is not None:
                    getattr(self.case, method)()
                    self.landed(k)

            add((f.t, k, fail_case))
        elif k == "clock_step":

            def step() -> None:
                self.wall_offset += f.amount
                self.landed(k)

            add((f.t, k, step))
        elif k == "broker_loss":

            def lose() -> None:
                def cycle() -> None:
                    self.broker.stop()
                    time.sleep(f.duration_s / SPEED + 0.2)  # real seconds, roughly
                    self.broker.start()

                threading.Thread(target=cycle, name="harness-broker", daemon=True).start()
                self.landed(k)

            add((f.t, k, lose))

    def _tare(self) -> None:
        rt = self.runtime
        if rt is not None:
            rt.put(Command(rt.clock.monotonic(), "tare", f"h{self.result.schedule.seed}-tare"))

    def step(self, t: float) -> None:
        for i, (at, _name, action) in enumerate(self.actions):
            if at > t:
                break
            if i not in self._done:
                self._done.add(i)
                try:
                    action()
                except Exception:  # a harness bug must not look like a daemon failure
                    log.exception("fault action %s failed", _name)


@contextmanager
def patched(result: RunResult, player: Player) -> Iterator[None]:
    """The edges wrapped for this run; everything restored after it."""
    rec = result.recording
    real_open = run_module.open_hardware
    real_build = run_module.build_engine
    real_runtime = run_module.Runtime
    real_save = run_module.save_calibration
    real_sim_config = run_module.simulation_config
    real_factory = sim_pins.mock_factory
    hooks = (sys.excepthook, threading.excepthook)

    def open_hardware(config: Config, scenario: Any, speed: float, **options: Any) -> Hardware:
        hw = real_open(config, scenario, speed, **options)
        rec.timeline.clock = hw.clock
        assert hw.sim is not None
        if hw.sim.bus is not None:
            player.spi = FlakySpi(hw.sim.bus)
        player.case = hw.sim.case
        if hw.sim.case is not None:
            # One lock for the case and the recording: a pin change holds the recording's
            # while the LED's listener takes the case's, and the scenario's thread takes them
            # the other way round (the case's, then the sensor pin's recorded change).
            hw.sim.case.share_lock(rec.timeline.lock)
            hw.sim.case.light_watch = rec.shine
            rec.shine(hw.sim.case.light)
        real_read = hw.driver.read_raw

        def read_raw(*args: Any, **kwargs: Any) -> int:
            raw = real_read(*args, **kwargs)
            rec.read(raw)
            return raw

        hw.driver.read_raw = read_raw  # type: ignore[method-assign]
        real_wall = hw.clock.wall
        hw.clock.wall = lambda: real_wall() + player.wall_offset  # type: ignore[method-assign]
        hw.sim.on_step = player.step
        return hw

    def build_engine(*args: Any, **kwargs: Any) -> Any:
        engine = real_build(*args, **kwargs)
        engine.handle = player.stall.wrap(engine.handle)
        return engine

    class Runtime(real_runtime):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["sinks"] = [*kwargs.get("sinks", ()), rec.effect]
            super().__init__(*args, **kwargs)
            player.runtime = self

        def start(self) -> None:
            rec.reads.clear()  # what calibration read is not the daemon's
            super().start()

        def _fail(self, exc: BaseException) -> None:
            first = result.failed_at is None
            if first:
                result.failed_at = self.clock.monotonic()
            super()._fail(exc)
            if first:  # once the runtime says it failed, which the heartbeat reads
                result.failed_real = time.perf_counter()

    def save(path: Path, cal: Calibration) -> None:
        if player.save_fault.is_set():
            player.save_fault.clear()  # transient: the restarted thread's save goes through
            player.landed("exc_save_calibration")
            raise RuntimeError("injected fault in save-calibration")
        real_save(path, cal)

    sim_pins.mock_factory = lambda: recording_factory(rec)  # type: ignore[assignment]
    run_module.open_hardware = open_hardware  # type: ignore[assignment]
    run_module.build_engine = build_engine  # type: ignore[assignment]
    run_module.Runtime = Runtime  # type: ignore[misc]
    run_module.save_calibration = save  # type: ignore[assignment]
    run_module.simulation_config = sim_config  # type: ignore[assignment]
    try:
        yield
    finally:
        sim_pins.mock_factory = real_factory  # type: ignore[assignment]
        run_module.open_hardware = real_open  # type: ignore[assignment]
        run_module.build_engine = real_build  # type: ignore[assignment]
        run_module.Runtime = real_runtime  # type: ignore[misc]
        run_module.save_calibration = real_save  # type: ignore[assignment]
        run_module.simulation_config = real_sim_config  # type: ignore[assignment]
        sys.excepthook, threading.excepthook = hooks
        install_pin_factory(None)


def _stored(db: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT seq, id, type, t_mono, data FROM events ORDER BY seq")
            out = [
                {"seq": r[0], "id": r[1], "type": r[2], "t": r[3], "data": json.loads(r[4])}
                for r in rows
            ]
        finally:
            conn.close()
    except (sqlite3.Error, ValueError) as exc:
        return None, str(exc)
    return out, None


def stored_scale(data: dict[str, Any]) -> float | None:
    """The scale a calibration file holds, or ``None`` for a tare alone: that stores scale 0,
    "no scale yet", which no force is read through (the daemon refuses to start on it). Any
    reference weight makes a scale, and that must be positive."""
    scale = float(data.get("scale_n_per_count", 1.0))
    tare_only = not any(float(p["force_n"]) for p in data.get("points", []))
    return None if scale == 0 and tare_only else scale


def _scales(state: Path, events: list[dict[str, Any]] | None) -> list[float]:
    scales = []
    path = state / "simulation" / "calibration.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        scale = stored_scale(json.loads(path.read_text()))
        if scale is not None:
            scales.append(scale)
    for e in events or ():
        if e["type"] == "calibration_changed" and "scale_n_per_count" in e["data"]:
            scales.append(float(e["data"]["scale_n_per_count"]))
    return scales


def _saved_offset(state: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return float(json.loads((state / "simulation" / "calibration.json").read_text())["offset"])
    return None


def run_once(
    schedule: Schedule,
    state: Path,
    broker: Any,
    watchdog: WatchdogListener,
    result: RunResult,
    *,
    first: bool = True,
) -> None:
    """One start of the daemon on ``state``, to the scenario's end or its exit."""
    config = harness_config(
        state, broker.port if broker is not None else None, uv_sensor=schedule.has_uv_sensor
    )
    if first:
        cal_path = calibration_file(sim_config(config), simulated=True)
        save_calibration(cal_path, STORED_CALIBRATION)
    player = Player(result, broker, state)
    env = watchdog.environ(WATCHDOG_S)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    watchdog.recording = result.recording
    with ExitStack() as stack:
        disk = stack.enter_context(faulty_sqlite())
        if first:
            player.plan(schedule, disk)
        stack.enter_context(patched(result, player))
        try:
            with time_limit(RUN_LIMIT_S, lambda: setattr(result, "hung", True)):
                if "engine_stall" in schedule.kinds:
                    speed = STALL_SPEED
                else:
                    speed = CASE_SPEED if schedule.has_uv_sensor else SPEED
                code = run_module.run_daemon(config, scenario_of(schedule), speed, io.StringIO())
        except RunHung:
            result.exit_code, result.exit_reason = None, f"still running after {RUN_LIMIT_S:g} s"
        except StartupError as exc:
            result.exit_code, result.exit_reason = 2, str(exc)
        except Exception as exc:  # the CLI would print a traceback and exit 1
            result.exit_code, result.exit_reason = 1, repr(exc)
        else:
            if code != 0:
                result.exit_code, result.exit_reason = code, "run_daemon returned"
            else:
                result.finished = True
        finally:
            result.exited = time.perf_counter()
            watchdog.recording = None
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def run_schedule(
    schedule: Schedule, workdir: Path, broker: Any, watchdog: WatchdogListener
) -> RunResult:
    """Run ``schedule`` (twice for a retained command: a restart) and collect what it left."""
    from support.daemon import DEVICE

    state = workdir / f"seed-{schedule.seed}"
    shutil.rmtree(state, ignore_errors=True)
    start = time.perf_counter()
    config = harness_config(state, None, uv_sensor=schedule.has_uv_sensor)
    result = RunResult(schedule, config, Recording())
    recorder = None
    retained = "retained_command" in schedule.kinds
    cmd_topic = f"dermaguard/{DEVICE}/cmd/new_roller"
    try:
        if broker is not None:
            from support.broker import Recorder, publish

            recorder = Recorder(broker, f"dermaguard/{DEVICE}/event")
            if retained:
                publish(
                    broker, cmd_topic, {"request_id": f"h{schedule.seed}-retained"}, retain=True
                )
        run_once(schedule, state, broker, watchdog, result)
        if retained and result.finished:
            result.runs = 2
            second = RunResult(schedule, config, Recording())
            run_once(schedule, state, broker, watchdog, second, first=False)
            if not second.finished:
                result.finished = False
                result.exit_code, result.exit_reason = second.exit_code, second.exit_reason
        if recorder is not None:
            time.sleep(0.2)
            result.received = [m.json() for m in recorder.messages()]
    finally:
        if recorder is not None:
            recorder.close()
        if broker is not None and retained:
            try:
                publish(broker, cmd_topic, b"", retain=True)
            except Exception:
                log.exception("could not clear the retained command")
    db = store_path(sim_config(config), simulated=True)
    result.stored_events, result.db_error = _stored(db)
    result.stored_scales = _scales(state, result.stored_events)
    result.saved_offset = _saved_offset(state)
    result.wall_s = time.perf_counter() - start
    return result
