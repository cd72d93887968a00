"""The shell: threads that turn hardware into inputs and effects into the world.

``sampler`` reads the HX711 and queues inputs (:mod:`dermaguard.daemon.sampler`); ``engine``
drains the one queue (:mod:`dermaguard.daemon.input_queue`, bounded for force samples), calls
the pure core and applies its effects in order (indicators first). Nothing slow runs on the
engine thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import get_args

from dermaguard.common.clock import Clock
from dermaguard.core.engine import Engine, EngineInput
from dermaguard.core.events import (
    Effect,
    EmitEvent,
    ForceSample,
    Input,
    SetUv,
    ShowIndicators,
    Tick,
)
from dermaguard.daemon.input_queue import InputQueue, sample_bound
from dermaguard.daemon.sampler import READY_TIMEOUT_PERIODS, Sampler
from dermaguard.hw.case_io import CaseIO
from dermaguard.hw.hx711_protocol import LoadCellADC
from dermaguard.hw.indicators import Indicators

#: Virtual seconds between ticks, so the case's timers run even when no sample arrives.
TICK_S = 0.1
#: Real seconds ``stop`` waits for each thread: a thread still running after it (a stalled
#: engine) is left behind (the threads are daemons) rather than hang the exit.
JOIN_S = 2.0

log = logging.getLogger(__name__)

#: Where effects go (the console, the history, the status file, MQTT...). A sink that acts on
#: only some kinds of effect says which in an ``effect_types`` attribute (a tuple of types), and
#: gets only those: a force sample every 12.5 ms is not offered to the two sinks that ignore it.
EffectSink = Callable[[Effect], None]


def _effect_types_of(i: int, sink: EffectSink) -> tuple[type, ...] | None:
    """The effect types sink ``i`` names (``None``: it takes every effect). A malformed
    ``effect_types`` is a wiring mistake, refused when the runtime is built: found on the
    engine thread at the first effect, it would stop the daemon mid-session instead."""
    kinds = getattr(sink, "effect_types", None)
    if kinds is None:
        return None
    if not (isinstance(kinds, tuple) and kinds and all(isinstance(k, type) for k in kinds)):
        raise TypeError(
            f"output {i} ({type(sink).__name__}): effect_types must be a non-empty tuple of "
            f"effect types, not {kinds!r}"
        )
    return kinds


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
        timeout_periods: int = READY_TIMEOUT_PERIODS,
        sinks: Sequence[EffectSink] = (),
        queue_bound: int | None = None,
    ) -> None:
        """``queue_bound``: force samples the input queue holds (default: ``sample_bound``)."""
        self.engine = engine
        self.clock = clock
        self.indicators = indicators
        self.sinks = list(sinks)
        self.case = case
        if queue_bound is None:
            queue_bound = sample_bound(rate_sps, clock.speed)
        self.inputs = InputQueue(queue_bound)
        self.stopping = threading.Event()
        self.failed: BaseException | None = None
        self.sampler = Sampler(
            sampler_driver, clock, self.inputs.put, rate_sps, timeout_periods, self.stopping
        )
        self._named: dict[str, threading.Thread] = {}
        self._failing_sinks: set[int] = set()
        wired = [(i, sink, _effect_types_of(i, sink)) for i, sink in enumerate(self.sinks)]
        #: Each kind of effect's sinks (with their index), in their order: built once.
        self._routes = {
            kind: [
                (i, sink) for i, sink, named in wired if named is None or issubclass(kind, named)
            ]
            for kind in get_args(Effect)
        }

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
        self._join("engine")
        self.stopping.set()
        self._join("sampler")
        self._join("ticker")
        self.indicators.off()

    def _join(self, name: str) -> None:
        """Wait for the thread ``name`` to end, unless it is the caller (a stop from a sink)."""
        thread = self._named.get(name)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=JOIN_S)

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
        for i, sink in self._routes[type(effect)]:
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


__all__ = ["EffectSink", "EmitEvent", "ForceSample", "Input", "Runtime"]
