"""Pressure-path benchmark: the HX711 interfaces side by side, without and with a host stall.

Prints one ``name: value unit`` line per figure (``#`` lines are context). ``--quick`` keeps the
whole run under a minute.

- host pauses: how often this machine stops a busy Python thread for over 50 µs. Bit-banged,
  a pause inside a PD_SCK high phase over 60 µs powers the chip down (50 ms of settling).
- core: ``Engine.handle`` on a realistic rolling signal (median and p99, µs per sample);
  ``core_in_session_...``: the same with the roller out of the dock, so a session is open and
  every sample also goes through the session's accounting and the pass segmentation, on a
  signal of passes (1.6 s) and lifts (0.6 s). ``--core-only`` prints just these (for A/B runs of
  two source trees, ``bench/core_ab.py``).
- four variants, each without the stall load (``<variant>_...``) and with it
  (``<variant>_stall_...``): ``spi`` (the SPI controller clocks PD_SCK; data-ready by polling
  DOUT over the bus), ``spi_edge`` (the same, data-ready from a GPIO also wired to DOUT),
  ``gpio`` (PD_SCK bit-banged from Python, the baseline) and ``spi_own_clock`` (``spi`` with the
  chip on its own clock, below). The emulated chip converts at 80 samples/s in real time
  (free-running on its own thread but in ``spi_own_clock``) and the whole runtime reads it
  (sampler thread, queue, engine thread, indicators) while the force steps over the alarm
  threshold again and again. For each:

  - conversions made and read (by the chip), and conversions lost per 10,000: the chip converted
    again before the previous conversion was read. A chip reset loses the conversion waiting and
    makes none for 50 ms; the resets are counted on their own line. On spi the lost conversions
    that a GIL burst longer than a period overlapped (no Python reader could have read them) are
    counted apart from the rest;
  - reads the driver discarded, per 10,000 conversions;
  - the engine's input queue: the most force samples ever waiting (``..._input_queue_peak``)
    against its bound, and the samples it dropped (``..._inputs_dropped``; the bound is sized so
    that this is 0 here, stall load included);
  - alert latency (median, p99, max; in ms and in sample periods), from the emulator making the
    first over-threshold conversion ready to the buzzer pin going high. The floor is the median
    filter's one-period delay (the alarm needs a second over-threshold conversion). Episodes in
    which a read was discarded or the chip reset are counted as spoiled;
  - the emulator runs in this process, so whatever stalls the reader stalls its conversions
    too, which never happens to a real chip. ``..._emulator_ready_late_p99`` says how late they
    came against the chip's own 80/s schedule (taken from the earliest of the last 16), and
    ``..._alert_latency_from_due_*`` is the latency from when a real chip would have had the
    conversion ready: the stricter reading;
  - the driver's reads that did not go to plan: timeouts, and on spi the sync errors, silences,
    resets, races (a conversion may have fallen due during the read), reads held (their last
    8 bits are ones, as after a chip reset inside the read: held until the next conversion
    confirms them; the fresher code then takes their place, so an alarm episode whose first
    over-threshold conversion is held alarms a period later: spoiled, and counted on its own
    line, ``..._alert_latency_episodes_with_a_held_read``) and schedule drops.

- ``spi_own_clock``: the chip converts on its own clock (``HX711Chip.run_on_clock``), with no
  thread that can be late: each conversion is made when the bus next touches the chip, at the
  time it fell due, so a stalled reader finds the conversions where a real chip's oscillator
  would have put them. The conversions made count every one due, those replaced before the
  reader looked included, so the lost conversions are the ones a real chip loses: converted again
  before the previous was read. The alert latency is from when the first over-threshold
  conversion fell due (the force steps only once every conversion due has been made with the
  force before), so there is no ``..._emulator_ready_late_p99`` or ``..._from_due_*`` line: the
  latency is already from due. ``spi_edge`` stays free-running: its data-ready edge needs
  someone to make the conversion at its due time, and that is a thread that can be late.

- stall load: one thread that holds the GIL in 2-5 ms bursts (sorting a list of floats: one C
  call that never releases it; the sizes are calibrated at start, and each run prints the bursts
  it measured) with 1-3 ms gaps, plus one CPU-bound child process, for the whole run.

The gpio runs use the daemon's switch interval (``SWITCH_INTERVAL_S``), the spi runs Python's
default, as ``run.run_daemon`` does.
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpiozero import Device

from dermaguard.common.clock import RealClock
from dermaguard.config.load import Config, default_config, parse_config
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.engine import Engine
from dermaguard.core.events import ForceRead
from dermaguard.daemon.app import build_engine
from dermaguard.daemon.run import SWITCH_INTERVAL_S
from dermaguard.daemon.runtime import Runtime
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.hx711_spi import HX711Spi
from dermaguard.hw.indicators import Indicators
from dermaguard.hw.pins import install_pin_factory
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.sim.pins import BoundedMockPin, mock_factory
from dermaguard.sim.spi_bus import SimSpiBus
from figures import line, pct

PERIOD_MS = 1000 / 80
PERIOD_NS = 1_000_000_000 // 80
COUNTS_PER_N = LoadModel().counts_per_newton
OFFSET = LoadModel().offset_counts
VARIANTS = ("spi", "spi_edge", "gpio", "spi_own_clock")
#: The variant whose chip converts on its own clock (:meth:`HX711Chip.run_on_clock`).
OWN_CLOCK = "spi_own_clock"
#: The data-ready GPIO of ``spi_edge``: the bit-banged DOUT pin, free on the SPI interface.
READY_GPIO = default_config().pins.hx711_dout
#: The emulator's schedule is taken from the earliest of this many recent conversions.
SCHEDULE_WINDOW = 16
STALL_BURST_MS = (2.0, 5.0)
STALL_GAP_MS = (1.0, 3.0)
#: The CPU-bound child: ends on its own at its deadline, or soon after this process dies.
BUSY_CHILD = (
    "import os, sys, time\n"
    "parent = os.getppid()\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end and os.getppid() == parent:\n"
    "    for _ in range(100_000):\n"
    "        pass\n"
)


def calibration() -> Calibration:
    return Calibration(offset=OFFSET, scale_n_per_count=1 / COUNTS_PER_N)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def per_10k(count: float, of: float) -> float:
    return 10_000 * count / of if of else math.nan


def bench_core(n: int) -> None:
    rng = random.Random(1)
    raws = []
    for i in range(n):
        force = 2.5 + 1.5 * math.sin(i / 40) + (3.0 if (i // 400) % 5 == 4 else 0.0)
        raws.append(int(OFFSET + (force + rng.gauss(0, 0.02)) * COUNTS_PER_N))
    times = _time_core(raws, in_session=False)
    line("core_per_sample_median", statistics.median(times), "us")
    line("core_per_sample_p99", pct(times, 0.99), "us")
    line("core_p99_share_of_80sps_period", pct(times, 0.99) / (PERIOD_MS * 1000), "fraction")
    # Passes of 128 samples (1.6 s at 80/s) and lifts of 48 (0.6 s), the force swaying.
    raws = []
    for i in range(n):
        force = 0.0 if i % 176 >= 128 else 2.0 + 0.8 * math.sin(i / 30)
        raws.append(int(OFFSET + (force + rng.gauss(0, 0.02)) * COUNTS_PER_N))
    times = _time_core(raws, in_session=True)
    line("core_in_session_per_sample_median", statistics.median(times), "us")
    line("core_in_session_per_sample_p99", pct(times, 0.99), "us")


def _time_core(raws: list[int], *, in_session: bool) -> list[float]:
    """µs per ``Engine.handle`` of each code at 80/s, the first tenth left out (warm-up)."""
    engine = build_engine(default_config(), calibration())
    if in_session:
        engine.handle(DockChanged(0.0, False))  # out of the dock: the first contact opens one
    times: list[float] = []
    for i, raw in enumerate(raws):
        t0 = time.perf_counter_ns()
        engine.handle(ForceRead(i / 80, raw))
        times.append((time.perf_counter_ns() - t0) / 1000)
    return times[len(raws) // 10 :]


def bench_host_pauses(seconds: float) -> None:
    """Time a loop that only reads the clock: every gap is the host, not our code."""
    gaps: list[int] = []
    starts: list[int] = []
    gc.disable()
    try:
        last = time.perf_counter_ns()
        end = last + int(seconds * 1e9)
        while last < end:
            now = time.perf_counter_ns()
            if now - last > 50_000:
                gaps.append(now - last)
                starts.append(last)
            last = now
    finally:
        gc.enable()
    line("host_pauses_over_50us", len(gaps) / seconds, "per_s")
    line("host_pause_max", max(gaps, default=0) / 1000, "us")
    if len(starts) > 2:
        # A timer tick that costs the host 50+ µs shows up as one interval (250 Hz: 4 ms).
        intervals = collections.Counter(round((b - a) / 1e6) for a, b in itertools.pairwise(starts))
        line("host_pause_commonest_interval", intervals.most_common(1)[0][0], "ms")


# -- the stall load ------------------------------------------------------------------------------


def _sort_ms(data: list[float], n: int) -> float:
    """Median time of sorting the first ``n`` values (one GIL-holding C call), in ms."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        sorted(data[:n])
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def calibrate_stall() -> tuple[list[float], int, int]:
    """Random floats and the list sizes whose sort holds the GIL for 2 and for 5 ms here."""
    rng = random.Random(3)
    data = [rng.random() for _ in range(50_000)]
    sizes = []
    for target_ms in STALL_BURST_MS:
        n = 20_000
        for _ in range(4):  # sorting is n log n: a few proportional steps converge
            if n > len(data):
                data += [rng.random() for _ in range(n - len(data))]
            n = max(1000, round(n * target_ms / _sort_ms(data, n)))
        if n > len(data):
            data += [rng.random() for _ in range(n - len(data))]
        sizes.append(n)
    lo, hi = sizes
    print(f"# stall load: sorting {lo:,} to {hi:,} floats per burst")
    line("stall_burst_calibrated_min", _sort_ms(data, lo), "ms")
    line("stall_burst_calibrated_max", _sort_ms(data, hi), "ms")
    return data, lo, hi


class StallLoad:
    """A thread holding the GIL in 2-5 ms bursts with short gaps, and one CPU-bound process.

    Both are bounded in time: the thread and the child stop at ``max_s`` on their own, and
    :meth:`stop` ends them before that.
    """

    def __init__(
        self,
        data: list[float],
        lo: int,
        hi: int,
        max_s: float,
        *,
        gap_ms: tuple[float, float] = STALL_GAP_MS,
        child: bool = True,
    ) -> None:
        self._data = data
        self._lo = lo
        self._hi = hi
        self._max_s = max_s
        self._gap_s = (gap_ms[0] / 1000, gap_ms[1] / 1000)
        self._with_child = child
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._t0 = 0
        self.wall_ns = 0
        self.bursts_ns: list[int] = []
        #: (start, end) perf_counter_ns of every burst longer than a sample period.
        self.long_bursts: list[tuple[int, int]] = []

    def start(self) -> None:
        if self._with_child:
            argv = [sys.executable, "-c", BUSY_CHILD, str(self._max_s)]
            self._child = subprocess.Popen(argv)
        self._t0 = time.perf_counter_ns()
        self._thread = threading.Thread(target=self._run, name="stall", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = random.Random(4)
        data = self._data
        deadline = time.monotonic() + self._max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            n = rng.randint(self._lo, self._hi)
            t0 = time.perf_counter_ns()
            sorted(data[:n])
            t1 = time.perf_counter_ns()
            self.bursts_ns.append(t1 - t0)
            if t1 - t0 > PERIOD_NS:
                self.long_bursts.append((t0, t1))
            self._stop.wait(rng.uniform(*self._gap_s))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.wall_ns = time.perf_counter_ns() - self._t0
        child = self._child
        if child is not None:
            child.terminate()
            try:
                child.wait(5.0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5.0)

    def report(self, prefix: str) -> None:
        bursts = [b / 1e6 for b in self.bursts_ns]
        if not bursts:
            return
        line(f"{prefix}_burst_median_ms", statistics.median(bursts), "ms")
        line(f"{prefix}_burst_p99_ms", pct(bursts, 0.99), "ms")
        line(f"{prefix}_burst_max_ms", max(bursts), "ms")
        line(f"{prefix}_gil_share", sum(self.bursts_ns) / self.wall_ns, "fraction")
        # A burst longer than a period costs a conversion on a real chip too: it converts again
        # before any Python thread can read the last one.
        line(f"{prefix}_bursts_over_one_period", len(self.long_bursts), "bursts")


# -- one variant in real time --------------------------------------------------------------------


class RecordingPin(BoundedMockPin):
    """A mock output pin that notes when it goes high (perf_counter_ns) and says so."""

    rises: list[int]
    rose: threading.Event

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        if changed and value:
            self.rises.append(time.perf_counter_ns())
            self.rose.set()
        return changed


class ReadLogBus(SimSpiBus):
    """The bus model, noting which conversion each completed read clocked out.

    The number is taken before the transfer, once the chip has caught up with its own clock
    (free-running, the tick does nothing and no conversion lands while the transfer holds the
    lock): a conversion falling due mid-read does not make the read count as its.
    """

    def __init__(self, chip: HX711Chip, *, hz: int, mode: int) -> None:
        super().__init__(chip, hz=hz, mode=mode)
        #: The chip's conversion count (1 = its first) of every conversion read.
        self.read_conversions: set[int] = set()

    def transfer(self, data: Sequence[int]) -> list[int]:
        chip = self.chip
        with chip.hold():  # no conversion between the read and the count
            chip.tick()
            before, number = chip.reads_completed, chip.conversions
            miso = super().transfer(data)
            if chip.reads_completed > before:
                self.read_conversions.add(number)
        return miso


def variant_config(variant: str) -> Config:
    """The config the daemon would run this variant with (validated like a config file)."""
    if variant == "gpio":
        return parse_config({"hx711": {"interface": "gpio"}}, variant)
    ready = READY_GPIO if variant == "spi_edge" else None  # spi, spi_own_clock: polling
    return parse_config({"hx711": {"interface": "spi"}, "pins": {"hx711_ready": ready}}, variant)


def open_variant(
    config: Config, factory: Any
) -> tuple[HX711Chip, HX711 | HX711Spi, ReadLogBus | None]:
    """The emulated chip, the driver on it as ``load_cell.open_load_cell`` opens it on a Pi (there
    the bus is the kernel's; here the bus model stands in for it), and the bus on spi."""
    hx, pins = config.hx711, config.pins
    load = LoadModel(noise_counts=200)
    driver: HX711 | HX711Spi
    bus: ReadLogBus | None = None
    if hx.interface == "gpio":
        chip = HX711Chip(factory, pins.hx711_dout, pins.hx711_sck, load=load)
        driver = HX711(
            pins.hx711_dout,
            pins.hx711_sck,
            gain=hx.gain,
            rate_sps=hx.rate_sps,
            max_clock_high_us=hx.max_clock_high_us,
        )
    else:
        ready = pins.hx711_ready
        dout = hx.spi.pins()["miso"] if ready is None else ready
        chip = HX711Chip(factory, dout, None, load=load)
        bus = ReadLogBus(chip, hz=hx.spi.hz, mode=hx.spi.mode)
        driver = HX711Spi(
            bus,
            gain=hx.gain,
            rate_sps=hx.rate_sps,
            hz=hx.spi.hz,
            ready_pin=ready,
            pin_factory=factory,
        )
    driver.reset()
    return chip, driver, bus


@dataclass
class Tally:
    """The chip's counts at one moment; a conversion made and not yet read is pending."""

    conversions: int
    reads: int
    pending: int
    chip_resets: int
    discarded: int

    @classmethod
    def take(cls, chip: HX711Chip, driver: HX711 | HX711Spi) -> Tally:
        with chip.hold():
            pending = int(not chip.dout or 0 < chip.pulses < 25)
            counts = (chip.conversions, chip.reads_completed, pending, chip.power_down_count)
        return cls(*counts, driver.discarded)


def driver_counters(driver: HX711 | HX711Spi) -> dict[str, int]:
    """The driver's counts of reads that did not go to plan (the SPI driver says why)."""
    counts = {"timeouts": driver.timeouts}
    if isinstance(driver, HX711Spi):
        counts |= {
            "sync_errors": driver.sync_errors,
            "silences": driver.silences,
            "resets": driver.resets,
            "races": driver.races,
            "held": driver.held,
            "schedule_drops": driver.schedule_drops,
        }
    return counts


def late_ns(ready: list[int]) -> list[int]:
    """How late each conversion came against the emulator's 80/s schedule.

    The schedule is the earliest that the last :data:`SCHEDULE_WINDOW` conversions allow, each
    carried forward by whole periods (so a period without a conversion, while the chip settles
    after a reset, keeps the grid).
    """
    out = []
    for k, t in enumerate(ready):
        due = min(
            tj + round((t - tj) / PERIOD_NS) * PERIOD_NS
            for tj in ready[max(0, k - SCHEDULE_WINDOW + 1) : k + 1]
        )
        out.append(t - due)
    return out


def clock_offset_ns() -> int:
    """``perf_counter_ns`` minus the chip's clock (``time.monotonic``) in ns: to put the due
    times of an own-clock chip on the buzzer's time line (the same clock on Linux)."""
    t0 = time.perf_counter_ns()
    mono = time.monotonic_ns()
    t1 = time.perf_counter_ns()
    return (t0 + t1) // 2 - mono


@dataclass
class Episodes:
    latencies_ms: list[float] = field(default_factory=list)
    from_due_ms: list[float] = field(default_factory=list)
    unspoiled_ms: list[float] = field(default_factory=list)
    #: Episodes in which the SPI driver held a read (its last 8 bits ones): among the spoiled.
    held: int = 0


def run_variant(
    variant: str, episodes: int, stall: StallLoad | None, default_switch: float
) -> tuple[Engine, dict[str, float]]:
    """One run; prints its figures and returns the engine and the ones the targets name."""
    prefix = variant + ("_stall" if stall is not None else "")
    config = variant_config(variant)
    sys.setswitchinterval(SWITCH_INTERVAL_S if variant == "gpio" else default_switch)
    factory = mock_factory()
    install_pin_factory(factory)
    pins = config.pins
    chip, driver, bus = open_variant(config, factory)
    buzzer_pin = factory.pin(pins.buzzer, pin_class=RecordingPin)
    buzzer_pin.rises = []
    buzzer_pin.rose = threading.Event()
    over_code = OFFSET + config.pressure.zones.over_n * COUNTS_PER_N
    ready_log: list[int] = []
    first_over: list[int | None] = [None]  # index into ready_log

    def on_ready(code: int, ready_ns: int) -> None:
        ready_log.append(ready_ns)
        if code >= over_code and first_over[0] is None:
            first_over[0] = len(ready_log) - 1

    chip.on_ready = on_ready
    own_clock = variant == OWN_CLOCK
    #: Own clock: when each conversion fell due (perf_counter_ns), by its number.
    due_log: dict[int, int] = {}
    if own_clock:
        offset_ns = clock_offset_ns()

        def on_due(number: int, at: float) -> None:
            due_log[number] = round(at * 1e9) + offset_ns

        chip.on_due = on_due
    indicators = Indicators(pins.led_red, pins.led_green, pins.led_blue, pins.buzzer)
    engine = build_engine(config, calibration())
    runtime = Runtime(engine, RealClock(), indicators, driver, rate_sps=80)
    rng = random.Random(2)
    # (buzzer rise, conversion index (own clock: its number), unspoiled, a read held)
    found: list[tuple[int, int, bool, bool]] = []
    runtime.start()
    if own_clock:
        chip.run_on_clock()
    else:
        chip.start()
    if stall is not None:
        stall.start()
    try:
        time.sleep(0.3)  # the reset chip settles (50 ms) and the filters fill
        before = Tally.take(chip, driver)
        reads0, rescued0 = driver.reads, getattr(driver, "rescued", 0)
        counters0 = driver_counters(driver)
        for _ in range(episodes):
            chip.force_n = 2.0
            time.sleep(0.1 + rng.random() * PERIOD_MS / 1000)  # a random phase to the chip
            buzzer_pin.rises.clear()
            buzzer_pin.rose.clear()
            first_over[0] = None
            spoilers = (chip.power_down_count, driver.discarded)
            held = getattr(driver, "held", 0)
            with chip.hold():
                # On its own clock the chip makes a conversion only when next touched: first
                # every one due so far, with the force before the step. The next one made is
                # then the first over the threshold (free-running: on_ready finds it).
                chip.tick()
                step = chip.conversions + 1
                chip.force_n = 6.0
            # Block on an event, not a polling loop: a thread waking every millisecond makes
            # timer interrupts on this very CPU, and each one is a chance to stall the reader.
            buzzer_pin.rose.wait(1.0)
            index = (step if step in due_log else None) if own_clock else first_over[0]
            if buzzer_pin.rises and index is not None:
                unspoiled = (chip.power_down_count, driver.discarded) == spoilers
                was_held = getattr(driver, "held", 0) != held
                found.append((buzzer_pin.rises[0], index, unspoiled, was_held))
            chip.force_n = 1.0
            # Wait (bounded) for the alarm to clear and the buzzer to stop, so that the next
            # episode starts from silence; nothing is timed here.
            clear_by = time.monotonic() + 1.0
            while (engine.pressure.over_pressure or buzzer_pin.state) and (
                time.monotonic() < clear_by
            ):
                time.sleep(0.005)
        after = Tally.take(chip, driver)
        reads = driver.reads - reads0
        counters = {k: v - counters0[k] for k, v in driver_counters(driver).items()}
        peak = runtime.inputs.peak
    finally:
        if stall is not None:
            stall.stop()
        chip.stop()
        runtime.stop()
        indicators.close()
        driver.close()
        chip.close()
        factory.close()
        Device.pin_factory = None

    conversions = after.conversions - before.conversions
    read = after.reads - before.reads
    lost = conversions - read - (after.pending - before.pending)
    line(f"{prefix}_conversions", conversions, "conversions")
    line(f"{prefix}_conversions_read", read, "conversions")
    line(f"{prefix}_lost_per_10k", per_10k(lost, conversions), "per_10k")
    discarded = after.discarded - before.discarded
    line(f"{prefix}_reads_discarded_per_10k", per_10k(discarded, conversions), "per_10k")
    line(f"{prefix}_chip_resets", after.chip_resets - before.chip_resets, "resets")
    line(f"{prefix}_input_queue_peak", peak, "samples")
    line(f"{prefix}_input_queue_bound", runtime.inputs.bound, "samples")
    line(f"{prefix}_inputs_dropped", runtime.inputs.dropped, "samples")
    for name, count in counters.items():
        line(f"{prefix}_driver_{name}", count, name)
    if isinstance(driver, HX711Spi) and driver.data_ready == "poll":
        line(f"{prefix}_polls_per_read", driver.polls / max(1, driver.reads), "polls")
    if isinstance(driver, HX711):
        line(
            f"{prefix}_reads_rescued_per_10k", per_10k(driver.rescued - rescued0, reads), "per_10k"
        )

    if bus is not None:
        first, last = before.conversions + 1, after.conversions - after.pending
        lost_at = [
            due_log[i] if own_clock else ready_log[i - 1]
            for i in range(first, last + 1)
            if i not in bus.read_conversions
        ]
        long_bursts = stall.long_bursts if stall is not None else []
        beside = sum(
            any(start < t + PERIOD_NS and end > t for start, end in long_bursts) for t in lost_at
        )
        # A conversion is lost when no read comes within the period after it; a GIL burst
        # longer than that period, overlapping it, leaves no Python thread a chance to read.
        line(f"{prefix}_lost_beside_a_gil_burst_over_one_period", beside, "conversions")
        other = len(lost_at) - beside
        line(f"{prefix}_lost_otherwise_per_10k", per_10k(other, conversions), "per_10k")
    # On its own clock a conversion is ready when it falls due: the latency is from then, and
    # there is no emulator to be late.
    late = [] if own_clock else late_ns(ready_log)
    eps = Episodes()
    for rise, index, unspoiled, was_held in found:
        eps.held += was_held
        if own_clock:
            eps.latencies_ms.append((rise - due_log[index]) / 1e6)
        else:
            eps.latencies_ms.append((rise - ready_log[index]) / 1e6)
            eps.from_due_ms.append((rise - ready_log[index] + late[index]) / 1e6)
        if unspoiled:
            eps.unspoiled_ms.append(eps.latencies_ms[-1])
    report_latency(prefix, eps)
    key = {"lost_per_10k": per_10k(lost, conversions)}
    if eps.latencies_ms:
        key["p99_periods"] = pct(eps.latencies_ms, 0.99) / PERIOD_MS
        key["from_due_p99_periods"] = pct(eps.from_due_ms or eps.latencies_ms, 0.99) / PERIOD_MS
    if late:
        line(f"{prefix}_emulator_ready_late_p99", pct([x / 1e6 for x in late], 0.99), "ms")
    if stall is not None:
        stall.report(f"{prefix}")
    return engine, key


def report_latency(prefix: str, eps: Episodes) -> None:
    lat = eps.latencies_ms
    line(f"{prefix}_alert_latency_episodes", len(lat), "alarms")
    if not lat:
        return
    for name, value in (
        ("median", statistics.median(lat)),
        ("p99", pct(lat, 0.99)),
        ("max", max(lat)),
    ):
        line(f"{prefix}_alert_latency_{name}_ms", value, "ms")
        line(f"{prefix}_alert_latency_{name}_periods", value / PERIOD_MS, "sample_periods")
    spoiled = len(lat) - len(eps.unspoiled_ms)
    line(f"{prefix}_alert_latency_episodes_spoiled", spoiled, "alarms")
    if prefix.startswith("spi"):
        # A held read is dropped once the next conversion comes: the alarm waits a period more.
        line(f"{prefix}_alert_latency_episodes_with_a_held_read", eps.held, "alarms")
    if spoiled and eps.unspoiled_ms:
        p99 = pct(eps.unspoiled_ms, 0.99) / PERIOD_MS
        line(f"{prefix}_alert_latency_unspoiled_p99_periods", p99, "sample_periods")
    due = eps.from_due_ms
    if not due:  # own clock: the latency is already from when the conversion was due
        return
    line(
        f"{prefix}_alert_latency_from_due_p99_periods", pct(due, 0.99) / PERIOD_MS, "sample_periods"
    )
    line(f"{prefix}_alert_latency_from_due_max_periods", max(due) / PERIOD_MS, "sample_periods")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes, under a minute")
    parser.add_argument(
        "--core-only", type=int, metavar="N", help="only the core figures, over N samples"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: can every figure still be made?"
    )
    parser.add_argument(
        "--episodes", type=int, help="alarm episodes per run (default: 30 quick, 300 full)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: all)",
    )
    parser.add_argument(
        "--stall-gap-ms",
        default=",".join(f"{g:g}" for g in STALL_GAP_MS),
        help="shortest,longest gap between GIL bursts (default: %(default)s)",
    )
    parser.add_argument(
        "--no-stall-child",
        action="store_true",
        help="leave out the CPU-bound child process (to tell its share of the stall apart)",
    )
    args = parser.parse_args()
    try:
        gap_lo, gap_hi = (float(g) for g in args.stall_gap_ms.split(","))
    except ValueError:
        parser.error(f"--stall-gap-ms: {args.stall_gap_ms!r} is not two numbers, e.g. 1,3")
    if not 0 <= gap_lo <= gap_hi:
        parser.error(f"--stall-gap-ms: {args.stall_gap_ms!r} needs 0 <= shortest <= longest")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: {','.join(unknown) or '(none)'} not in {', '.join(VARIANTS)}")
    quick = args.quick or args.smoke
    default_episodes = 2 if args.smoke else 30 if args.quick else 300
    episodes = args.episodes if args.episodes is not None else default_episodes
    if episodes < 1:
        parser.error(f"--episodes: {episodes} must be at least 1")
    default_switch = sys.getswitchinterval()
    print(f"# {os.cpu_count()} CPUs; load average {load_average()}")
    if args.core_only is not None:
        bench_core(args.core_only)
        return
    bench_host_pauses(0.2 if args.smoke else 1.0 if quick else 5.0)
    bench_core(2_000 if args.smoke else 20_000 if quick else 200_000)
    data, lo, hi = calibrate_stall()
    # Bounds the stall load of one run: far more than its episodes take.
    max_s = 30 + episodes * 1.5
    engine: Engine | None = None
    keys: dict[tuple[str, bool], dict[str, float]] = {}
    for stalled in (False, True):
        for variant in variants:
            stall = None
            if stalled:
                gaps = (gap_lo, gap_hi)
                stall = StallLoad(data, lo, hi, max_s, gap_ms=gaps, child=not args.no_stall_child)
            # Other work on this machine shows in every figure: say how busy it was.
            print(f"# {variant}{'_stall' if stalled else ''}: load average {load_average()}")
            engine, keys[variant, stalled] = run_variant(variant, episodes, stall, default_switch)
    sys.setswitchinterval(default_switch)
    assert engine is not None
    line("alarm_stated_filter_delay", engine.pressure.alarm_delay_samples, "sample_periods")
    summarize(variants, keys)
    print(f"# load average at the end {load_average()}")


#: The spi targets: (lost per 10,000, alert latency p99 in periods), without and with the stall.
TARGETS = {False: (0.0, 1.25), True: (10.0, 1.5)}


def summarize(variants: list[str], keys: dict[tuple[str, bool], dict[str, float]]) -> None:
    """The figures the targets name, side by side (the targets are for spi; gpio is the
    baseline, and spi_edge the other data-ready choice)."""
    print("# targets (spi): lost/10k 0 and alert p99 <= 1.25 periods; stalled <= 10 and <= 1.5")
    for variant in variants:
        for stalled in (False, True):
            key = keys[variant, stalled]
            lost_max, p99_max = TARGETS[stalled]
            p99 = key.get("p99_periods", math.nan)
            due = key.get("from_due_p99_periods", math.nan)
            met = key["lost_per_10k"] <= lost_max and p99 <= p99_max
            met_due = met and due <= p99_max
            label = f"{variant}{'_stall' if stalled else ''}"
            print(
                f"# {label:<19} lost/10k {key['lost_per_10k']:7.1f}  alert p99 {p99:5.2f} periods"
                f" (from due {due:5.2f})  within the spi targets: "
                f"{'yes' if met else 'no'} (from due: {'yes' if met_due else 'no'})"
            )


if __name__ == "__main__":
    main()
