"""A roller counts as disinfected only if the UV pin really was high for the cycle, and a helper
thread that dies is restarted and reported (docs/SAFETY.md, H17).

The daemon's own parts on gpiozero mock pins: ``CaseIO``, the ``Runtime`` with its engine,
the history (``StoreSink`` on SQLite), the status file and the ``Supervisor`` behind the
thread exception hook that ``install_uv_failsafe`` installs. The virtual clock is moved by the
test; waits are bounded only so that a broken build fails instead of hanging.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.config.load import default_config
from dermaguard.core.calibration import Calibration
from dermaguard.core.events import Effect, EmitEvent, Event
from dermaguard.daemon import status_file
from dermaguard.daemon.app import build_engine, open_case
from dermaguard.daemon.runtime import Runtime
from dermaguard.daemon.status_file import StatusFile
from dermaguard.daemon.supervisor import Supervisor
from dermaguard.hw.case_io import CaseIO, install_uv_failsafe
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.indicators import Indicators
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.store import StoreSink
from dermaguard.store.db import Store
from dermaguard.store.reader import open_readonly
from support.ports import free_port
from support.waiting import wait_until

#: The exceptions these tests raise in threads are the point: the hook is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

CONFIG = default_config()
PINS = CONFIG.pins
CYCLE_S = CONFIG.case.cycle_min * 60.0
MODEL = LoadModel()
CAL = Calibration(offset=MODEL.offset_counts, scale_n_per_count=1 / MODEL.counts_per_newton)


class Events:
    """An effect sink that keeps the events the engine emitted, for bounded waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def __call__(self, effect: Effect) -> None:
        if isinstance(effect, EmitEvent):
            with self._lock:
                self.events.append(effect.event)

    def of(self, etype: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.type == etype]


@dataclass
class Daemon:
    clock: SimClock
    case: CaseIO
    runtime: Runtime
    supervisor: Supervisor
    sink: StoreSink
    status: StatusFile
    events: Events
    db: Path
    uv: Any

    def uv_levels(self) -> list[bool]:
        """Every level the UV pin was ever driven to (gpiozero's mock pins keep them)."""
        return [bool(s.state) for s in self.uv.states]

    def wait_uv_on(self) -> bool:
        """The pin is high and the engine has had the shell's report of it (virtual time
        must not jump past the report, which a real clock never does)."""
        return wait_until(lambda: bool(self.uv.state) and self.runtime.engine.case.uv_driven)

    def run_until(self, t: float) -> None:
        """Move the virtual clock to ``t`` and wait until the engine has seen that time."""
        self.clock.advance_to(t)
        assert wait_until(lambda: (self.runtime.engine.now or 0.0) >= t, 10.0)

    def stored(self, etype: str) -> list[dict[str, Any]]:
        assert self.sink.flush()
        with open_readonly(self.db) as reader:
            return [e for e in reader.events() if e["type"] == etype]


@pytest.fixture
def hooks(mocker: MockerFixture) -> Iterator[None]:
    """The process-wide hooks the daemon installs, put back after the test."""
    mocker.patch("dermaguard.hw.case_io.atexit.register")
    saved = threading.excepthook, sys.excepthook
    yield
    threading.excepthook, sys.excepthook = saved


@pytest.fixture
def daemon(pin_factory: Any, tmp_path: Path, hooks: None) -> Iterator[Daemon]:
    """The daemon's assembly as ``daemon/run.run_daemon`` wires it, minus MQTT."""
    clock = SimClock()
    case = open_case(CONFIG, clock, pin_factory)
    chip = HX711Chip(pin_factory, PINS.hx711_dout, PINS.hx711_sck, clock=clock, load=MODEL)
    driver = HX711(PINS.hx711_dout, PINS.hx711_sck)
    indicators = Indicators(PINS.led_red, PINS.led_green, PINS.led_blue, PINS.buzzer)
    supervisor = Supervisor(case, clock, backoff_min_s=0.01, backoff_max_s=0.05)
    install_uv_failsafe(case.lock_out, supervisor.thread_failed)
    db = tmp_path / "history.db"
    sink = StoreSink(Store.open(db, "dev"), clock.wall)
    status = StatusFile(tmp_path / "status.json", clock.wall)
    events = Events()
    runtime = Runtime(
        build_engine(CONFIG, CAL),
        clock,
        indicators,
        driver,
        case,
        rate_sps=80,
        sinks=[events, sink, status],
    )
    case.set_sink(runtime.put)
    supervisor.bind(runtime.put, runtime.fail)
    runtime.start()
    supervisor.watch_critical("engine", lambda: runtime.alive("engine"))
    supervisor.watch("store-writer", lambda: sink.writer_alive, sink.restart_writer)
    supervisor.watch("status-file", lambda: status.alive, status.restart)
    try:
        yield Daemon(
            clock, case, runtime, supervisor, sink, status, events, db, pin_factory.pin(PINS.uv_led)
        )
    finally:
        runtime.stop()
        status.close()
        sink.close()
        indicators.close()
        driver.close()
        chip.close()
        case.close()


def shut_lid_and_dock(factory: Any) -> None:
    case = CONFIG.case
    lid, dock = factory.pin(PINS.lid), factory.pin(PINS.dock)
    lid.drive_low() if case.lid_active_low else lid.drive_high()
    dock.drive_low() if case.dock_active_low else dock.drive_high()


def fail_status_writes(mocker: MockerFixture, times: int) -> None:
    """The status file's next ``times`` writes raise a bug (not a disk error it expects)."""
    real = status_file.write_atomic
    left = [times]

    def write(path: Path, text: str) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise ValueError("a bug in the status file writer")
        real(path, text)

    mocker.patch.object(status_file, "write_atomic", side_effect=write)


# --- the defect: "disinfected" with the UV pin never high ------------------------------------


def test_s5_a_locked_out_uv_output_never_yields_a_disinfected_roller(
    daemon: Daemon, pin_factory: Any
) -> None:
    """The reported defect: the output refuses (locked out) and the engine used to run the
    cycle to ``sterilization_completed`` on its own command alone."""
    daemon.case.lock_out()  # what any thread's exception used to do, for the process's life
    shut_lid_and_dock(pin_factory)
    assert wait_until(lambda: daemon.events.of("sterilization_started"))
    daemon.run_until(CYCLE_S + 1.0)  # past the cycle, short of the cap
    daemon.run_until(CYCLE_S + 60.0)
    assert daemon.events.of("sterilization_completed") == []
    [aborted] = daemon.stored("sterilization_aborted")
    assert aborted["data"]["reason"] == "uv_refused"
    assert aborted["data"]["detail"] == "locked_out"
    assert daemon.runtime.engine.case.sterility(CYCLE_S + 60.0) == (False, None)
    assert True not in daemon.uv_levels()  # the pin was never high
    assert daemon.runtime.engine.indicators().alarm is not None  # the abort shows


def test_s3_a_helper_thread_exception_mid_cycle_switches_uv_off_and_aborts_the_cycle(
    daemon: Daemon, pin_factory: Any, mocker: MockerFixture
) -> None:
    shut_lid_and_dock(pin_factory)
    assert daemon.wait_uv_on(), "the cycle never switched UV on"
    daemon.run_until(100.0)
    fail_status_writes(mocker, 1)
    daemon.run_until(130.0)  # the countdown moves a step: the status writer raises
    assert wait_until(lambda: not daemon.uv.state)  # S3: at once
    assert wait_until(lambda: daemon.events.of("sterilization_aborted"))
    daemon.run_until(CYCLE_S + 1.0)  # past the cycle, short of the cap
    daemon.run_until(CYCLE_S + 60.0)
    assert daemon.events.of("sterilization_completed") == []
    [aborted] = daemon.stored("sterilization_aborted")
    assert aborted["data"]["reason"] == "uv_locked_out"
    assert aborted["data"]["detail"] == "thread_failed:status-file"
    assert aborted["data"]["after_s"] < CYCLE_S
    [failed] = daemon.stored("thread_failed")
    assert failed["data"]["thread"] == "status-file"
    assert daemon.runtime.engine.case.sterility(CYCLE_S + 60.0) == (False, None)
    assert daemon.runtime.failed is None  # a helper's bug does not stop the alarm path


def test_s5_after_a_helper_thread_failed_a_cycle_completes_only_with_the_pin_high_for_it(
    daemon: Daemon, pin_factory: Any, mocker: MockerFixture
) -> None:
    """A failure before the cycle is no lock-out for life: the next cycle really shines, and
    its completion carries the on-time the shell reported."""
    fail_status_writes(mocker, 1)
    daemon.status(EmitEvent(Event("session_started", 0.0, {"session_no": 1})))
    assert wait_until(lambda: daemon.events.of("thread_failed"))  # UV tripped, told, released
    shut_lid_and_dock(pin_factory)
    assert wait_until(lambda: daemon.events.of("sterilization_started"))
    assert daemon.wait_uv_on(), "UV never came on after the trip"
    started = daemon.events.of("sterilization_started")[-1]
    daemon.run_until(started.t + CYCLE_S + 1.0)
    assert wait_until(lambda: daemon.events.of("sterilization_completed"))
    done = daemon.events.of("sterilization_completed")[-1]
    assert done.data["uv_on_s"] >= CYCLE_S
    assert not daemon.uv.state


# --- supervision -----------------------------------------------------------------------------


def test_s3_a_helper_thread_that_raises_is_restarted_and_reported(
    daemon: Daemon, mocker: MockerFixture, tmp_path: Path
) -> None:
    fail_status_writes(mocker, 1)
    daemon.status(EmitEvent(Event("session_started", 1.0, {"session_no": 1})))
    assert wait_until(lambda: not daemon.status.alive)
    assert wait_until(lambda: daemon.events.of("thread_failed"))
    [failed] = daemon.events.of("thread_failed")
    assert failed.data["thread"] == "status-file" and failed.data["failures"] == 1
    assert failed.data["restart_in_s"] is not None
    assert wait_until(lambda: (daemon.supervisor.poll(), daemon.status.alive)[1])
    assert daemon.supervisor.restarts == {"status-file": 1}

    def written() -> dict[str, Any]:
        path = tmp_path / "status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # The restarted writer writes again, and says which thread was restarted.
    assert wait_until(lambda: written().get("threads_failed") == {"status-file": 1})
    assert daemon.stored("thread_failed")[0]["data"]["thread"] == "status-file"
    assert daemon.runtime.failed is None


def test_s3_a_failed_alarm_path_thread_stops_the_daemon_with_uv_off(daemon: Daemon) -> None:
    """Only the engine or the sampler stops the daemon: then systemd restarts it."""
    args = threading.ExceptHookArgs((RuntimeError, RuntimeError("x"), None, _named("engine")))
    threading.excepthook(args)
    assert daemon.runtime.failed is not None
    assert daemon.runtime.stopping.is_set()
    assert daemon.case.set_uv(True) is False and not daemon.uv.state


def _named(name: str) -> threading.Thread:
    return threading.Thread(name=name)


def test_a_bad_history_is_reported_and_the_mqtt_publisher_restarted(
    tmp_path: Path, hooks: None
) -> None:
    """One history that cannot be opened used to end the MQTT thread outside its try block,
    silently; now it dies through the hook and the supervisor starts it again."""
    db = tmp_path / "h.db"
    Store.open(db, "dev").close()
    opens = [0]

    def open_events() -> Any:
        opens[0] += 1
        if opens[0] == 1:
            raise ValueError("a bad history")
        return open_readonly(db)

    reports: list[Any] = []
    supervisor = Supervisor(None, SimClock(), backoff_min_s=0.01, backoff_max_s=0.05)
    supervisor.bind(reports.append, reports.append)
    install_uv_failsafe(lambda: None, supervisor.thread_failed)
    settings = MqttSettings("127.0.0.1", 1, "5", "c", 30, Topics("dev"), discovery=False)
    bridge = MqttBridge(settings, open_events=open_events, device_name="d", sw_version="0")
    supervisor.watch("mqtt", lambda: bridge.alive, bridge.restart)
    try:
        bridge.restart()  # the publisher alone: no connection is needed for this
        assert wait_until(lambda: reports)
        assert reports[0].thread == "mqtt" and "bad history" in reports[0].error
        assert wait_until(lambda: (supervisor.poll(), opens[0] >= 2 and bridge.alive)[1])
        assert supervisor.restarts == {"mqtt": 1}
    finally:
        bridge.close(timeout=1.0)


def test_a_callback_error_on_pahos_network_thread_is_reported_and_the_loop_restarted(
    hooks: None,
) -> None:
    """paho runs callbacks with ``suppress_exceptions`` off: an error ends its thread. The
    supervisor sees it through the hook and starts the loop again."""
    reports: list[Any] = []
    supervisor = Supervisor(None, SimClock(), backoff_min_s=0.01, backoff_max_s=0.05)
    supervisor.bind(reports.append, reports.append)
    install_uv_failsafe(lambda: None, supervisor.thread_failed)
    # Nothing listens on the port: paho keeps trying, calling on_pre_connect before each try
    # (like on_connect, on_message and the rest, an error there ends its thread).
    settings = MqttSettings("127.0.0.1", free_port(), "5", "c", 30, Topics("dev"), discovery=False)
    bridge = MqttBridge(settings, open_events=_no_history, device_name="d", sw_version="0")
    calls = [0]

    def buggy(_client: Any, _userdata: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("a bug in a callback")

    bridge.client.on_pre_connect = buggy  # the fault, at paho's edge
    supervisor.watch("paho-mqtt-client", lambda: bridge.network_alive, bridge.restart_network)
    try:
        bridge.client.connect_async(settings.host, settings.port)
        bridge.client.loop_start()
        assert wait_until(lambda: reports)
        assert reports[0].thread == "paho-mqtt-client" and "a bug" in reports[0].error
        assert wait_until(lambda: (supervisor.poll(), calls[0] >= 2)[1])
        assert bridge.network_alive
        assert supervisor.restarts == {"paho-mqtt-client": 1}
    finally:
        bridge.client.loop_stop()


def _no_history() -> Any:
    raise AssertionError("the publisher is not started in this test")
