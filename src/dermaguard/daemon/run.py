"""Running the assembled daemon: threads, signals and a clean stop.

:mod:`dermaguard.daemon.app` builds the parts from the config (and chooses real or simulated
hardware); this module starts them, waits for a signal or the end of a scenario, and stops them
in an order that loses nothing the history or MQTT still needs.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from dermaguard.common.clock import SimClock
from dermaguard.common.line_writer import LineWriter
from dermaguard.config.calibration_file import save_calibration
from dermaguard.config.load import Config, simulation_config
from dermaguard.config.paths import calibration_file, store_path
from dermaguard.core.calibration import Calibration
from dermaguard.core.events import Effect, SaveCalibration
from dermaguard.daemon.app import (
    HistoryOpener,
    StartupError,
    build_engine,
    close_mqtt,
    load_or_make_calibration,
    open_hardware,
    open_history,
    open_mqtt,
)
from dermaguard.daemon.clock_sync import ClockWatch, clock_synchronised
from dermaguard.daemon.console import ConsolePrinter
from dermaguard.daemon.instance_lock import acquire as lock_state_dir
from dermaguard.daemon.runtime import Runtime
from dermaguard.daemon.sd_notify import Notifier, ServiceHeartbeat
from dermaguard.daemon.status_file import STATUS_NAME, StatusFile
from dermaguard.daemon.supervisor import Supervisor
from dermaguard.hw.case_io import install_uv_failsafe
from dermaguard.hw.pins import install_pin_factory
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.store import StoreError, StoreSink

if TYPE_CHECKING:
    from dermaguard.daemon.app import Scenario

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.05


class CalibrationSaver:
    """Writes a calibration changed by a command (a tare) to its file, off the engine thread:
    an fsync on an SD card can take longer than the alarm path may wait.

    The newest calibration not yet written is kept until a save ends: a save thread that dies
    on an error leaves it pending, and the supervisor's :meth:`restart` writes it again.
    """

    #: The effects it acts on (the runtime offers it no others).
    effect_types = (SaveCalibration,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: Calibration | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, effect: Effect) -> None:
        if isinstance(effect, SaveCalibration):
            self._pending = effect.calibration
            self._start()

    def _start(self) -> None:
        # Not a daemon thread: the process waits at exit for a calibration being written.
        thread = threading.Thread(target=self._save, name="save-calibration")
        self._thread = thread
        thread.start()

    @property
    def alive(self) -> bool:
        """False only when a save died with a calibration still to write."""
        thread = self._thread
        return self._pending is None or (thread is not None and thread.is_alive())

    def restart(self) -> None:
        if self._pending is not None:
            self._start()

    def close(self, timeout: float = 5.0) -> None:
        """At stop: wait for a save under way, then write a calibration still pending (its
        thread died and the supervisor had no time to restart it), here; an accepted tare is
        never lost to a stop."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if self._pending is None:
            return
        try:
            self._save()
        except Exception:
            log.exception("the new tare could not be saved to %s", self.path)

    def _save(self) -> None:
        with self._lock:
            cal = self._pending
            if cal is None:
                return
            try:
                save_calibration(self.path, cal)
            except OSError as exc:
                log.error("the new tare could not be saved to %s: %s", self.path, exc)
            if self._pending is cal:
                self._pending = None


def service_status(status: StatusFile, bridge: MqttBridge | None, inputs: str = "") -> str:
    """One line for ``systemctl status``: what the device does, whether MQTT is up, and
    ``inputs`` (the input queue's note of dropped force samples, if any)."""
    mqtt = (
        "MQTT off"
        if bridge is None
        else ("MQTT connected" if bridge.connected else "MQTT not connected")
    )
    return f"{status.summary()}; {mqtt}" + (f"; {inputs}" if inputs else "")


def watch_threads(
    supervisor: Supervisor,
    runtime: Runtime,
    *,
    sink: StoreSink,
    status: StatusFile,
    saver: CalibrationSaver,
    bridge: MqttBridge | None,
) -> None:
    """What the supervisor restarts, and what stops the daemon (docs/ARCHITECTURE.md, Threads)."""
    supervisor.watch_critical("engine", lambda: runtime.alive("engine"))
    supervisor.watch_critical("sampler", lambda: runtime.alive("sampler"))
    supervisor.watch("ticker", lambda: runtime.alive("ticker"), runtime.restart_ticker)
    supervisor.watch("store-writer", lambda: sink.writer_alive, sink.restart_writer)
    supervisor.watch("status-file", lambda: status.alive, status.restart)
    supervisor.watch("save-calibration", lambda: saver.alive, saver.restart)
    if bridge is not None:
        supervisor.watch("mqtt", lambda: bridge.alive, bridge.restart)
        supervisor.watch("paho-mqtt-client", lambda: bridge.network_alive, bridge.restart_network)


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


def run_daemon(
    config: Config,
    scenario: Scenario | None,
    speed: float,
    out: TextIO,
    *,
    system_clock: bool = False,
) -> int:
    """Run until the scenario ends (simulation) or a signal arrives; returns the exit code.

    ``system_clock``: a simulation runs on the system's calendar and follows its
    synchronisation as the device does (``run --simulate --system-clock``).

    One daemon per state directory: a second one raises
    :class:`~dermaguard.daemon.instance_lock.StateDirInUse` before it touches any hardware.
    """
    simulated = scenario is not None
    if simulated:
        config = simulation_config(config)  # never poses as the real device
    db_path = store_path(config, simulated=simulated)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_state_dir(db_path.parent, "run"):
        return _run_locked(config, db_path, scenario, speed, out, system_clock=system_clock)


def _run_locked(
    config: Config,
    db_path: Path,
    scenario: Scenario | None,
    speed: float,
    out: TextIO,
    *,
    system_clock: bool = False,
) -> int:
    if config.hx711.interface == "gpio":
        # Bit-banged from Python, the chip powers down if PD_SCK stays high over 60 µs. At the
        # default 5 ms switch interval the interpreter hands the GIL to any waiting thread in
        # the middle of a pulse, which stretched a high phase past the limit in a few percent
        # of reads under load. Every thread here blocks on its own after a short burst, so a
        # long interval costs no responsiveness and keeps each read in one piece. On the SPI
        # bus a read is one transfer that the controller clocks, so none of this is needed.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    simulated = scenario is not None
    hw = open_hardware(config, scenario, speed, system_clock=system_clock)
    supervisor = Supervisor(hw.case, hw.clock)
    uv_off = install_uv_failsafe(hw.case.lock_out, supervisor.thread_failed)
    sink: StoreSink | None = None
    bridge: MqttBridge | None = None
    notifier = Notifier.from_environ()  # under systemd (Type=notify) only
    heartbeat: ServiceHeartbeat | None = None
    console = LineWriter(out)  # never lets a blocked or closed stdout stop the engine thread
    try:
        cal = load_or_make_calibration(config, hw, console)
        # A full, read-only or failing disk, or a corrupt database, never stops the start: the
        # alarm and the interlocks need no history (docs/RELIABILITY.md).
        opener = HistoryOpener(config, db_path, hw.clock.wall)
        try:
            start = open_history(opener)
        except StoreError as exc:
            raise StartupError(str(exc)) from exc
        if hw.sim is not None and start.last_event_wall is not None:
            # never before what an earlier run stored
            hw.sim.clock.resume_after(start.last_event_wall)
        status = StatusFile(
            db_path.parent / STATUS_NAME,
            hw.clock.wall,
        )
        opener.on_set_aside = status.history_set_aside
        if opener.set_aside is not None:
            status.history_set_aside(opener.set_aside)

        def storage_fault(message: str | None) -> None:
            if message is None:
                log.warning("history storage works again")
            else:
                log.error("history storage failing (kept in memory, retrying): %s", message)
            status.set_history(message)
            if bridge is not None:
                bridge.set_history(message)

        bridge = open_mqtt(
            config,
            db_path,
            hw.clock,
            simulated=simulated,
        )
        sink = StoreSink(
            start.store,
            hw.clock.wall,
            opener=opener,
            unavailable=start.problem,
            on_fault=storage_fault,
            on_stored=bridge.on_stored if bridge is not None else None,
            trace_hz=config.session.trace_hz,
        )
        engine = build_engine(config, cal, start.history)
        printer = ConsolePrinter(hw.clock.monotonic(), console)
        saver = CalibrationSaver(calibration_file(config, simulated=simulated))
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
                saver,
                *([bridge] if bridge is not None else []),
            ],
        )
        if bridge is not None:
            bridge.bind(put_command=runtime.put, mark_delivered=sink.mark_delivered)
        supervisor.bind(runtime.put, runtime.fail)
        hw.case.set_sink(runtime.put)
        if hw.sim is not None and hw.sim.case is not None:
            hw.sim.case.request_sink = runtime.put
        # A simulation's clock is its own calendar, synchronised by definition, unless it runs
        # on the system's (--system-clock): then, as on the device, the system says.
        own_calendar = isinstance(hw.clock, SimClock) and not hw.clock.system_calendar
        clock_watch = ClockWatch(
            runtime.put,
            hw.clock.monotonic,
            probe=(lambda: True) if own_calendar else clock_synchronised,
        )
        clock_watch.poll()  # queued before the first sample: the engine knows from the start
        stop = threading.Event()
        with stop_on_signals(stop, uv_off):
            if bridge is not None:
                bridge.start()
            runtime.start()
            watch_threads(supervisor, runtime, sink=sink, status=status, saver=saver, bridge=bridge)
            if notifier is not None:
                heartbeat = ServiceHeartbeat(
                    notifier,
                    lambda: runtime.sampler.cycles,
                    lambda: service_status(status, bridge, runtime.inputs.summary()),
                    engine=runtime.inputs.progress,
                    failed=lambda: None if runtime.failed is None else "the alarm path failed",
                )
                heartbeat.start()
            if hw.sim is not None:
                hw.sim.start()
            while not stop.is_set() and not runtime.stopping.is_set():
                if hw.sim is not None and hw.sim.finished.is_set():
                    break
                supervisor.poll()
                clock_watch.poll()
                stop.wait(0.1)
            # STOPPING=1 ends systemd's watchdog. After a clean stop request, say it first: the
            # alarm path closes the session in order. After an internal error no alarm can
            # sound until systemd restarts the daemon: WATCHDOG=1 ends, STOPPING=1 waits for
            # the exit (in the finally below), so a shutdown that hangs is still killed, and
            # the outbox is not drained (what is stored goes out after the restart).
            if heartbeat is not None and runtime.failed is None:
                heartbeat.stop("stopping: closing the session, writing history, sending events")
            runtime.stop()
            failed = runtime.failed is not None
            if heartbeat is not None and failed:
                heartbeat.halt("stopping after an internal error: writing history")
            saver.close()
            if bridge is not None:
                close_mqtt(bridge, sink, drain=not failed)
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
        if heartbeat is not None:
            heartbeat.halt()  # an exception got here: no more WATCHDOG=1 (done, if stopped)
        try:
            console.close()
            if bridge is not None:
                bridge.close(timeout=0.5)
            if sink is not None and not sink.close(timeout=10.0):
                log.error("history: not everything could be written before exit")
            hw.close()
            install_pin_factory(None)  # open_hardware's choice ends with the devices on it
        finally:
            if heartbeat is not None:
                heartbeat.stop()  # STOPPING=1 at the exit itself, if not said already
            if notifier is not None:
                notifier.close()
