"""Faults through the real shell: a full disk, an unplugged HX711, a bouncing lid, a jumping clock.

Each test wires the daemon's pieces as ``run_daemon`` does — the engine, the ``Runtime`` threads,
a ``StoreSink`` on a real SQLite file, ``CaseIO`` and ``Indicators`` on gpiozero mock pins, and
the HX711 emulator read by the real driver — and steps virtual time itself: every sample period
the chip makes one conversion and the test waits until the sampler and the engine have taken it
(a read the driver discards because the host paused it mid-pulse is made again at the same
virtual time). So every timestamp is exact and no result depends on how fast or loaded the host
is. Waits are bounded and wait for a condition; a broken build fails instead of hanging.

Every mock pin the daemon opens (lid, dock, UV, LED, buzzer) records its level changes in one
ordered log, so a test can check what the pins did, not only what the engine said.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.common.timefmt import utc_epoch
from dermaguard.config.load import Config, default_config
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import CaseSignal, LidChanged, LidContactChanged
from dermaguard.core.events import (
    Command,
    DeviceState,
    Effect,
    EmitEvent,
    Event,
    ForceSample,
    Priority,
    ShowIndicators,
    UvOutput,
)
from dermaguard.daemon.app import build_engine, open_case
from dermaguard.daemon.run import SWITCH_INTERVAL_S
from dermaguard.daemon.runtime import Runtime
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.indicators import Indicators
from dermaguard.hw.pins import install_pin_factory
from dermaguard.sim.hx711_chip import SETTLE_S, HX711Chip, LoadModel
from dermaguard.sim.pins import BoundedMockPin
from dermaguard.store import Store, StoreSink, open_readonly
from dermaguard.store.codec import dumps, loads
from support.waiting import RETRY_READS_S, wait_until

pytestmark = pytest.mark.faults

CONFIG = default_config()
PINS = CONFIG.pins
RATE = CONFIG.hx711.rate_sps
PERIOD = 1.0 / RATE
MODEL = LoadModel()
CAL = Calibration(offset=MODEL.offset_counts, scale_n_per_count=1 / MODEL.counts_per_newton)
WALL0 = 1_764_096_623.0  # 2025-11-25T18:50:23Z: both runs of the clock test start here
#: The emulated HX711 powers down after PD_SCK stays high this long (datasheet: 60 µs); here a
#: second, so a host hiccup never resets it and costs the settling time.
NO_POWER_DOWN_NS = 1_000_000_000
#: Slack for values the core rounds to 2 decimals.
ROUNDING = 0.011
#: The defaults with a 0.6 s UV cycle (below the 1 min the config file allows), so a test can
#: run a whole cycle through the shell in 50 sample periods and start a *sterile* session:
#: its only alarms are then the ones the test provokes, which the LED pins can tell apart.
SHORT_CYCLE = dataclasses.replace(CONFIG, case=dataclasses.replace(CONFIG.case, cycle_min=0.01))


# --- pins that remember ----------------------------------------------------------------------


class PinLog:
    """Level changes of every recording pin, in the order they happened, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[int, bool]] = []

    def snapshot(self) -> list[tuple[int, bool]]:
        with self.lock:
            return list(self.entries)


class RecordingPin(BoundedMockPin):
    """A mock pin that appends (GPIO number, level) to its factory's log on every change.

    The change and the log entry happen under one lock, so the log's order is the order in
    which the levels changed, whichever threads changed them. Callbacks run after the lock is
    released (``MockPin.drive_high`` calls them once ``_change_state`` has returned).
    """

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        with factory.pin_log.lock:
            factory.pin_log.entries.append((self._number, bool(self._state)))

    def _change_state(self, value: Any) -> bool:
        log = self._factory.pin_log
        with log.lock:
            changed = bool(super()._change_state(value))
            if changed:
                log.entries.append((self._number, bool(value)))
        return changed


class RecordingFactory(MockFactory):  # type: ignore[misc]
    def __init__(self) -> None:
        self.pin_log = PinLog()
        super().__init__(pin_class=RecordingPin)


# --- clocks ----------------------------------------------------------------------------------


class JumpClock(SimClock):
    """Virtual monotonic time stepped by the test, and a wall clock the test can jump (NTP,
    an RTC-less Pi setting its time late, a user changing the time zone the wrong way)."""

    def __init__(self, speed: float = 1.0) -> None:
        super().__init__(speed=speed, wall_start=WALL0)
        self._offset = 0.0

    def wall(self) -> float:
        return super().wall() + self._offset

    def jump_wall(self, seconds: float) -> None:
        self._offset += seconds


class Effects:
    """An effect sink that keeps everything the engine emitted, in order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Effect] = []

    def __call__(self, effect: Effect) -> None:
        with self._cond:
            self._items.append(effect)
            self._cond.notify_all()

    @property
    def items(self) -> list[Effect]:
        with self._cond:
            return list(self._items)

    def events(self, etype: str | None = None) -> list[Event]:
        return [
            e.event
            for e in self.items
            if isinstance(e, EmitEvent) and (etype is None or e.event.type == etype)
        ]

    def wait(self, predicate: Callable[[list[Effect]], bool], timeout: float = 30.0) -> bool:
        """Until ``predicate`` holds; ``timeout`` only bounds a hang (a loaded host is slow)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._items), timeout)

    def wait_event(self, etype: str, count: int = 1, timeout: float = 30.0) -> Event:
        """The ``count``-th event of type ``etype`` (waits for it)."""

        def enough(items: list[Effect]) -> bool:
            n = sum(1 for e in items if isinstance(e, EmitEvent) and e.event.type == etype)
            return n >= count

        assert self.wait(enough, timeout), f"no {etype} #{count}; got {self.event_types()}"
        return self.events(etype)[count - 1]

    def event_types(self) -> list[str]:
        return [e.type for e in self.events()]

    def shown(self) -> list[ShowIndicators]:
        return [e for e in self.items if isinstance(e, ShowIndicators)]

    def states(self) -> list[DeviceState]:
        return [e for e in self.items if isinstance(e, DeviceState)]


class FaultLog:
    """Collects the StoreSink's ``on_fault`` reports."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.reports: list[str | None] = []

    def __call__(self, message: str | None) -> None:
        with self._cond:
            self.reports.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.reports) >= count, timeout), self.reports
            return list(self.reports)


# --- the rig ---------------------------------------------------------------------------------


class Rig:
    """The daemon as ``run_daemon`` wires it, on mock pins, with time stepped by the test.

    Pins, threads and the store are released by :meth:`close` (LIFO), whatever happened.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        config: Config = CONFIG,
        speed: float = 1.0,
        docked: bool = True,
        retry_s: float = 0.05,
    ) -> None:
        self.config = config
        self._stack = ExitStack()
        self._stopped = False
        self.sink_closed: bool | None = None
        try:
            self._build(db_path, speed, docked, retry_s)
        except BaseException:
            self._stack.close()
            raise

    def _build(self, db_path: Path, speed: float, docked: bool, retry_s: float) -> None:
        config, stack = self.config, self._stack
        stack.callback(install_pin_factory, Device.pin_factory)
        self.factory = RecordingFactory()
        install_pin_factory(self.factory)
        stack.callback(self.factory.reset)
        stack.callback(self.factory.close)
        self.pin_log = self.factory.pin_log
        self.clock = JumpClock(speed)
        # The emulated chip owns its pins before the driver opens them. A host that pauses the
        # sampler mid-pulse must not reset it (that is the emulator's own test): the driver
        # still discards such a read, and sample_now() makes the conversion again.
        self.chip = HX711Chip(
            self.factory,
            PINS.hx711_dout,
            PINS.hx711_sck,
            clock=self.clock,
            load=LoadModel(),
            power_down_ns=NO_POWER_DOWN_NS,
        )
        stack.callback(self.chip.close)
        self.case = open_case(config, self.clock)  # UV output first, and off (S3)
        stack.callback(self.case.close)
        self.lid_pin = self.factory.pin(PINS.lid)
        # The lid's second channel, S1b's NC contact: low while the lid is open (hardware/).
        assert PINS.lid_contact is not None
        self.contact_pin = self.factory.pin(PINS.lid_contact)
        self.contact_pin.drive_low()
        self.dock_pin = self.factory.pin(PINS.dock)
        self.uv_pin = self.factory.pin(PINS.uv_led)
        if docked:  # the lid reads open: its pull-up wins while the switch is open
            self.dock()
        self.driver = HX711(
            PINS.hx711_dout,
            PINS.hx711_sck,
            gain=config.hx711.gain,
            rate_sps=RATE,
            max_clock_high_us=config.hx711.max_clock_high_us,
            clock=self.clock,
        )
        stack.callback(self.driver.close)
        self.indicators = Indicators(
            PINS.led_red,
            PINS.led_green,
            PINS.led_blue,
            PINS.buzzer,
            led_active_high=config.alarm.led_active_high,
            buzzer_active_high=config.alarm.buzzer_active_high,
            buzzer_enabled=config.alarm.buzzer,
        )
        stack.callback(self.indicators.close)
        self.red_pin = self.factory.pin(PINS.led_red)
        self.green_pin = self.factory.pin(PINS.led_green)
        self.blue_pin = self.factory.pin(PINS.led_blue)
        self.buzzer_pin = self.factory.pin(PINS.buzzer)
        self.store = Store.open(db_path, config.device_id)
        self.faults = FaultLog()
        self.sink = StoreSink(
            self.store,
            self.clock.wall,
            on_fault=self.faults,
            trace_hz=config.session.trace_hz,
            retry_s=retry_s,
        )
        stack.callback(self.sink.close)
        self.engine = build_engine(config, CAL)
        self.effects = Effects()
        self.case_inputs: list[CaseSignal] = []
        self.runtime = Runtime(
            self.engine,
            self.clock,
            self.indicators,
            self.driver,
            self.case,
            rate_sps=RATE,
            timeout_periods=config.hx711.ready_timeout_periods,
            sinks=[self.sink, self.effects],
        )
        self.case.set_sink(self._case_put)
        self.runtime.start()
        stack.callback(self.runtime.stop)

    def _case_put(self, signal: CaseSignal) -> None:
        # list.append is atomic: called from pin callbacks. The UV output's reports of what it
        # drove (UvOutput) go to the engine but are not switch inputs: kept apart.
        if not isinstance(signal, UvOutput):
            self.case_inputs.append(signal)
        self.runtime.put(signal)

    # -- switches (active low: a closed switch pulls its line to GND) ------------------------

    def close_lid(self) -> None:
        """The lever goes down with the lid, and the magnet closes the reed switch."""
        self.contact_pin.drive_high()
        self.lid_pin.drive_low()

    def open_lid(self) -> None:
        self.lid_pin.drive_high()
        self.contact_pin.drive_low()

    def dock(self) -> None:
        self.dock_pin.drive_low()

    def undock(self) -> None:
        self.dock_pin.drive_high()

    def sterilize(self) -> Event:
        """A whole UV cycle through the shell: the lid closes on the docked roller, the cycle
        starts by itself, runs its length on the virtual clock, and the lid opens again."""
        self.close_lid()
        self.effects.wait_event("sterilization_started")
        assert wait_until(lambda: bool(self.uv_pin.state)), "UV never came on"
        self.step(math.ceil(self.config.case.cycle_s / PERIOD) + 4, 0.0)
        done = self.effects.wait_event("sterilization_completed")
        assert wait_until(lambda: not self.uv_pin.state), "UV stayed on after the cycle"
        self.open_lid()
        return done

    # -- time and samples --------------------------------------------------------------------

    def step(self, n: int, force_n: float | None = None) -> None:
        """Advance ``n`` sample periods; at each the chip converts if it can and the sampler
        reads it before time moves on."""
        for _ in range(n):
            self.clock.advance(PERIOD)
            if force_n is not None:
                self.chip.force_n = force_n
            self.sample_now()

    def sample_now(self) -> None:
        """One sample at the current virtual time, taken by the sampler and by the engine.

        A read the driver discards (the host paused the sampler mid-pulse) is made again at the
        same virtual time, so every run sees the same samples at the same times. When the chip
        has nothing to give (unplugged, settling), wait until the sampler has seen this time.
        """
        # On a loaded host (a busy CI runner, other test runs) the OS pre-empts the sampler
        # mid-read often, in runs of many reads: retry for a while, not a number of times.
        deadline = time.monotonic() + RETRY_READS_S
        while self._convert_and_read() == "discarded":
            assert time.monotonic() < deadline, f"every read for {RETRY_READS_S} s was discarded"
        assert self.runtime.failed is None, self.runtime.failed

    def _convert_and_read(self) -> str:
        sampler = self.runtime.sampler
        t = self.clock.monotonic()
        samples, discarded, cycles = sampler.samples, sampler.discarded, sampler.cycles
        if not self.chip.convert():
            # One whole pass of the sampler's loop began after the clock moved.
            assert wait_until(lambda: sampler.cycles >= cycles + 2, 2.0), "sampler stalled"
            return "no data"
        assert self.chip.wait_read(2.0), "the sampler never clocked the conversion out"
        assert wait_until(
            lambda: sampler.samples > samples or sampler.discarded > discarded, 2.0
        ), "the sampler did not take the conversion"
        if sampler.samples == samples:
            return "discarded"
        # The engine has taken it too (and read the wall clock for it).
        assert wait_until(lambda: (self.engine.now or -math.inf) >= t, 2.0), (
            "the engine did not take the sample: is its thread blocked?"
        )
        return "taken"

    # -- lifetime ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop as the daemon does: UV locked out, the engine drained, then the store closed."""
        if self._stopped:
            return
        self._stopped = True
        self.runtime.stop()
        self.sink_closed = self.sink.close(timeout=10.0)

    def close(self) -> None:
        self.stop()
        self._stack.close()


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(db_path: Path, **kwargs: Any) -> Rig:
        assert all(r._stopped for r in rigs), "one rig at a time: the pin factory is global"
        rig = Rig(db_path, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in reversed(rigs):
        rig.close()


@pytest.fixture(autouse=True)
def daemon_switch_interval() -> Iterator[None]:
    """The interpreter switch interval run_daemon sets (it keeps an HX711 read in one piece)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Unhandled exceptions in any thread during the test (gpiozero, timers, the runtime)."""
    errors: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    monkeypatch.setattr(threading, "excepthook", hook)
    return errors


def problems_logged(caplog: pytest.LogCaptureFixture, allowed: tuple[str, ...] = ()) -> list[str]:
    """Errors logged by dermaguard, except the ones a test expects."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("dermaguard")
        and r.levelno >= logging.ERROR
        and not any(a in r.getMessage() for a in allowed)
    ]


# --- 1. disk full ----------------------------------------------------------------------------


class InjectedDisk:
    """Writes on the store's own connection fail while ``full`` (the technique of
    tests/store/test_store_faults.py: ``_Connection`` lets a test replace ``execute``)."""

    def __init__(self, store: Store, mocker: MockerFixture, error: Exception) -> None:
        self._full = threading.Event()
        self._real = store.conn.execute
        self._error = error
        self.failures = 0
        mocker.patch.object(store.conn, "execute", side_effect=self._execute)

    def _execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self._full.is_set() and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            self.failures += 1
            raise self._error
        return self._real(sql, *args)

    def fill(self) -> None:
        self._full.set()

    def free(self) -> None:
        self._full.clear()


class TmpfsDisk:
    """A really full file system: a small tmpfs filled to the last byte by a filler file."""

    def __init__(self, mount: Path) -> None:
        self.filler = mount / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 4096, 512, 1):
                block = b"\0" * size
                while True:
                    try:
                        if os.write(fd, block) < size:
                            break
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        with pytest.raises(OSError) as info:
            (self.filler.parent / "probe").write_bytes(b"\0" * 4096)
        assert info.value.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()
        (self.filler.parent / "probe").unlink(missing_ok=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs under tmp_path; skipped where mounting is not allowed (not root, or no
    CAP_SYS_ADMIN in a container)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("a size-limited tmpfs needs root and mount(8); the injected faults run")
    point = tmp_path / "small-fs"
    point.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        if subprocess.run([umount, str(point)], timeout=10, check=False).returncode != 0:
            subprocess.run([umount, "-l", str(point)], timeout=10, check=False)


DISKS: dict[str, Exception | None] = {
    "tmpfs": None,
    "injected-sqlite-full": sqlite3.OperationalError("database or disk is full"),
    "injected-enospc": OSError(errno.ENOSPC, "No space left on device"),
}


@pytest.fixture(params=list(DISKS))
def disk_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """Where the database lives; requested before ``make_rig`` so a mount outlives the rig."""
    kind = str(request.param)
    if DISKS[kind] is None:
        return kind, request.getfixturevalue("small_fs")
    return kind, tmp_path


def test_disk_full_mid_session_alarm_sounds_fault_reported_and_nothing_is_lost(
    disk_root: tuple[str, Path],
    mocker: MockerFixture,
    caplog: pytest.LogCaptureFixture,
    make_rig: Callable[..., Rig],
    thread_errors: list[str],
) -> None:
    caplog.set_level(logging.WARNING, logger="dermaguard")
    kind, root = disk_root
    rig = make_rig(root / "dermaguard.db", config=SHORT_CYCLE)
    error = DISKS[kind]
    disk: InjectedDisk | TmpfsDisk = (
        TmpfsDisk(root) if error is None else InjectedDisk(rig.store, mocker, error)
    )

    # Session 1 starts (sterile, no alarm) while the disk still has room, and is committed.
    rig.step(8, 0.0)
    rig.sterilize()
    rig.undock()
    rig.step(8, 0.0)
    rig.step(24, 2.0)
    assert rig.effects.wait_event("session_started").data["sterile"] is True
    assert rig.sink.flush(5.0)
    assert rig.effects.shown()[-1].alarm is None
    committed = rig.effects.event_types()

    # The disk fills. The next event (an MQTT ping's answer) cannot be written.
    disk.fill()
    rig.runtime.put(Command(rig.clock.monotonic(), "ping", request_id="while-full"))
    [report] = rig.faults.wait_for(1)
    assert report is not None and report.startswith("storage full"), report
    assert rig.sink.fault == report

    # (a) S6: an over-pressure push during the fault still drives the buzzer and the red LED.
    t_push = rig.clock.monotonic()
    rig.step(16, 6.0)
    over = rig.effects.wait_event("over_pressure")
    assert t_push < over.t <= t_push + 3 * PERIOD + 1e-9
    assert rig.effects.wait(
        lambda items: any(
            isinstance(e, ShowIndicators)
            and e.alarm is Priority.HIGH
            and e.alarm_reason == "over_pressure"
            for e in items
        )
    )
    # Red only (the zone colours before it were green, then yellow for "high"), and the buzzer.
    assert wait_until(lambda: rig.red_pin.state and not rig.green_pin.state), "red LED dark"
    assert wait_until(lambda: bool(rig.buzzer_pin.state)), "buzzer silent"
    assert rig.sink.fault == report  # all of this while the disk was still full
    assert rig.runtime.failed is None

    # More history made during the fault: the alarm clears, session 1 ends, session 2 starts.
    rig.step(24, 2.0)
    rig.effects.wait_event("over_pressure_cleared")
    rig.dock()
    rig.step(4, 0.0)
    rig.effects.wait_event("session_ended")
    rig.undock()
    rig.step(8, 0.0)
    rig.step(24, 2.0)
    rig.effects.wait_event("session_started", count=2)

    # (b) Nothing of it reached the disk; the writer keeps retrying and reports once.
    assert not rig.sink.flush(0.3)  # asks for an immediate retry: still full
    if isinstance(disk, InjectedDisk):
        assert disk.failures >= 2
    with open_readonly(rig.store.path) as db:
        assert [e["type"] for e in db.events()] == committed
        session_1 = db.session(1)
        assert session_1 is not None and session_1["status"] == "open"  # its end is held
        assert db.session(2) is None
    assert rig.faults.reports == [report]
    assert rig.sink.backlog > 0
    logged = [r for r in caplog.records if r.name == "dermaguard.store.writer"]
    assert [r.levelno for r in logged if "storage full" in r.getMessage()] == [logging.ERROR]

    # (c) Space returns: the backlog is written in order and the fault clears.
    disk.free()
    assert rig.sink.flush(10.0)
    assert rig.faults.wait_for(2) == [report, None]
    assert rig.sink.fault is None and rig.sink.backlog == 0
    assert any(
        r.name == "dermaguard.store.writer" and "storage works again" in r.getMessage()
        for r in caplog.records
    )

    rig.step(8, 2.0)
    rig.dock()
    rig.step(4, 0.0)
    rig.effects.wait_event("session_ended", count=2)
    rig.stop()
    assert rig.sink_closed is True
    assert rig.sink.lost_events == 0

    emitted = rig.effects.events()
    ended = {e.data["session_no"]: e.data for e in emitted if e.type == "session_ended"}
    with open_readonly(rig.store.path) as db:
        stored = db.events(limit=10_000)
        assert [(e["type"], e["t_mono"], e["data"]) for e in stored] == [
            (e.type, e.t, loads(dumps(e.data))) for e in emitted
        ]
        assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
        for no in (1, 2):
            session = db.session(no)
            assert session is not None and session["status"] == "completed"
            assert session["duration_s"] == ended[no]["duration_s"]
            assert db.trace(no), f"session {no} has no trace"
        # The over-pressure made during the fault is in session 1's trace.
        assert any(zone == "over" for _, _, zone in db.trace(1))
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert rig.runtime.failed is None
    assert thread_errors == []
    assert problems_logged(caplog, allowed=("storage full",)) == []


# --- 2. HX711 unplugged and re-plugged -------------------------------------------------------


def test_hx711_unplugged_mid_session_faults_shows_unknown_force_and_the_session_goes_on(
    tmp_path: Path,
    make_rig: Callable[..., Rig],
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    rig = make_rig(tmp_path / "dermaguard.db", config=SHORT_CYCLE)
    rig.step(8, 0.0)
    rig.sterilize()
    t_undock = rig.clock.monotonic()
    rig.undock()
    rig.step(8, 0.0)
    rig.step(40, 2.0)
    started = rig.effects.wait_event("session_started")
    assert started.data["sterile"] is True  # so no alarm shows before the sensor fails
    session_no = started.data["session_no"]
    assert wait_until(lambda: rig.green_pin.state and not rig.red_pin.state)  # zone ok: green

    # Unplugged: DOUT stays high, no conversion is ever ready.
    t_unplug = rig.clock.monotonic()
    rig.chip.unplug()
    rig.step(8)
    fault = rig.effects.wait_event("sensor_fault")
    assert fault.data["reason"] == "not_ready"
    # Within 3 sample periods on the virtual clock, plus the chip's settling time in case a read
    # had just been discarded, plus one period of stepping (tests/integration/
    # test_cli_simulation.py::test_unplugged_sensor_in_a_scenario_faults_and_recovers).
    assert t_unplug < fault.t <= t_unplug + SETTLE_S[RATE] + 3 * PERIOD + PERIOD + 1e-9
    rig.step(24)  # 0.3 s unplugged, mid-session
    assert rig.effects.wait(
        lambda items: any(
            isinstance(e, ForceSample) and e.t >= rig.clock.monotonic() - 3 * PERIOD for e in items
        )
    )

    # S7: the force is unknown (None, never 0) while unplugged, in every output.
    during = [e for e in rig.effects.items if isinstance(e, ForceSample) and e.t >= fault.t]
    assert len(during) >= 5  # one per timeout (3 periods, or 4 as the sums of 1/80 fall)
    assert all(s.force_n is None and s.zone is None for s in during), during
    assert rig.engine.pressure.force_n is None
    state = rig.effects.states()[-1]
    assert state.fault == "not_ready" and state.force_n is None and state.zone is None
    assert state.session_no == session_no and state.state == "in_use"
    shown = rig.effects.shown()[-1]
    assert shown.alarm is Priority.MEDIUM and shown.alarm_reason == "sensor_fault"
    # The medium-priority alarm on the pins: the LED flashes yellow (red and green, no blue),
    # and the buzzer pulses.
    assert wait_until(lambda: rig.red_pin.state and rig.green_pin.state and not rig.blue_pin.state)
    assert wait_until(lambda: bool(rig.buzzer_pin.state)), "the fault is not heard"
    assert rig.effects.event_types().count("sensor_fault") == 1

    # Re-plugged: the chip comes up like at power-on (settles), readings resume.
    t_replug = rig.clock.monotonic()
    rig.chip.replug()
    rig.step(16, 2.0)
    recovered = rig.effects.wait_event("sensor_recovered")
    valid_needed = CONFIG.pressure.valid_samples_for_recovery
    assert t_replug < recovered.t <= t_replug + SETTLE_S[RATE] + (valid_needed + 2) * PERIOD
    rig.step(40, 2.0)
    assert rig.effects.wait(
        lambda items: any(
            isinstance(e, ForceSample)
            and e.t > recovered.t
            and e.zone == "ok"
            and e.force_n is not None
            and abs(e.force_n - 2.0) < 0.05
            for e in items
        )
    ), "zones did not resume after the sensor recovered"
    # The alarm is over: the LED shows zone ok (steady green) and the buzzer is quiet.
    assert rig.effects.shown()[-1].alarm is None
    assert wait_until(lambda: rig.green_pin.state and not (rig.red_pin.state or rig.blue_pin.state))
    assert wait_until(lambda: not rig.buzzer_pin.state)
    assert rig.effects.wait(
        lambda items: any(
            isinstance(e, DeviceState) and e.t >= recovered.t and e.fault is None for e in items
        )
    )
    assert rig.engine.sessions.current is not None
    assert rig.engine.sessions.current.session_no == session_no

    t_dock = rig.clock.monotonic()
    rig.dock()
    rig.step(4, 0.0)
    ended = rig.effects.wait_event("session_ended")
    rig.stop()
    assert rig.sink_closed is True

    # One session, the same one, with a sane summary.
    assert rig.effects.event_types().count("session_started") == 1
    summary = ended.data
    assert summary["session_no"] == session_no and summary["end_reason"] == "docked"
    assert summary["duration_s"] == pytest.approx(t_dock - t_undock, abs=ROUNDING)
    assert sum(summary["zone_s"].values()) == pytest.approx(summary["contact_s"], abs=0.05)
    # Time with the force unknown is not contact time: at most the known stretches count
    # (contact from the first touch to the fault, and from the recovery to the dock).
    t_touch = started.t
    known = (fault.t - t_touch) + (t_dock - recovered.t)
    assert known - 8 * PERIOD <= summary["contact_s"] <= known + ROUNDING
    assert summary["contact_s"] <= summary["duration_s"] - (recovered.t - fault.t)
    # An unknown force averaged in as 0 would drag the mean down, and so would time counted as
    # contact without its force (the stretch before the fault, however long the host took to
    # see it). Only the filter's ramps on the first touch and at the dock pull it below 2 N.
    assert summary["mean_n"] == pytest.approx(2.0, abs=0.02)
    assert summary["peak_n"] == pytest.approx(2.0, abs=0.05)
    assert summary["over_episodes"] == 0

    with open_readonly(rig.store.path) as db:
        session = db.session(session_no)
        assert session is not None and session["status"] == "completed"
        assert session["duration_s"] == summary["duration_s"]
        t0 = db.conn.execute(
            "SELECT t0_mono FROM sessions WHERE session_no = ?", (session_no,)
        ).fetchone()[0]
        # Trace times are relative to the session's start and kept to the millisecond.
        gap = [
            (t, f, z)
            for t, f, z in db.trace(session_no)
            if fault.t - t0 - 0.0005 <= t < recovered.t - t0 - 0.0005
        ]
        assert gap, "no trace samples while the sensor was unplugged"
        assert all(f is None and z is None for _, f, z in gap), gap  # unknown on disk too
        types = [e["type"] for e in db.events()]
        assert types.index("session_started") < types.index("sensor_fault")
        assert types.index("sensor_recovered") < types.index("session_ended")
    assert rig.runtime.failed is None
    assert thread_errors == []
    assert problems_logged(caplog) == []


# --- 3. lid bouncing at 1 kHz ----------------------------------------------------------------

#: Virtual seconds per real second in the bounce test: the 20 ms lid debounce is a timer of
#: 0.8 s real time, far longer than any gap the test leaves between two edges even on a loaded
#: host, so no closing is reported mid-bounce by accident; stable closes settle in 0.8 s.
SLOW = 0.025
BOUNCE_EDGES = 2000  # an edge every 0.5 ms for 1 s
BOUNCE_EDGE_S = 0.0005


def uv_exposures(entries: list[tuple[int, bool]], lid: int, uv: int) -> list[str]:
    """Where the pin log shows UV on with the lid open (the lid is active low: high = open).

    The only tolerated overlap is the lid-open callback's own latency: a lid that opens with UV
    on must be followed by UV off before any other lid or UV change.
    """
    problems: list[str] = []
    lid_open: bool | None = None
    uv_on = False
    must_go_off = False
    for i, (pin, level) in enumerate(entries):
        if pin == lid:
            if must_go_off:
                problems.append(f"#{i}: the lid moved again before UV went off")
            lid_open = level
            must_go_off = lid_open and uv_on
        elif pin == uv:
            if level and lid_open is not False:
                problems.append(f"#{i}: UV switched on while the lid read open")
            if level and must_go_off:
                problems.append(f"#{i}: UV stayed on after the lid opened")
            if not level:
                must_go_off = False
            uv_on = level
    if must_go_off:
        problems.append("UV still on with the lid open at the end")
    return problems


@pytest.mark.parametrize("auto_start", [True, False], ids=["auto-start", "no-auto-start"])
def test_lid_bouncing_at_1khz_aborts_the_cycle_uv_never_on_with_the_lid_open(
    auto_start: bool,
    tmp_path: Path,
    make_rig: Callable[..., Rig],
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    config = dataclasses.replace(
        CONFIG, case=dataclasses.replace(CONFIG.case, auto_start=auto_start)
    )
    assert config.case.debounce_s > 0
    rig = make_rig(tmp_path / "dermaguard.db", config=config, speed=SLOW, docked=True)
    lid, uv = PINS.lid, PINS.uv_led

    # A cycle running: the roller is docked and the lid closes (auto) or is asked to (command).
    rig.step(4, 0.0)
    rig.close_lid()
    assert wait_until(lambda: LidChanged(rig.clock.monotonic(), True) in rig.case_inputs)
    if not auto_start:
        rig.runtime.put(Command(rig.clock.monotonic(), "sterilize", request_id="before-bounce"))
    first = rig.effects.wait_event("sterilization_started")
    assert first.data["trigger"] == ("auto" if auto_start else "command")
    assert wait_until(lambda: bool(rig.uv_pin.state)), "UV never came on"
    mark = len(rig.pin_log.snapshot())
    inputs_before = len(rig.case_inputs)

    # The lid bounces: an edge every 0.5 ms for 1 s of virtual time, opening first; the load
    # cell keeps sampling (a conversion every period) while it does.
    t_first_edge = rig.clock.monotonic() + BOUNCE_EDGE_S
    uv_after_first_edge = True
    for i in range(BOUNCE_EDGES):
        rig.clock.advance(BOUNCE_EDGE_S)
        if i % 2 == 0:
            rig.open_lid()
            if i == 0:
                uv_after_first_edge = bool(rig.uv_pin.state)
        else:
            rig.close_lid()
        if i % round(PERIOD / BOUNCE_EDGE_S) == 0:
            rig.sample_now()
    t_last_edge = rig.clock.monotonic()
    assert not rig.lid_pin.state  # it stopped closed

    # S2: UV went off at the first opening edge, through the shell alone: low when the call
    # that drove the edge returned, before the engine could have acted on anything.
    assert not uv_after_first_edge

    # The bouncing is reported once (the first opening); the close once it has settled; on
    # both lid channels, which bounce together here.
    assert wait_until(lambda: len(rig.case_inputs) >= inputs_before + 4)
    reported = rig.case_inputs[inputs_before:]
    assert [i for i in reported if isinstance(i, LidChanged)] == [
        LidChanged(t_first_edge, False),
        LidChanged(t_last_edge, True),
    ]
    assert [i for i in reported if isinstance(i, LidContactChanged)] == [
        LidContactChanged(t_first_edge, False),
        LidContactChanged(t_last_edge, True),
    ]
    aborted = rig.effects.wait_event("sterilization_aborted")
    assert aborted.data["reason"] == "lid_opened"
    assert aborted.data["cycle_id"] == first.data["cycle_id"]
    assert aborted.t == t_first_edge

    if auto_start:
        # A stable close on a docked roller starts a new cycle, and only that does.
        second = rig.effects.wait_event("sterilization_started", count=2)
        assert second.data["trigger"] == "auto"
        assert second.data["cycle_id"] == first.data["cycle_id"] + 1
        assert second.t == t_last_edge
        assert wait_until(lambda: bool(rig.uv_pin.state))
    else:
        assert rig.effects.wait(
            lambda items: any(
                isinstance(e, DeviceState) and e.t >= t_last_edge and e.lid_closed for e in items
            )
        )
        assert rig.engine.case.state == "ready"
        assert not rig.uv_pin.state

    log = rig.pin_log.snapshot()
    bounce = [(pin, level) for pin, level in log[mark:] if pin in (lid, uv)]
    # The first opening edge is followed at once by UV off (the lid callback's own write).
    assert bounce[:2] == [(lid, True), (uv, False)], bounce[:4]
    assert uv_exposures(log, lid, uv) == []
    assert sum(1 for pin, level in bounce if pin == lid) == BOUNCE_EDGES
    uv_ons = [i for i, (pin, level) in enumerate(bounce) if pin == uv and level]
    if auto_start:
        assert len(uv_ons) == 1 and uv_ons[0] > len(bounce) - 3  # only after the last edge
    else:
        assert uv_ons == []

    started_events = rig.effects.events("sterilization_started")
    assert len(started_events) == (2 if auto_start else 1)
    assert rig.effects.event_types().count("sterilization_aborted") == 1
    rig.stop()
    assert rig.sink_closed is True
    with open_readonly(rig.store.path) as db:
        cycles = {c["cycle_id"]: c for c in db.cycles()}
        assert cycles[first.data["cycle_id"]]["outcome"] == "aborted"
        assert cycles[first.data["cycle_id"]]["reason"] == "lid_opened"
        assert len(cycles) == len(started_events)
    assert rig.runtime.failed is None
    assert thread_errors == []
    assert problems_logged(caplog) == []


# --- 4. the wall clock jumps -----------------------------------------------------------------

#: Wall-clock steps (seconds) made after the session started, and later after an over-pressure.
JUMPS = {
    "back-then-forward": (-3600.0, +3600.0),
    "back": (-3600.0, 0.0),
    "forward": (+3600.0, 0.0),
}


def _session_with_wall_jumps(
    make_rig: Callable[..., Rig], db_path: Path, first: float, second: float
) -> tuple[dict[str, Any], dict[str, Any], list[Any], str]:
    """One session: out of the dock, rolling through the zones with an over-pressure, back in.

    The wall clock steps by ``first`` once the session has started and by ``second`` after the
    over-pressure; the virtual monotonic clock runs on steadily. Returns the summary the engine
    emitted, the stored session, its stored trace and the over-pressure's stored timestamp.
    """
    rig = make_rig(db_path)
    rig.step(8, 0.0)
    rig.undock()
    rig.step(8, 0.0)
    rig.step(80, 2.0)
    rig.effects.wait_event("session_started")
    rig.clock.jump_wall(first)
    rig.step(40, 3.5)
    rig.step(16, 6.0)
    rig.effects.wait_event("over_pressure")
    rig.step(40, 2.0)
    rig.clock.jump_wall(second)
    rig.step(40, 0.6)
    rig.step(16, 0.0)
    rig.dock()
    ended = rig.effects.wait_event("session_ended")
    rig.step(4, 0.0)
    failed = rig.runtime.failed
    rig.close()  # the next run installs its own pin factory
    assert rig.sink_closed is True
    assert failed is None
    with open_readonly(rig.store.path) as db:
        no = ended.data["session_no"]
        session = db.session(no)
        assert session is not None
        trace = db.trace(no)
        [over] = [e for e in db.events() if e["type"] == "over_pressure"]
    return dict(ended.data), session, trace, over["ts"]


def _wall(text: str) -> float:
    value = utc_epoch(text)
    assert value is not None, text
    return value


@pytest.mark.parametrize("jumps", list(JUMPS))
def test_wall_clock_jumping_an_hour_mid_session_changes_no_duration(
    jumps: str,
    tmp_path: Path,
    make_rig: Callable[..., Rig],
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    first, second = JUMPS[jumps]
    steady, steady_row, steady_trace, steady_ts = _session_with_wall_jumps(
        make_rig, tmp_path / "steady.db", 0.0, 0.0
    )
    jumped, jumped_row, jumped_trace, jumped_ts = _session_with_wall_jumps(
        make_rig, tmp_path / "jumped.db", first, second
    )
    # The jumps reached the records: the over-pressure is dated by the stepped wall clock...
    assert _wall(jumped_ts) - _wall(steady_ts) == pytest.approx(first, abs=0.05)

    # ...while the session's figures, kept on the monotonic clock, stay within a sample period.
    tol = PERIOD + ROUNDING
    for key in ("duration_s", "contact_s", "longest_over_s"):
        assert jumped[key] == pytest.approx(steady[key], abs=tol), key
    for zone, seconds in steady["zone_s"].items():
        assert jumped["zone_s"][zone] == pytest.approx(seconds, abs=tol), zone
    assert all(steady["zone_s"][z] > 0 for z in ("light", "ok", "high", "over"))
    assert jumped["over_episodes"] == steady["over_episodes"] == 1
    assert jumped["peak_n"] == pytest.approx(steady["peak_n"], abs=0.01)
    assert jumped["mean_n"] == pytest.approx(steady["mean_n"], abs=0.01)
    # Its dates are wall-clock records: the start as it was, the end moved by the net jump.
    # (The engine reads the wall when it handles an input: a few periods of slack.)
    assert _wall(jumped["started_at"]) == pytest.approx(_wall(steady["started_at"]), abs=0.05)
    shift = first + second
    assert _wall(jumped["ended_at"]) - _wall(steady["ended_at"]) == pytest.approx(shift, abs=0.05)

    # The stored session and its trace agree as well.
    for key in ("duration_s", "contact_s"):
        assert jumped_row[key] == pytest.approx(steady_row[key], abs=tol), key
    assert jumped_row["duration_s"] == jumped["duration_s"]
    assert jumped_row["started_wall"] == pytest.approx(steady_row["started_wall"], abs=0.05)
    assert jumped_row["ended_wall"] - steady_row["ended_wall"] == pytest.approx(shift, abs=0.05)
    assert abs(len(jumped_trace) - len(steady_trace)) <= 1
    # Trace times count from the session's start; their span does not depend on the wall.
    span = jumped_trace[-1][0] - jumped_trace[0][0]
    assert span == pytest.approx(steady_trace[-1][0] - steady_trace[0][0], abs=tol)
    assert thread_errors == []
    assert problems_logged(caplog) == []
