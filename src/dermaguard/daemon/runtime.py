"""The shell: threads that turn hardware into inputs and effects into the world.

``sampler`` reads the HX711 and queues inputs; ``engine`` drains the one queue, calls the pure
core and applies its effects in order (indicators first). Nothing slow runs on the engine thread.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dermaguard.common.clock import Clock
from dermaguard.core.engine import Engine, EngineInput
from dermaguard.core.events import (
    Effect,
    EmitEvent,
    ForceRead,
    ForceSample,
    Input,
    ReadFailed,
    SetUv,
    ShowIndicators,
    Tick,
)
from dermaguard.hw.case_io import CaseIO
from dermaguard.hw.hx711_protocol import LoadCellADC, NotReady, ReadDiscarded
from dermaguard.hw.indicators import Indicators

#: Longest time (clock seconds) without a good conversion while reads are being discarded
#: (our own timing hiccups, not the sensor's) before it is reported as a sensor fault.
MAX_BLIND_S = 0.25
#: Virtual seconds between ticks, so the case's timers run even when no sample arrives.
TICK_S = 0.1

log = logging.getLogger(__name__)

EffectSink = Callable[[Effect], None]


@dataclass
class Sampler:
    """Reads conversions and queues them; no good conversion within the limit is a fault.

    The limit is ``timeout_periods`` sample periods after the last good conversion, plus the
    chip's settling time when a read was discarded since, or the driver says the chip may be
    settling (a clock-high phase that ran long may have reset the chip, and a reset chip is
    silent while it settles: that is our hiccup, not a sensor fault). Limits are kept on the
    clock's time (virtual in simulation) while each driver wait is short in real time, so a
    stalled simulator never fakes a fault either.
    """

    driver: LoadCellADC
    clock: Clock
    put: Callable[[Input], None]
    rate_sps: int
    timeout_periods: int = 3
    stop_event: threading.Event = field(default_factory=threading.Event)
    samples: int = 0
    discarded: int = 0
    #: Passes of the read loop: grows while the sampler runs, good sensor or not. The service
    #: watchdog follows it, so a hung sampler gets the daemon restarted while a dead sensor
    #: is reported as a sensor fault (S7) instead of restarting the daemon in a loop.
    cycles: int = 0

    def run(self) -> None:
        limit = self.timeout_periods / self.rate_sps
        settle = self.driver.settle_s
        # The runtime resets the chip at start-up: it is silent while it settles.
        last_good = last_discard = self.clock.monotonic()
        discards = 0
        starting = True
        settling = False
        while not self.stop_event.is_set():
            self.cycles += 1
            now = self.clock.monotonic()
            deadline = last_good + limit
            if discards or starting or settling:
                # The chip may be resetting after a stretched pulse, but never stay blind for
                # longer than MAX_BLIND_S: then the force is unknown and a person must know.
                deadline = max(deadline, last_discard + settle + limit)
                deadline = min(deadline, last_good + max(MAX_BLIND_S, settle + 2 * limit))
            remaining = deadline - now
            if remaining <= 0:
                detail = f"{discards} reads discarded" if discards else "no data"
                self.put(ReadFailed(now, "timeout", detail))
                last_good, discards, starting, settling = now, 0, False, False
                last_discard = -math.inf
                continue
            try:
                raw = self.driver.read_raw(
                    min(max(self.clock.to_real(remaining), 0.001), 0.05), exact_timeout=True
                )
            except NotReady:
                continue
            except ReadDiscarded as exc:
                self.discarded += 1
                discards += 1
                last_discard = self.clock.monotonic()
                log.debug("HX711 read discarded: %s", exc.reason)
                continue
            self.samples += 1
            last_good, discards, starting = self.clock.monotonic(), 0, False
            # The data was good, but a stretched gain-select pulse may have reset the chip.
            settling = self.driver.may_be_settling
            if settling:
                last_discard = last_good
            self.put(ForceRead(last_good, raw))


class Runtime:
    """Owns the input queue and the threads; ``start()``, then ``stop()`` from any thread."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        indicators: Indicators,
        sampler_driver: LoadCellADC,
        case: CaseIO | None = None,
        *,
        rate_sps: int,
        timeout_periods: int = 3,
        sinks: Sequence[EffectSink] = (),
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.indicators = indicators
        self.sinks = list(sinks)
        self.case = case
        self.inputs: queue.SimpleQueue[EngineInput | None] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.failed: BaseException | None = None
        self.sampler = Sampler(
            sampler_driver, clock, self.inputs.put, rate_sps, timeout_periods, self.stopping
        )
        self._threads: list[threading.Thread] = []
        self._named: dict[str, threading.Thread] = {}
        self._failing_sinks: set[int] = set()

    def start(self) -> None:
        for effect in self.engine.startup_effects(self.clock.monotonic(), self.clock.wall()):
            self._apply(effect)
        if self.case is not None:
            for signal in self.case.initial_inputs():
                self.inputs.put(signal)
        loops = (
            ("engine", self._engine_loop),
            ("sampler", self._sampler_loop),
            ("ticker", self._tick_loop),
        )
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
            self._named[name] = thread

    def alive(self, name: str) -> bool:
        """Whether the runtime's thread ``name`` (engine, sampler, ticker) runs."""
        thread = self._named.get(name)
        return thread is not None and thread.is_alive()

    def restart_ticker(self) -> None:
        """Start the ticker again after it died (the supervisor's restart)."""
        if self.alive("ticker") or self.stopping.is_set():
            return
        thread = threading.Thread(target=self._tick_loop, name="ticker", daemon=True)
        thread.start()
        self._threads[self._threads.index(self._named["ticker"])] = thread
        self._named["ticker"] = thread

    def put(self, inp: EngineInput) -> None:
        self.inputs.put(inp)

    def stop(self) -> None:
        """UV off and locked out first; the engine closes an open session; then the threads.

        The engine thread is asked to shut down through the queue (it owns the engine), so
        everything queued before the stop is still handled in order.
        """
        if self.case is not None:
            self.case.lock_out()
        self.inputs.put(None)
        engine_thread = self._threads[0] if self._threads else None
        if engine_thread is not None and engine_thread is not threading.current_thread():
            engine_thread.join(timeout=2.0)
        self.stopping.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self.indicators.off()

    def _sampler_loop(self) -> None:
        try:
            self.sampler.run()
        except Exception as exc:
            self._fail(exc)

    def _tick_loop(self) -> None:
        # At a high simulation speed, ticks at most every 20 ms of real time: samples advance the
        # case's timers too, ticks are only for when no sample comes.
        while not self.stopping.wait(max(self.clock.to_real(TICK_S), 0.02)):
            self.inputs.put(Tick(self.clock.monotonic()))

    def _engine_loop(self) -> None:
        try:
            while True:
                inp = self.inputs.get()
                if inp is None:
                    if self.failed is None:
                        t = self.clock.monotonic()
                        for effect in self.engine.shutdown(t, self.clock.wall()):
                            self._apply(effect)
                    return
                for effect in self.engine.handle(inp, self.clock.wall()):
                    self._apply(effect)
        except Exception as exc:
            self._fail(exc)

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, SetUv):
            # A refusal is the engine's to act on: CaseIO queues it (UvRefused) with the level
            # it really drove (UvOutput), and the cycle counts only that (H17).
            if self.case is not None and not self.case.set_uv(effect.on):
                log.warning("UV-C on refused by the output's own checks")
        elif isinstance(effect, ShowIndicators):
            self.indicators.show(effect)
        for i, sink in enumerate(self.sinks):
            try:
                sink(effect)
            except Exception:
                # An output that fails (a closed pipe, a full disk) must not stop the alarm path,
                # nor flood the log at the sample rate: say it once, and again when it recovers.
                if i not in self._failing_sinks:
                    self._failing_sinks.add(i)
                    log.exception("output %d failed on %s", i, type(effect).__name__)
            else:
                if i in self._failing_sinks:
                    self._failing_sinks.discard(i)
                    log.warning("output %d works again", i)

    def fail(self, exc: BaseException) -> None:
        """The alarm path cannot run (the engine or the sampler died): UV off, stop, exit 70."""
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.case is not None:
            self.case.lock_out()  # S3: UV off on any internal error, before anything else
        log.critical("internal error, stopping: %r", exc, exc_info=exc)
        self.failed = exc
        self.stopping.set()
        self.inputs.put(None)


__all__ = ["EffectSink", "EmitEvent", "ForceSample", "Input", "Runtime", "Sampler"]
