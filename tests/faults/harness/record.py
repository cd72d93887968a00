"""What a run leaves to judge: every pin level change, every effect the engine applied, every
conversion the driver read, every watchdog ping, each stamped with virtual and real time."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from dermaguard.common.clock import Clock
from dermaguard.core.events import EmitEvent, Event
from dermaguard.sim.pins import BoundedMockPin


@dataclass
class Timeline:
    """One lock and one sequence for everything recorded, so order across threads is kept.

    Re-entrant: a pin's change can change another pin on the same thread (the emulated UV LED
    drives the UV sensor), and that one is recorded first."""

    clock: Clock | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    seq: int = 0

    def now(self) -> tuple[float, float]:
        t = self.clock.monotonic() if self.clock is not None else 0.0
        return t, time.perf_counter()


@dataclass(frozen=True)
class PinChange:
    seq: int
    pin: int
    level: bool
    t: float  # virtual
    real: float


@dataclass(frozen=True)
class Applied:
    """An event the engine applied: its own time ``event.t`` and when it was applied."""

    seq: int
    event: Event
    t: float
    real: float


@dataclass(frozen=True)
class Light:
    """UV-C really began or stopped shining (the emulated LED, not its pin or the sensor)."""

    on: bool
    t: float  # virtual
    real: float


@dataclass(frozen=True)
class Read:
    t: float
    real: float
    raw: int


@dataclass
class Recording:
    timeline: Timeline = field(default_factory=Timeline)
    pins: list[PinChange] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)  # real times of WATCHDOG=1
    stopping: list[float] = field(default_factory=list)  # real times of STOPPING=1
    light: list[Light] = field(default_factory=list)  # changes only, from the first level

    def shine(self, on: bool) -> None:
        """The emulated case's light watch, called with the case's lock held: the harness makes
        that lock the timeline's own (``SimCase.share_lock``), so a pin change and the light it
        causes are recorded in one order."""
        if not self.light or self.light[-1].on != on:
            t, real = self.timeline.now()
            self.light.append(Light(on, t, real))

    def pin(self, number: int, level: bool) -> None:
        tl = self.timeline
        t, real = tl.now()
        tl.seq += 1
        self.pins.append(PinChange(tl.seq, number, level, t, real))

    def effect(self, effect: object) -> None:
        """A sink like the daemon's own: it only appends."""
        if isinstance(effect, EmitEvent):
            tl = self.timeline
            with tl.lock:
                t, real = tl.now()
                tl.seq += 1
                self.applied.append(Applied(tl.seq, effect.event, t, real))

    def read(self, raw: int) -> None:
        t, real = self.timeline.now()
        self.reads.append(Read(t, real, raw))

    def events(self, etype: str | None = None) -> list[Applied]:
        return [a for a in self.applied if etype is None or a.event.type == etype]


class RecordingFactory(MockFactory):  # type: ignore[misc]
    """A mock factory whose every pin, whatever its class (the emulated case brings its own),
    records each level change in the run's recording, under one lock."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(pin_class=BoundedMockPin)
        self.recording = recording

    def pin(self, spec: Any, **kwargs: Any) -> Any:
        pin = super().pin(spec, **kwargs)
        if not getattr(pin, "_recorded", False):
            rec = self.recording
            real = pin._change_state

            def change(value: Any) -> bool:
                with rec.timeline.lock:
                    changed = bool(real(value))
                    if changed:
                        rec.pin(pin._number, bool(value))
                return changed

            pin._change_state = change
            pin._recorded = True
            with rec.timeline.lock:
                rec.pin(pin._number, bool(pin._state))
        return pin


def recording_factory(recording: Recording) -> MockFactory:
    return RecordingFactory(recording)


class WatchdogListener:
    """The systemd notify socket, owned by the harness: notes when WATCHDOG=1 arrives."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dg-notify-")
        self.path = str(Path(self.dir) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.recording: Recording | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-notify", daemon=True)
        self._thread.start()

    def environ(self, watchdog_s: float) -> dict[str, str]:
        return {
            "NOTIFY_SOCKET": self.path,
            "WATCHDOG_USEC": str(int(watchdog_s * 1e6)),
            "WATCHDOG_PID": str(os.getpid()),
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            rec, lines = self.recording, data.split(b"\n")
            if rec is not None and b"WATCHDOG=1" in lines:
                rec.pings.append(time.perf_counter())
            if rec is not None and b"STOPPING=1" in lines:
                rec.stopping.append(time.perf_counter())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self.sock.close()
        with contextlib.suppress(OSError):
            Path(self.path).unlink()
            Path(self.dir).rmdir()
