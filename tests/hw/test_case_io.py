"""The case's gpiozero shell on mock pins: the UV defences that do not wait for the engine."""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.core.case import CaseSignal, DockChanged, LidChanged, UvFault, UvSensed
from dermaguard.core.events import UvLockedOut, UvOutput, UvRefused
from dermaguard.hw.case_io import CaseIO, CaseWiring, install_uv_failsafe

LID, DOCK, UV, SENSOR = 23, 24, 25, 26
# The board as drawn in hardware/: switches close to GND, the UV LED's driver is active high.
WIRING = CaseWiring(
    LID, DOCK, UV, SENSOR, lid_active_low=True, dock_active_low=True, uv_active_high=True
)
ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """A ``put`` that notes the UV pin's level at the moment each input is queued."""

    def __init__(self, uv_pin: Any) -> None:
        self.uv_pin = uv_pin
        self.items: queue.SimpleQueue[tuple[CaseSignal, bool]] = queue.SimpleQueue()
        #: The driven levels reported (``UvOutput``), kept apart: most tests are about the rest.
        self.outputs: list[tuple[UvOutput, bool]] = []

    def __call__(self, inp: CaseSignal) -> None:
        if isinstance(inp, UvOutput):
            self.outputs.append((inp, bool(self.uv_pin.state)))
            return
        self.items.put((inp, bool(self.uv_pin.state)))

    def get(self, timeout: float = 2.0) -> tuple[CaseSignal, bool]:
        return self.items.get(timeout=timeout)

    def drain(self) -> list[CaseSignal]:
        out = []
        while not self.items.empty():
            out.append(self.items.get_nowait()[0])
        return out


@pytest.fixture
def recorder(pin_factory: Any) -> Recorder:
    return Recorder(pin_factory.pin(UV))


def make_io(
    recorder: Recorder, clock: SimClock, *, debounce_s: float = 0.0, cap_s: float = 600.0
) -> CaseIO:
    return CaseIO(recorder, clock, WIRING, cap_s=cap_s, debounce_s=debounce_s)


@pytest.fixture
def io(recorder: Recorder, sim_clock: SimClock) -> Iterator[CaseIO]:
    with make_io(recorder, sim_clock) as dev:
        yield dev


def close_lid(pin_factory: Any) -> None:
    pin_factory.pin(LID).drive_low()  # active low: the switch pulls the line to GND


def open_lid(pin_factory: Any) -> None:
    pin_factory.pin(LID).drive_high()


def test_uv_output_starts_off_and_switches_read_fail_safe(pin_factory: Any, io: CaseIO) -> None:
    """Nothing connected (pull-ups high): lid reads open, roller out, UV pin low."""
    assert not pin_factory.pin(UV).state and not io.uv_on
    assert not io.lid_closed and not io.docked and io.uv_lit is False
    assert pin_factory.pin(UV).function == "output"


def test_initial_inputs_report_the_levels_now(pin_factory: Any, io: CaseIO) -> None:
    close_lid(pin_factory)
    pin_factory.pin(DOCK).drive_low()
    pin_factory.pin(SENSOR).drive_high()
    [lid, dock, sensed] = io.initial_inputs()
    assert isinstance(lid, LidChanged) and lid.closed
    assert isinstance(dock, DockChanged) and dock.docked
    assert isinstance(sensed, UvSensed) and sensed.lit


def test_edges_are_queued_with_the_clock_time(
    pin_factory: Any, io: CaseIO, recorder: Recorder, sim_clock: SimClock
) -> None:
    sim_clock.advance_to(12.5)
    pin_factory.pin(DOCK).drive_low()
    pin_factory.pin(SENSOR).drive_high()
    close_lid(pin_factory)
    pin_factory.pin(SENSOR).drive_low()
    pin_factory.pin(DOCK).drive_high()
    assert recorder.drain() == [
        DockChanged(12.5, True),
        UvSensed(12.5, True),
        LidChanged(12.5, True),
        UvSensed(12.5, False),
        DockChanged(12.5, False),
    ]


def test_s5_every_on_and_off_the_engine_commands_is_reported_with_the_lid_shut(
    pin_factory: Any, io: CaseIO, recorder: Recorder
) -> None:
    """A second cycle with the lid kept shut: its on-period is reported afresh, so the case
    counts its UV time (the off between the two was reported too)."""
    close_lid(pin_factory)
    assert io.set_uv(True) and io.set_uv(False) and io.set_uv(True)
    assert [o.on for o, _ in recorder.outputs] == [True, False, True]


def test_s2_lid_open_turns_uv_off_directly(
    pin_factory: Any, io: CaseIO, recorder: Recorder
) -> None:
    uv_pin = pin_factory.pin(UV)
    close_lid(pin_factory)
    assert recorder.drain() == [LidChanged(0.0, True)]
    assert io.set_uv(True) and uv_pin.state
    # Nothing drains the queue from here on: only the shell's own path can switch UV off.
    uv_pin.clear_states()
    open_lid(pin_factory)
    # Low when the edge's own call returned (no thread, no queue in between): one change, off.
    assert [change.state for change in uv_pin.states] == [True, False]
    inp, uv_when_queued = recorder.get(timeout=0)
    assert inp == LidChanged(0.0, False)
    assert uv_when_queued is False  # off *before* the engine was told
    # ... and the case is told the output is low, so the next on-period is reported anew.
    assert [o for o, _ in recorder.outputs] == [UvOutput(0.0, True), UvOutput(0.0, False)]


#: A slow clock makes the 20 ms debounce last 0.4 s of real time, far longer than the test takes
#: between two edges even on a loaded host, so no settle timer fires mid-bounce by accident.
SLOW = 0.05


def test_s2_a_bouncing_lid_opening_is_reported_at_once_and_uv_never_returns(
    pin_factory: Any, recorder: Recorder
) -> None:
    clock = SimClock(speed=SLOW)
    with make_io(recorder, clock, debounce_s=0.02) as dev:
        close_lid(pin_factory)
        assert recorder.get()[0] == LidChanged(0.0, True)
        assert dev.set_uv(True)
        open_lid(pin_factory)
        for _ in range(5):  # contact bounce after the first opening edge
            close_lid(pin_factory)
            open_lid(pin_factory)
            assert not pin_factory.pin(UV).state
        # The last edge was an opening: nothing pending.
        assert dev._channels[0].settle_timer is None
        # One report, sent at the first opening edge, with UV already off.
        assert recorder.get(timeout=0) == (LidChanged(0.0, False), False)
        assert recorder.drain() == []
        assert not dev.uv_on


def test_a_closing_lid_is_reported_once_it_has_settled(
    pin_factory: Any, recorder: Recorder
) -> None:
    clock = SimClock(speed=SLOW)
    with make_io(recorder, clock, debounce_s=0.02) as dev:
        for _ in range(3):  # contact bounce while closing: never reported as open/closed pairs
            close_lid(pin_factory)
            open_lid(pin_factory)
        close_lid(pin_factory)
        inp, _ = recorder.get(timeout=2.0)
        assert inp == LidChanged(0.0, True)
        timer = dev._channels[0].settle_timer
        assert timer is None  # the report came from the last settle timer, which has finished
        assert recorder.drain() == []


def test_s11_set_uv_is_refused_while_the_lid_reads_open(pin_factory: Any, io: CaseIO) -> None:
    assert io.set_uv(True) is False
    assert not pin_factory.pin(UV).state
    close_lid(pin_factory)
    assert io.set_uv(True) is True and pin_factory.pin(UV).state
    assert io.set_uv(False) is True and not pin_factory.pin(UV).state


def test_s5_every_change_of_the_driven_level_is_reported_with_the_pin_as_it_was(
    pin_factory: Any, io: CaseIO, recorder: Recorder, sim_clock: SimClock
) -> None:
    """The engine counts a cycle's UV time from these reports alone (docs/SAFETY.md, H17)."""
    close_lid(pin_factory)
    sim_clock.advance_to(3.0)
    assert io.set_uv(True)
    assert io.set_uv(True)  # no change, no report
    sim_clock.advance_to(9.0)
    open_lid(pin_factory)  # S2 switches off: reported too
    assert recorder.outputs == [(UvOutput(3.0, True), True), (UvOutput(9.0, False), False)]


def test_s5_a_refused_on_is_reported_with_its_reason(
    pin_factory: Any, io: CaseIO, recorder: Recorder
) -> None:
    """The old lock-out refused silently, and the engine took its command for UV."""
    close_lid(pin_factory)
    recorder.drain()
    io.lock_out()
    assert io.set_uv(True) is False and not pin_factory.pin(UV).state
    assert recorder.drain() == [UvRefused(0.0, "locked_out")]
    assert recorder.outputs == []  # never driven


def test_s3_a_trip_switches_uv_off_reports_it_and_holds_it_off_until_the_engine_says_off(
    pin_factory: Any, io: CaseIO, recorder: Recorder
) -> None:
    close_lid(pin_factory)
    assert io.set_uv(True)
    recorder.drain()
    io.trip("thread_failed:mqtt")
    assert not pin_factory.pin(UV).state
    assert recorder.drain() == [UvLockedOut(0.0, "thread_failed:mqtt")]
    assert recorder.outputs[-1] == (UvOutput(0.0, False), False)
    # The engine may still act on inputs from before it heard of the trip: "on" is refused.
    assert io.set_uv(True) is False and not pin_factory.pin(UV).state
    assert recorder.drain() == [UvRefused(0.0, "tripped")]
    # Once it has commanded off, the case works again: no lock-out for the process's life.
    assert io.set_uv(False)
    assert io.set_uv(True) and pin_factory.pin(UV).state


def test_lock_out_refuses_uv_until_the_device_is_rebuilt(pin_factory: Any, io: CaseIO) -> None:
    close_lid(pin_factory)
    assert io.set_uv(True)
    io.lock_out()
    assert not pin_factory.pin(UV).state
    assert io.set_uv(True) is False and not pin_factory.pin(UV).state


def test_force_off_works_from_a_thread_while_another_holds_the_lock(
    pin_factory: Any, io: CaseIO
) -> None:
    close_lid(pin_factory)
    assert io.set_uv(True)
    held, release = threading.Event(), threading.Event()

    def hog() -> None:
        with io._lock:
            held.set()
            release.wait(5.0)

    thread = threading.Thread(target=hog)
    thread.start()
    try:
        assert held.wait(2.0)
        io.force_off()  # the pin goes low first; the lock wait is bounded
        assert not pin_factory.pin(UV).state
    finally:
        release.set()
        thread.join()


def test_s4_shell_cap_forces_uv_off_and_reports_a_fault(
    pin_factory: Any, recorder: Recorder
) -> None:
    clock = SimClock(speed=1000.0)  # 10 virtual seconds of cap are 10 ms of real time
    with make_io(recorder, clock, cap_s=10.0) as dev:
        close_lid(pin_factory)
        recorder.drain()
        clock.advance_to(100.0)
        assert dev.set_uv(True)
        clock.advance_to(110.0)  # the cap's worth of virtual time
        inp, uv_when_queued = recorder.get(timeout=5.0)
        assert inp == UvFault(110.0, "cap_reached")
        assert uv_when_queued is False and not dev.uv_on
        # The case is told the output went low (what it counts as UV time), before the fault.
        assert [o for o, _ in recorder.outputs] == [UvOutput(100.0, True), UvOutput(110.0, False)]
        # An engine still acting on older inputs cannot start a fresh on-period ...
        assert dev.set_uv(True) is False and not dev.uv_on
        # ... until it has commanded off, which it does once it has handled the fault.
        assert dev.set_uv(False) and dev.set_uv(True)


def test_s4_the_cap_counts_clock_time_not_real_time(pin_factory: Any, recorder: Recorder) -> None:
    """A simulation slower than its speed must not see the cap trip early in virtual time."""
    clock = SimClock(speed=1000.0)
    with make_io(recorder, clock, cap_s=10.0) as dev:
        close_lid(pin_factory)
        recorder.drain()
        assert dev.set_uv(True)
        timer = dev._cap_timer
        assert timer is not None
        timer.join(2.0)  # 10 ms of real time passed, but no virtual time: not tripped
        assert dev.uv_on and recorder.drain() == []
        clock.advance(10.0)
        inp, uv_when_queued = recorder.get(timeout=5.0)
        assert inp == UvFault(10.0, "cap_reached") and not uv_when_queued


def test_s4_the_cap_timer_is_cancelled_when_uv_goes_off(
    pin_factory: Any, recorder: Recorder
) -> None:
    clock = SimClock(speed=100.0)
    with make_io(recorder, clock, cap_s=600.0) as dev:  # 6 s real: it must not trip here
        close_lid(pin_factory)
        recorder.drain()
        assert dev.set_uv(True)
        timer = dev._cap_timer
        assert timer is not None
        assert dev.set_uv(True)  # staying on keeps the same timer: the cap counts from on
        assert dev._cap_timer is timer
        assert dev.set_uv(False)
        timer.join(timeout=2.0)
        assert not timer.is_alive()
        assert recorder.drain() == []
        assert dev._cap_timer is None


def test_s3_failsafe_hooks_switch_off_then_chain(
    mocker: MockerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: calls.append("previous sys"))
    monkeypatch.setattr(threading, "excepthook", lambda a: calls.append("previous thread"))
    register = mocker.patch("atexit.register")

    def off() -> None:
        calls.append("off")
        raise RuntimeError("device already closed")  # a failing off must not break a hook

    failsafe = install_uv_failsafe(off)
    register.assert_called_once_with(failsafe)
    sys.excepthook(ValueError, ValueError("x"), None)
    threading.excepthook(mocker.Mock())
    failsafe()
    assert calls == ["off", "previous sys", "off", "previous thread", "off"]


def test_s3_a_supervisor_that_cannot_report_a_failed_thread_leaves_uv_off(
    mocker: MockerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: calls.append("previous thread"))
    mocker.patch("atexit.register")

    def thread_failed(args: threading.ExceptHookArgs) -> None:
        calls.append("supervisor")
        raise RuntimeError("the engine's queue is closed")

    install_uv_failsafe(lambda: calls.append("off"), thread_failed)
    threading.excepthook(threading.ExceptHookArgs((ValueError, ValueError("x"), None, None)))
    assert calls == ["supervisor", "off", "previous thread"]


S3_SCRIPT = textwrap.dedent(
    """
    import atexit, signal, sys, threading
    from dermaguard.common.clock import RealClock
    from dermaguard.daemon.run import stop_on_signals
    from dermaguard.hw.case_io import CaseIO, CaseWiring, install_uv_failsafe
    from dermaguard.hw.pins import install_pin_factory
    from dermaguard.sim.pins import mock_factory

    mode = sys.argv[1]
    factory = mock_factory()
    install_pin_factory(factory)
    uv_pin = factory.pin(25)

    def report(where):
        print(f"{where}: uv={int(uv_pin.state)}", flush=True)

    # Registered before the failsafe, so these run *after* it: they see what it left.
    atexit.register(report, "atexit")
    previous = sys.excepthook
    def sys_hook(*args):
        report("excepthook")
        previous(*args)
    sys.excepthook = sys_hook
    threading.excepthook = lambda args: report("thread_excepthook")

    wiring = CaseWiring(23, 24, 25, None, True, True, True)
    io = CaseIO(lambda inp: None, RealClock(), wiring, cap_s=600, debounce_s=0)
    factory.pin(23).drive_low()  # lid closed
    failsafe = install_uv_failsafe(io.lock_out)

    if mode in ("sigterm", "sigint"):
        # The daemon's own handlers, as run_daemon installs them: UV off, then a clean stop.
        stop = threading.Event()
        with stop_on_signals(stop, failsafe):
            assert io.set_uv(True)
            report("on")
            stop.wait(30)  # until the test's signal arrives
            report("signal")  # the first thing after the handler: nothing else switched UV
        sys.exit(0)

    assert io.set_uv(True)
    report("on")
    if mode == "exception":
        raise RuntimeError("unhandled")
    if mode == "thread":
        worker = threading.Thread(target=lambda: 1 / 0)
        worker.start()
        worker.join()
        report("after_thread")
        sys.exit(0)
    """
)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("exit", ["on: uv=1", "atexit: uv=0"]),
        ("exception", ["on: uv=1", "excepthook: uv=0", "atexit: uv=0"]),
        ("thread", ["on: uv=1", "thread_excepthook: uv=0", "after_thread: uv=0", "atexit: uv=0"]),
        ("sigterm", ["on: uv=1", "signal: uv=0", "atexit: uv=0"]),
        ("sigint", ["on: uv=1", "signal: uv=0", "atexit: uv=0"]),
    ],
)
def test_s3_uv_is_off_on_every_way_out(tmp_path: Path, mode: str, expected: list[str]) -> None:
    script = tmp_path / "s3.py"
    script.write_text(S3_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "stderr.txt").open("w+", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), mode],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=ROOT,
        )
        watchdog = threading.Timer(30.0, proc.kill)  # a hung child fails the test, not the run
        watchdog.start()
        try:
            assert proc.stdout is not None
            # Read everything through the same buffered stream: readline() may already hold
            # later lines, which communicate() on the raw pipe would never see.
            first = proc.stdout.readline().strip()
            assert first == "on: uv=1"
            if mode in ("sigterm", "sigint"):
                proc.send_signal(signal.SIGTERM if mode == "sigterm" else signal.SIGINT)
            rest = proc.stdout.read()
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    assert [first, *rest.splitlines()] == expected, stderr
    if mode in ("exit", "thread", "sigterm", "sigint"):  # a signal is a clean stop
        assert proc.returncode == 0
    else:
        assert proc.returncode != 0


def test_the_limits_are_given_by_name_and_checked(recorder: Recorder) -> None:
    """``cap_s`` and ``debounce_s`` are keyword-only, so two bare numbers cannot be swapped (a
    600 s debounce and a 0 s cap); a cap must be above zero (any fraction of a second is one),
    a debounce may be zero but not negative."""
    clock = SimClock()
    with pytest.raises(TypeError):
        CaseIO(recorder, clock, WIRING, 600.0, 0.0)  # type: ignore[misc]
    with pytest.raises(ValueError, match="cap_s"):
        make_io(recorder, clock, cap_s=0.0)
    with pytest.raises(ValueError, match="debounce_s"):
        make_io(recorder, clock, debounce_s=-0.5)
    with make_io(recorder, clock, cap_s=0.5) as dev:
        assert dev.cap_s == 0.5


def test_the_dock_and_sensor_are_debounced_by_gpiozero_and_the_lid_by_the_shell(
    pin_factory: Any, recorder: Recorder
) -> None:
    """``debounce_s`` becomes the dock's and the sensor's ``bounce_time``; the lid gets none (its
    asymmetric debounce is the shell's, module docstring); zero means no bounce filter."""
    with make_io(recorder, SimClock(), debounce_s=0.05):
        assert pin_factory.pin(DOCK).bounce == 0.05 and pin_factory.pin(SENSOR).bounce == 0.05
        assert pin_factory.pin(LID).bounce is None
    with make_io(recorder, SimClock(), debounce_s=0.0):
        assert pin_factory.pin(DOCK).bounce is None and pin_factory.pin(SENSOR).bounce is None


def test_has_sensor_says_whether_a_uv_sensor_is_wired(recorder: Recorder) -> None:
    with make_io(recorder, SimClock()) as dev:
        assert dev.has_sensor is True
    no_sensor = dataclasses.replace(WIRING, uv_sensor=None)
    with CaseIO(recorder, SimClock(), no_sensor, cap_s=600.0, debounce_s=0.0) as dev:
        assert dev.has_sensor is False and dev.uv_lit is None


def test_the_wiring_cannot_change_under_the_devices() -> None:
    """The pins are opened from the wiring once: it is frozen, so no one can change a pin
    number or level that the open devices would then contradict."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        WIRING.uv_led = 5  # type: ignore[misc]


def test_leaving_the_with_block_drives_uv_low_and_releases_every_pin(
    pin_factory: Any, recorder: Recorder
) -> None:
    """``close`` (run by ``with``) writes the UV output low itself before it releases the pin, so
    UV goes off even if a release leaves the line as it was; and it releases every pin, so the
    case can be opened again (the runtime restarts)."""
    with make_io(recorder, SimClock()) as dev:
        close_lid(pin_factory)
        assert dev.set_uv(True)
    assert [s.state for s in pin_factory.pin(UV).states][-2:] == [True, False]
    with make_io(recorder, SimClock()) as again:  # every pin was free again
        assert not again.uv_on


def test_a_failed_construction_releases_the_pins_it_took(
    pin_factory: Any, recorder: Recorder
) -> None:
    """A wiring mistake found while the devices are opened (here the dock on the lid's pin)
    closes those already open: the UV output is low and free, nothing is left reserved."""
    clash = dataclasses.replace(WIRING, dock=LID)
    with pytest.raises(Exception) as failure:
        CaseIO(recorder, SimClock(), clash, cap_s=600.0, debounce_s=0.0)
    assert pin_factory.pin(UV).function == "input"  # released, with the failure still held
    with make_io(recorder, SimClock()) as dev:
        assert not dev.uv_on
    assert failure.value is not None


def test_uv_off_on_a_closed_case_raises_nothing(recorder: Recorder) -> None:
    """Exit paths run ``lock_out`` and ``close`` again after the case is closed (atexit after
    the runtime's own close): switching off a released pin is not an error there."""
    dev = make_io(recorder, SimClock())
    dev.close()
    dev.lock_out()
    dev.close()


def test_a_pending_lid_settle_never_holds_the_process_and_close_cancels_it(
    pin_factory: Any, recorder: Recorder
) -> None:
    """The settle timer of a closing lid is a daemon thread (it must not keep the process
    alive at exit), and ``close`` cancels it: it never fires on released pins."""
    clock = SimClock(speed=SLOW)  # 0.2 s of settling are 4 s of real time
    dev = make_io(recorder, clock, debounce_s=0.2)
    try:
        close_lid(pin_factory)
        timer = dev._channels[0].settle_timer
        assert timer is not None and timer.daemon
    finally:
        dev.close()
    assert timer.finished.is_set()  # cancelled, not waiting to fire
    assert recorder.drain() == []


def test_a_lid_reported_closed_at_start_up_is_not_reported_again_when_it_settles(
    pin_factory: Any, recorder: Recorder
) -> None:
    """``initial_inputs`` reports the lid as it reads now; a settle timer from a closing edge
    just before, ending later, has nothing new to say."""
    with make_io(recorder, SimClock(speed=SLOW), debounce_s=0.02) as dev:
        with dev._lock:  # the timer's report waits for this: it comes after initial_inputs
            close_lid(pin_factory)
            timer = dev._channels[0].settle_timer
            assert timer is not None
            first = dev.initial_inputs()[0]
        timer.join(timeout=5.0)
        assert not timer.is_alive()
        assert first == LidChanged(0.0, True)
        assert recorder.drain() == []


class _LockSpy:
    """The shell's state lock, telling when a bounded wait for it gave up (``force_off``)."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.gave_up = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = bool(self._lock.acquire(blocking, timeout))
        if not got:
            self.gave_up.set()
        return got

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> _LockSpy:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.mark.parametrize("engine_asks_on", [False, True])
def test_close_while_the_engine_thread_holds_the_lock_keeps_uv_off_for_good(
    pin_factory: Any, recorder: Recorder, engine_asks_on: bool
) -> None:
    """Shutdown closes the case from another thread while the engine thread may be inside
    ``set_uv``: ``force_off`` writes the pin and gives up waiting for the lock, so ``close``
    itself must refuse a later "on" (it locks out first) and cancel the cap timer once it
    has the lock."""
    dev = make_io(recorder, SimClock())
    close_lid(pin_factory)
    assert dev.set_uv(True)
    cap_timer = dev._cap_timer
    assert cap_timer is not None
    spy = _LockSpy(dev._lock)
    dev._lock = spy  # type: ignore[assignment]
    held = threading.Event()
    answers: list[bool] = []

    def engine_thread() -> None:
        with spy:
            held.set()
            assert spy.gave_up.wait(5.0)
            if engine_asks_on:
                answers.append(dev.set_uv(True))

    engine = threading.Thread(target=engine_thread)
    engine.start()
    assert held.wait(5.0)
    before = len(pin_factory.pin(UV).states)
    closer = threading.Thread(target=dev.close)
    closer.start()
    engine.join(10.0)
    closer.join(10.0)
    assert not engine.is_alive() and not closer.is_alive()
    assert answers == ([False] if engine_asks_on else [])
    assert [s.state for s in pin_factory.pin(UV).states][before:] == [False]  # off, never on
    assert cap_timer.finished.is_set()


def test_lid_contact_shut_reads_the_microswitch_contact_when_wired(
    pin_factory: Any, recorder: Recorder
) -> None:
    """The NC contact pulls its line low while the lid is open and lets the pull-up hold it
    high while the lid is shut; with no contact wired there is nothing to read (``None``)."""
    with make_io(recorder, SimClock()) as dev:
        assert dev.lid_contact_shut is None
    contact = 27
    wired = dataclasses.replace(WIRING, lid_contact=contact)
    with CaseIO(recorder, SimClock(), wired, cap_s=600.0, debounce_s=0.0) as dev:
        pin_factory.pin(contact).drive_low()
        assert dev.lid_contact_shut is False
        pin_factory.pin(contact).drive_high()
        assert dev.lid_contact_shut is True
