"""Simulated hardware: the HX711 emulator driven by a scenario on a virtual clock.

The simulator runs in lockstep with the driver: it advances virtual time to the next conversion,
makes it ready, and waits until the driver has clocked it out before going on. So a slow or busy
machine makes the simulation run slower than asked, never drop samples or fake a sensor fault.
It is paced so that virtual time runs at most ``speed`` times real time.

With a :class:`~dermaguard.hw.case_io.CaseWiring`, the same steps also play the scenario's
case events (lid, dock, sterilize requests, UV sensor failures) on the case's mock pins, at the
resolution of one sample period.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from gpiozero.pins.mock import MockFactory

from dermaguard.common.clock import SimClock
from dermaguard.hw.case_io import CaseWiring
from dermaguard.sim.case_pins import SimCase
from dermaguard.sim.hx711_chip import POWER_DOWN_NS, HX711Chip, LoadModel
from dermaguard.sim.scenario import Scenario, SensorFault
from dermaguard.sim.spi_bus import BUS_MODEL_ENV, BUS_MODELS, LOOK_AHEAD_S

log = logging.getLogger(__name__)

#: PD_SCK high time that powers the emulated chip down in a bit-banged whole-daemon simulation.
SIM_POWER_DOWN_NS = 5_000_000
#: The driver's limit on a bit-banged clock-high phase in a simulation: below the emulated
#: chip's relaxed power-down (see SimHardware), never below the configured limit.
SIM_MAX_CLOCK_HIGH_US = SIM_POWER_DOWN_NS / 1000 * 0.8
#: Longest real wait for the driver's poll before a lockstep conversion: it does not poll
#: while a reset chip settles, and the conversion goes ahead without the look then.
LOOK_WAIT_REAL_S = 0.005
#: Longest real wait for the driver to clock a lockstep conversion out (a stalled sampler),
#: and how often that wait looks for a stop.
READ_WAIT_REAL_S = 2.0
STOP_POLL_S = 0.05


class SimHardware:
    """Owns the simulated chip and the thread that plays the scenario."""

    def __init__(
        self,
        factory: MockFactory,
        scenario: Scenario,
        *,
        dout: int,
        sck: int | None,
        rate_sps: int = 80,
        gain: int = 128,
        speed: float = 1.0,
        load: LoadModel | None = None,
        seed: int | None = 0,
        case: CaseWiring | None = None,
        bus_hz: int = 1_000_000,
        bus_mode: int = 0,
        polled: bool = True,
        bus_model: str | None = None,
        system_calendar: bool = False,
    ) -> None:
        """Create every emulated device's pins; do it before any gpiozero device on them.

        With ``sck`` ``None`` the chip's PD_SCK is the MOSI line of a simulated SPI bus
        (:attr:`bus`, clocked at ``bus_hz``), and ``dout`` is the GPIO that sees DOUT (the
        data-ready pin, or MISO). Otherwise PD_SCK is the GPIO ``sck``, bit-banged.

        ``bus_model`` names the bus model (:data:`~dermaguard.sim.spi_bus.BUS_MODELS`):
        ``bits``, the exact one, unless a benchmark asks for ``frames``, whose transfers cost a
        lookup, so that the daemon's own CPU can be measured with no bus model in it; ``None``
        takes it from the environment variable ``DERMAGUARD_SIM_SPI_BUS`` (unset: ``bits``).
        Only a simulation reads it: real hardware has no bus model.

        ``system_calendar``: the clock's calendar is the system's (see
        :class:`~dermaguard.common.clock.SimClock`), for a simulation that stands in for the
        hardware of a real installation (the system test) rather than for a demonstration.
        """
        if bus_model is None:
            bus_model = os.environ.get(BUS_MODEL_ENV) or "bits"
        if bus_model not in BUS_MODELS:
            raise ValueError(
                f"SPI bus model {bus_model!r} ({BUS_MODEL_ENV}): not one of {', '.join(BUS_MODELS)}"
            )
        self.scenario = scenario
        self.clock = SimClock(
            speed=speed, span_s=scenario.duration_s, system_calendar=system_calendar
        )
        self.period = 1.0 / rate_sps
        # Bit-banged, gains 64 and 32 are selected by pulses 26 and 27, clocked right after the
        # data: the next conversion must wait for them or the gain pulses would clock it out.
        # On the SPI bus they are part of the same transfer.
        self._tail_s = 0.0 if gain == 128 or sck is None else 0.001
        model = load or LoadModel()
        model.noise_counts = scenario.noise_counts
        model.drift_counts_per_s = scenario.drift_counts_per_s
        # Bit-banged, the whole daemon shares this machine's CPU with everything else on it; at
        # the datasheet's 60 µs every scheduling hiccup would power the emulated chip down and
        # cost 50 ms of settling, so a simulation would show sensor faults a Pi running only
        # the daemon does not; the driver still discards any read whose clock-high phase ran
        # over its limit. On the SPI bus the bus clock times every pulse, so the chip keeps
        # the datasheet's 60 µs.
        self.chip = HX711Chip(
            factory,
            dout,
            sck,
            rate_sps=rate_sps,
            clock=self.clock,
            load=model,
            seed=seed,
            power_down_ns=POWER_DOWN_NS if sck is None else SIM_POWER_DOWN_NS,
        )
        bus = BUS_MODELS[bus_model]
        self.bus = bus(self.chip, hz=bus_hz, mode=bus_mode) if sck is None else None
        # A driver polling the bus is let see DOUT high just before each conversion (see
        # SimSpiBus.await_look); one woken by a data-ready edge learns the time from the edge.
        self._look_first = self.bus is not None and polled
        self.finished = threading.Event()
        #: Scenario seconds played so far (the whole scenario once ``finished`` is set).
        self.played_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_step: Callable[[float], None] | None = None
        self._started: set[SensorFault] = set()
        self._ended: set[SensorFault] = set()
        self.case: SimCase | None = None
        if case is not None:
            self.case = SimCase(
                factory, self.clock, case, initial=scenario.initial, events=scenario.case
            )
        elif scenario.case:
            log.warning("scenario has case events but no case is wired: they are ignored")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sim-hardware", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.case is not None:
            self.case.close()

    def wiring_fault(self, fault: str) -> None:
        """Fake a fault ``check-hardware`` must recognise: ``miswired`` (PD_SCK and DOUT swapped:
        MISO reads low) or ``no-chip`` (nothing answers: MISO reads high); ``none`` does nothing.
        Bit-banged, either one leaves DOUT high: the chip is unplugged."""
        if fault == "none":
            return
        if self.bus is not None:
            self.bus.miso_stuck = fault == "no-chip"
        else:
            self.chip.unplug()

    def convert_now(self, force_n: float, look: Callable[[], object] | None = None) -> bool:
        """Outside the scenario thread: advance one period and make a conversion ready.

        Used by calibration, which reads the emulator step by step instead of in real time;
        ``look`` (a poll of the driver) runs just before the conversion, as a sampler's would.
        """
        if look is not None:
            self.clock.advance(self.period - LOOK_AHEAD_S)
            look()
            self.clock.advance(LOOK_AHEAD_S)
        else:
            self.clock.advance(self.period)
        self.chip.force_n = force_n
        return self.chip.convert()

    def _run(self) -> None:
        real_start = time.perf_counter()
        base = self.clock.monotonic()  # scenario time 0 (calibration may have used some)
        k = 0
        end = self.scenario.duration_s
        while not self._stop.is_set():
            t = k * self.period
            if t > end:
                break
            lag = real_start + self.clock.to_real(t) - time.perf_counter()
            if lag > 0 and self._stop.wait(lag):
                break
            if lag < -self.clock.to_real(self.period):
                # Behind (a busy host, or reads slower than the speed asked): carry on at the
                # speed from here instead of catching up. Catching up would run a stretch with
                # no conversion (an unplugged or settling chip) in no real time at all, and
                # the sampler, which judges silence by the clock, would never see it pass.
                real_start -= lag
            if self._look_first and self.bus is not None:
                look_at = base + t - LOOK_AHEAD_S
                self.clock.advance_to(look_at)
                self.bus.await_look(look_at, LOOK_WAIT_REAL_S)
            self.clock.advance_to(base + t)
            self.played_s = t
            self._apply_faults(t)
            if self.case is not None:
                self.case.apply(t)
            self.chip.force_n = self.scenario.force_at(t)
            if self.on_step is not None:
                self.on_step(t)
            if self.chip.convert():
                # Lockstep: let the driver clock this conversion out before the next one.
                self._await_read(READ_WAIT_REAL_S)
                if self._tail_s:
                    time.sleep(self._tail_s)
            k += 1
        self.finished.set()

    def _await_read(self, limit_s: float) -> None:
        """Wait for the driver to read the conversion, but not past a stop: a daemon whose
        sampler has ended reads nothing, and its exit must not wait out ``limit_s``."""
        deadline = time.perf_counter() + limit_s
        while not self.chip.wait_read(min(STOP_POLL_S, max(deadline - time.perf_counter(), 0))):
            if self._stop.is_set() or time.perf_counter() >= deadline:
                return

    def _apply_faults(self, t: float) -> None:
        """Start and end the scenario's sensor faults at their times (each exactly once)."""
        for fault in self.scenario.faults:
            if fault not in self._started and t >= fault.t:
                self._started.add(fault)
                log.info("simulated sensor fault: %s at %.2f s", fault.kind, t)
                if fault.kind == "spike":
                    self.chip.spike(fault.counts, fault.samples)
                elif fault.kind == "unplug":
                    self.chip.unplug()
                else:
                    self.chip.saturate(fault.level)
            if (
                fault.kind != "spike"
                and fault in self._started
                and fault not in self._ended
                and t >= fault.t + fault.duration_s
            ):
                self._ended.add(fault)
                if fault.kind == "unplug":
                    self.chip.replug()
                else:
                    self.chip.saturate(None)
