"""The whole daemon in simulation at 80 samples/s with MQTT to a local broker, per interface.

The daemon runs once per HX711 interface, set through the scenario's ``config:``: ``spi``
(data-ready by polling DOUT over the bus), ``spi_edge`` (the same with ``pins.hx711_ready``, a
GPIO also wired to DOUT) and ``gpio`` (bit-banged, the baseline), each in its own state
directory. Prints one ``<interface>_<figure>: value unit`` line per figure (``#`` lines are
context):

- start-up time to the first sample: from spawning ``dermaguard run --simulate`` to the first
  retained ``state`` that carries a force (published after the first processed sample). A
  cold start includes calibrating the emulated load cell (first run in a state directory), a
  warm start reads the stored calibration, as a daemon on a Pi does (target: within 2 s);
- CPU use as a fraction of one core over a steady stretch of rolling (the roller out of the dock,
  live force at 10 Hz over MQTT), from the process's own utime + stime in /proc (target for
  spi: ≤ 3 %). The HX711 emulator runs in the same process (on spi with the SPI controller model,
  which clocks every bit of a transfer in Python where a Pi's kernel hands the bytes to the
  controller), so the figure is an upper bound for the daemon;
- peak resident memory (VmHWM) at the end (target ≤ 60 MB);
- on spi, the CPU the SPI controller model alone takes at 80 reads/s (measured in this process:
  the driver reading the free-running emulated chip, timing the thread's CPU inside each
  transfer), and the daemon's figure less it: an estimate of the daemon's own share, since the
  kernel's SPI transfer on a Pi costs a system call instead;
- on spi, what reading the chip costs in SPI transfers and wake-ups: the driver reading the
  emulated chip in this process, counting every transfer (data-ready polls, reads, resets) per
  conversion read, and the reading thread's wake-ups (its voluntary context switches, from
  /proc) per second, after a second of reading (the board's rate measured and the schedule
  locked). Polling, the chip converts on its own clock, exactly on time as a real chip's
  oscillator does (the free-running emulator's thread wakes late by whatever the host makes it,
  and the driver rightly stops trusting its schedule); with the data-ready GPIO, the free-running
  emulator drives the edge. Printed as ``spi_transfers_per_conversion``,
  ``spi_wakeups_per_second`` and the same with ``spi_ready_`` for the GPIO (target for polling:
  ≤ 1.5 transfers a conversion). Counts, not times: meaningful on a busy machine too;
- the emulator's own threads' CPU (the scenario player and the chip's threads, told apart
  through ``bench/daemon_threads.py``, which keeps a map of thread names), and the daemon's
  figure less the emulator: those threads and, on spi, the bus model as measured above. That
  is an estimate of the daemon's own share on this machine (the figure the ≤ 3 % target is
  about): the bus model is timed in another process than the daemon's;
- on spi, the daemon's own CPU per conversion, measured with nothing estimated: the same
  daemon run once more (warm, rolling, MQTT on, a session recorded) with the simulation's
  frames bus (``DERMAGUARD_SIM_SPI_BUS=frames``, :class:`dermaguard.sim.spi_bus.FrameSpiBus`),
  which answers the driver's polls and reads of waiting conversions with what the bit-level
  model would (``tests/hw/test_frame_bus.py``) at the cost of a lookup, so the bus costs next to
  nothing inside the sampler thread. Over the steady window, the process's CPU less the
  emulator's threads (each thread's utime + stime from ``/proc/<pid>/task``), divided by the
  conversions the emulated chip clocked out in the same window (counted in the daemon's process
  and written with the thread map). Printed as ``spi_daemon_cpu_us_per_conversion`` (polling)
  and ``spi_ready_daemon_cpu_us_per_conversion`` (the data-ready GPIO), with a ``#`` line
  giving the run's process and emulator CPU, conversions read per second and the share of
  transfers the frames bus answered at once (the run fails if it answered none). Target for
  polling: ≤ 100 µs. An emulator thread that ends within the window, or lives between two
  rewrites of the map (the chip's helper finishing a deferred conversion), is counted as the
  daemon's: the figure errs high, never low. Beside it, a count the host does not move: the
  daemon's own threads' wake-ups per conversion over the same window (voluntary context
  switches from ``/proc``: each sleep, wait, lock or GIL hand-over that blocked a thread), as
  ``spi_daemon_wakeups_per_conversion`` and ``spi_ready_daemon_wakeups_per_conversion``, with a
  ``#`` line by thread.

- what a bare hand-off costs on this host: one thread sleeping a period and waking a second
  one through a condition, 80 times a second, both threads' CPU per item
  (``host_handoff_cpu_us``), beside a bare wake-up from ``time.sleep`` and from a timed
  ``Event.wait`` (``host_sleep_wake_cpu_us``, ``host_timed_wait_wake_cpu_us``): the floor of
  the daemon's figure per conversion on the host, which a hypervisor raises far above a Pi's;
- what the host's sleeps do to the work after them: the CPU of one ``Engine.handle`` of a
  force sample back to back (``host_engine_sample_hot_cpu_us``, what a loop such as
  ``bench/pressure.py --core-only`` measures) and after sleeping one period
  (``host_engine_sample_after_sleep_cpu_us``, as the daemon runs it): the same code on the same
  data, so the ratio is the host's, and it applies to every line a conversion runs.

``--quick`` measures 15 s of rolling per run (the spi variants make two runs each; about 3
minutes in all); the default is 60 s.
``--smoke`` runs the two spi variants for 2 s each: every figure, none of them meaningful.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

from broker import LOOPBACK, BenchFailure, Broker, mosquitto_version
from dermaguard.config.load import default_config, simulation_device_id
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import DockChanged
from dermaguard.core.events import ForceRead
from dermaguard.daemon.app import build_engine
from dermaguard.hw.hx711_protocol import NotReady, ReadDiscarded
from dermaguard.hw.hx711_spi import HX711Spi
from dermaguard.hw.pins import install_pin_factory
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.sim.pins import mock_factory
from dermaguard.sim.spi_bus import BUS_MODEL_ENV, SimSpiBus
from figures import line

DEVICE = "benchdaemon"
#: The simulation publishes as its own device (see dermaguard.config.load.simulation_device_id).
SIM_DEVICE = simulation_device_id(DEVICE)
TICKS = os.sysconf("SC_CLK_TCK")
DEFAULTS = default_config()
#: The data-ready GPIO of ``spi_edge``: the bit-banged DOUT pin, free on the SPI interface.
READY_GPIO = DEFAULTS.pins.hx711_dout
#: SPI0's MISO, which sees DOUT when no data-ready GPIO is wired.
MISO = DEFAULTS.hx711.spi.pins()["miso"]
#: Interface and data-ready GPIO (None: poll over the bus) of each variant.
VARIANTS: dict[str, tuple[str, int | None]] = {
    "spi": ("spi", None),
    "spi_edge": ("spi", READY_GPIO),
    "gpio": ("gpio", None),
}

SCENARIO = """
name: steady_rolling
description: out of the dock and rolling at a steady, safe force for the whole run
duration_s: {duration}
initial: {{lid: open, dock: out}}
config:
  device_id: {device}
  hx711: {{interface: {interface}}}
  pins: {{hx711_ready: {ready}}}
force:
  - {{t: 0, n: 0}}
  - {{t: 1, n: 2.0}}
  - {{t: {end}, n: 2.2}}
"""


class FirstSample:
    """Subscribes to the device's state; notes when a state with a known force arrives."""

    def __init__(self, port: int) -> None:
        self.seen = threading.Event()
        self.t: float | None = None
        self.force_msgs = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_a: c.subscribe(f"dermaguard/{SIM_DEVICE}/#", qos=1)
        self._client.connect(LOOPBACK, port)
        self._client.loop_start()

    def reset(self) -> None:
        self.seen.clear()
        self.t = None
        self.force_msgs = 0

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/force"):
            self.force_msgs += 1
        fresh = msg.topic.endswith("/state") and not msg.retain and not self.seen.is_set()
        if fresh and json.loads(msg.payload).get("force_n") is not None:
            self.t = time.perf_counter()
            self.seen.set()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def cpu_s(pid: int) -> float:
    return cpu_s_path(Path(f"/proc/{pid}/stat"))


#: Threads of the simulated hardware, not of the daemon: the scenario player, the chip's own
#: threads (free-running, or finishing a deferred conversion) and the benchmark's thread map.
EMULATOR_THREADS = ("sim-hardware", "hx711-chip", "_finish_deferred", "bench-map")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of ``pid``, by native thread id."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[task.name] = cpu_s_path(task / "stat")
        except OSError:
            continue  # the thread ended meanwhile
    return out


def thread_wakeups(pid: int) -> dict[str, float]:
    """Voluntary context switches so far of each thread of ``pid`` (each a block and a wake:
    a sleep, a wait, a lock or the GIL), by native thread id."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            rows = (task / "status").read_text().splitlines()
        except OSError:
            continue  # the thread ended meanwhile
        for row in rows:
            if row.startswith("voluntary_ctxt_switches:"):
                out[task.name] = float(row.split()[1])
    return out


def cpu_s_path(stat: Path) -> float:
    """CPU seconds (user + system) from a /proc stat file, of a process or of one thread."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def emulator_cpu_s(before: dict[str, float], after: dict[str, float], names: Path) -> float:
    """CPU the emulator's threads took between two thread snapshots."""
    known = json.loads(names.read_text())["threads"]
    spent = 0.0
    for tid, cpu in after.items():
        name = known.get(tid, "")
        if any(part in name for part in EMULATOR_THREADS):
            spent += cpu - before.get(tid, 0.0)
    return spent


def own_threads_growth(
    before: dict[str, float], after: dict[str, float], names: Path
) -> dict[str, float]:
    """What a per-thread counter (CPU seconds, wake-ups) of the daemon's own threads grew by
    between two snapshots, by thread name (a thread that ended between them is lost; one
    started meanwhile counts from zero)."""
    known = json.loads(names.read_text())["threads"]
    grown: dict[str, float] = {}
    for tid, count in after.items():
        name = known.get(tid, "?")
        if any(part in name for part in EMULATOR_THREADS):
            continue
        name = "paho" if name.startswith("paho-mqtt-client") else name
        grown[name] = grown.get(name, 0.0) + count - before.get(tid, 0.0)
    return grown


def fresh_map(names: Path, timeout_s: float = 5.0) -> dict[str, float]:
    """The thread map's counts as soon as it is next rewritten (``bench/daemon_threads.py``),
    so that they are taken within milliseconds of the /proc snapshot that follows."""

    def read() -> dict[str, float] | None:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(names.read_text()))
        return None

    first = read()
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        now = read()
        if now is not None and (first is None or now["at"] != first["at"]):
            return now
        time.sleep(0.005)
    raise BenchFailure(f"the thread map {names} was not rewritten within {timeout_s:g} s")


def peak_rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    raise BenchFailure("no VmHWM in /proc")


@dataclass
class Run:
    """What one daemon run measured; the rates are over the steady window (None: not
    measured)."""

    startup_s: float
    peak_rss_mb: float
    #: The process's CPU and the emulator threads' CPU, as fractions of one core.
    cpu: float | None = None
    emulator: float | None = None
    #: Conversions the daemon read per second, and the share of SPI transfers a frames bus
    #: answered at once.
    conversions_per_s: float | None = None
    fast_share: float | None = None
    #: CPU (µs) the frames bus spent per conversion inside the reading thread: the emulator's
    #: work still inside the daemon's figure.
    bus_us_per_conversion: float | None = None
    #: The daemon's own threads' CPU, as fractions of one core, by thread (paho's by its role).
    threads: dict[str, float] = field(default_factory=dict)
    #: The daemon's own threads' wake-ups (voluntary context switches) per second, by thread.
    wakeups: dict[str, float] = field(default_factory=dict)

    def daemon_cpu_us_per_conversion(self) -> float:
        """The daemon's own threads' CPU (the process less the emulator's threads) per
        conversion read."""
        assert self.cpu is not None and self.emulator is not None and self.conversions_per_s
        return (self.cpu - self.emulator) / self.conversions_per_s * 1e6


def run_once(
    scenario: Path,
    state: Path,
    port: int,
    watcher: FirstSample,
    measure_s: float,
    *,
    bus_model: str | None = None,
) -> Run:
    """One daemon run: start-up to the first sample, peak RSS and, with ``measure_s``, the CPU
    figures over a steady window. ``bus_model`` picks the simulation's SPI bus model
    (``frames``: transfers cost a lookup); ``None``, the exact default."""
    names = state.parent / f"{state.name}-threads.json"
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env["DG_THREAD_MAP"] = str(names)
    env.pop("STATE_DIRECTORY", None)
    env.pop(BUS_MODEL_ENV, None)
    if bus_model is not None:
        env[BUS_MODEL_ENV] = bus_model
    watcher.reset()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            *(sys.executable, str(Path(__file__).with_name("daemon_threads.py")), "run"),
            *("--simulate", str(scenario), "--mqtt", f"{LOOPBACK}:{port}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        if not watcher.seen.wait(30.0):
            raise BenchFailure("no state with a force within 30 s of start")
        assert watcher.t is not None
        run = Run(startup_s=watcher.t - t0, peak_rss_mb=0.0)
        if measure_s > 0:
            time.sleep(2.0)  # past start-up: imports, calibration and the first connects
            map0 = fresh_map(names)
            threads0 = thread_cpu_s(proc.pid)
            wakes0 = thread_wakeups(proc.pid)
            c0, w0, msgs0 = cpu_s(proc.pid), time.monotonic(), watcher.force_msgs
            time.sleep(measure_s)
            map1 = fresh_map(names)
            threads1 = thread_cpu_s(proc.pid)
            wakes1 = thread_wakeups(proc.pid)
            c1, w1, msgs1 = cpu_s(proc.pid), time.monotonic(), watcher.force_msgs
            run.cpu = (c1 - c0) / (w1 - w0)
            run.emulator = emulator_cpu_s(threads0, threads1, names) / (w1 - w0)
            run.threads = {
                name: spent / (w1 - w0)
                for name, spent in own_threads_growth(threads0, threads1, names).items()
            }
            run.wakeups = {
                name: woke / (w1 - w0)
                for name, woke in own_threads_growth(wakes0, wakes1, names).items()
            }
            reads = map1["conversions_read"] - map0["conversions_read"]
            run.conversions_per_s = reads / (map1["at"] - map0["at"])
            transfers = map1["transfers"] - map0["transfers"]
            fast = map1["fast_transfers"] - map0["fast_transfers"]
            run.fast_share = fast / transfers if transfers else None
            bus_ns = map1.get("bus_cpu_ns", 0) - map0.get("bus_cpu_ns", 0)
            run.bus_us_per_conversion = bus_ns / 1e3 / reads if reads else None
            print(f"# live force messages during the window: {(msgs1 - msgs0) / (w1 - w0):.1f}/s")
        run.peak_rss_mb = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise BenchFailure(f"daemon exited with {proc.returncode}: {err[-2000:]}")
    return run


class TimedBus(SimSpiBus):
    """The SPI controller model, noting the calling thread's CPU time inside each transfer."""

    cpu_ns = 0

    def transfer(self, data: Sequence[int]) -> list[int]:
        t0 = time.thread_time_ns()
        try:
            return super().transfer(data)
        finally:
            self.cpu_ns += time.thread_time_ns() - t0


def _close_rig(chip: HX711Chip, driver: HX711Spi, factory: MockFactory) -> None:
    """Stop the free-running chip and release the driver, the chip and the mock pins."""
    chip.stop()
    driver.close()
    chip.close()
    factory.close()
    Device.pin_factory = None


def bus_model_cpu(ready: int | None, seconds: float) -> float:
    """Fraction of one core the bus model takes while the driver reads at 80/s."""
    factory = mock_factory()
    install_pin_factory(factory)
    chip = HX711Chip(factory, MISO if ready is None else ready, None)
    bus = TimedBus(chip)
    driver = HX711Spi(bus, ready_pin=ready, pin_factory=factory)
    try:
        driver.reset()
        chip.start()
        time.sleep(0.2)  # the reset chip settles
        cpu0, t0 = bus.cpu_ns, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            with contextlib.suppress(NotReady, ReadDiscarded):  # a doubted read costs the same
                driver.read_raw(0.1)
        return (bus.cpu_ns - cpu0) / 1e9 / (time.perf_counter() - t0)
    finally:
        _close_rig(chip, driver, factory)


#: Reading before the counts start: the board's rate is measured and the schedule locked.
WARM_UP_S = 1.0


def voluntary_switches() -> int:
    """How often the calling thread has given up the CPU to wait (slept, blocked): its
    wake-ups."""
    for row in Path("/proc/thread-self/status").read_text().splitlines():
        if row.startswith("voluntary_ctxt_switches:"):
            return int(row.split()[1])
    raise BenchFailure("no voluntary_ctxt_switches in /proc/thread-self/status")


def reading_counts(ready: int | None, seconds: float) -> tuple[float, float]:
    """SPI transfers per conversion read, and the reading thread's wake-ups per second."""
    factory = mock_factory()
    install_pin_factory(factory)
    chip = HX711Chip(factory, MISO if ready is None else ready, None)
    bus = SimSpiBus(chip)
    driver = HX711Spi(bus, ready_pin=ready, pin_factory=factory)

    def read_for(span_s: float) -> None:
        end = time.perf_counter() + span_s
        while time.perf_counter() < end:
            with contextlib.suppress(NotReady, ReadDiscarded):
                driver.read_raw(0.1)

    try:
        driver.reset()
        if ready is None:
            chip.run_on_clock()  # a steady oscillator, as a real chip's
        else:
            chip.start()  # the edge needs the chip to convert by itself
        read_for(WARM_UP_S)
        transfers0, reads0, switches0 = bus.transfers, chip.reads_completed, voluntary_switches()
        t0 = time.perf_counter()
        read_for(seconds)
        elapsed = time.perf_counter() - t0
        reads = chip.reads_completed - reads0
        switches = voluntary_switches() - switches0
        return (bus.transfers - transfers0) / max(1, reads), switches / elapsed
    finally:
        _close_rig(chip, driver, factory)


def host_wake_cpu_us(wakes: int) -> tuple[float, float]:
    """CPU (µs) a thread spends per wake-up doing nothing else, as the daemon's threads wake
    (80 a second): from ``time.sleep``, and from a timed ``threading.Event.wait``. What a
    conversion costs here cannot go below the wake-ups it takes times these."""
    period = 1 / 80
    c0 = time.thread_time()
    for _ in range(wakes):
        time.sleep(period)
    slept = (time.thread_time() - c0) / wakes * 1e6
    event = threading.Event()
    c0 = time.thread_time()
    for _ in range(wakes):
        event.wait(period)
    waited = (time.thread_time() - c0) / wakes * 1e6
    return slept, waited


def host_handoff_cpu_us(items: int) -> float:
    """CPU (µs, both threads) of the daemon's hand-off per conversion with nothing else to do:
    one thread sleeps a period (80 a second), queues an item and wakes a second thread waiting
    on a condition, as the sampler does the engine. The floor of a conversion's cost here, for
    this architecture, before any work."""
    period = 1 / 80
    ready = threading.Condition()
    queue: list[int] = []
    spent: list[float] = []

    def consume() -> None:
        c0 = time.thread_time()
        for _ in range(items):
            with ready:
                ready.wait_for(lambda: bool(queue))
                queue.pop()
        spent.append(time.thread_time() - c0)

    consumer = threading.Thread(target=consume)
    consumer.start()
    c0 = time.thread_time()
    for i in range(items):
        time.sleep(period)
        with ready:
            queue.append(i)
            ready.notify()
    spent.append(time.thread_time() - c0)
    consumer.join()
    return sum(spent) / items * 1e6


def engine_hot_and_cold_us(samples: int) -> tuple[float, float]:
    """CPU (µs) of one ``Engine.handle`` of a force sample in a session, back to back (the
    caches hot, as a loop measures it) and after sleeping one period first, as the daemon's
    engine thread runs (80 a second). The same code on the same data: what separates the two is
    what the host does to a thread's caches while it sleeps, which the daemon pays on every
    line of the per-conversion path."""
    model = LoadModel()
    calibration = Calibration(
        offset=model.offset_counts, scale_n_per_count=1 / model.counts_per_newton
    )
    rng = random.Random(1)
    raws = [
        round(
            model.offset_counts
            + (2.0 + 0.8 * math.sin(i / 30) + rng.gauss(0, 0.02)) * model.counts_per_newton
        )
        for i in range(samples)
    ]
    period = 1 / 80
    spent: list[float] = []
    for sleep in (False, True):
        engine = build_engine(DEFAULTS, calibration)
        engine.handle(DockChanged(0.0, False))  # out of the dock: the first contact opens one
        times: list[float] = []
        for i, raw in enumerate(raws):
            if sleep:
                time.sleep(period)
            c0 = time.thread_time_ns()
            engine.handle(ForceRead(i * period, raw))
            times.append((time.thread_time_ns() - c0) / 1e3)
        spent.append(statistics.median(times[samples // 10 :]))  # past the warm-up
    return spent[0], spent[1]


def bench_variant(
    variant: str, work: Path, watcher: FirstSample, *, port: int, measure_s: float, model_s: float
) -> None:
    """A cold and a warm start in the variant's own state directory; prints its figures."""
    interface, ready = VARIANTS[variant]
    wiring = f"hx711.interface {interface}"
    if interface == "spi":
        wiring += f", pins.hx711_ready {'null (poll)' if ready is None else ready}"
    print(f"# {variant}: {wiring}")
    scenario = work / f"{variant}.yaml"
    duration = int(measure_s) + 120
    scenario.write_text(
        SCENARIO.format(
            duration=duration,
            end=duration,
            device=DEVICE,
            interface=interface,
            ready="null" if ready is None else ready,
        )
    )
    state = work / f"state-{variant}"
    cold = run_once(scenario, state, port, watcher, 0.0)
    warm = run_once(scenario, state, port, watcher, measure_s)
    cpu, emulator = warm.cpu, warm.emulator
    assert cpu is not None and emulator is not None
    line(f"{variant}_startup_to_first_sample_cold", cold.startup_s, "s")
    line(f"{variant}_startup_to_first_sample_warm", warm.startup_s, "s")
    line(f"{variant}_cpu_one_core_fraction", cpu * 100, "%")
    line(f"{variant}_peak_rss", warm.peak_rss_mb, "MB")
    if interface == "spi":
        model = bus_model_cpu(ready, model_s)
        line(f"{variant}_bus_model_cpu_one_core_fraction", model * 100, "%")
        line(f"{variant}_cpu_one_core_fraction_less_bus_model", (cpu - model) * 100, "%")
        per_conversion, wakeups = reading_counts(ready, model_s)
        counted = "spi" if ready is None else "spi_ready"  # ready: the data-ready GPIO
        line(f"{counted}_transfers_per_conversion", per_conversion, "transfers")
        line(f"{counted}_wakeups_per_second", wakeups, "wakeups/s")
        # The same daemon again on the frames bus, whose transfers cost a lookup: what is left
        # in the process once the emulator's threads are taken off is the daemon's own CPU.
        framed = run_once(scenario, state, port, watcher, measure_s, bus_model="frames")
        assert framed.cpu is not None and framed.emulator is not None
        print(
            f"# {variant} on the frames bus: process {framed.cpu * 100:.2f} %, emulator threads "
            f"{framed.emulator * 100:.2f} %, {framed.conversions_per_s:.1f} conversions read/s, "
            f"{(framed.fast_share or 0) * 100:.1f} % of transfers answered at once"
        )
        if not framed.conversions_per_s or not framed.fast_share:
            raise BenchFailure(f"{variant}: the daemon read nothing through the frames bus")
        rate = framed.conversions_per_s
        shares = sorted(framed.threads.items(), key=lambda kv: -kv[1])
        print(
            f"# {variant} on the frames bus, µs per conversion by thread (clock ticks of "
            f"{1e3 / TICKS:g} ms: rough below ~{1e6 / TICKS / rate / measure_s:.0f} µs): "
            + ", ".join(f"{name} {cpu / rate * 1e6:.0f}" for name, cpu in shares)
        )
        line(f"{counted}_daemon_cpu_us_per_conversion", framed.daemon_cpu_us_per_conversion(), "us")
        # Wake-ups are counts: unlike the CPU figure, the host does not move them.
        woke = sorted(framed.wakeups.items(), key=lambda kv: -kv[1])
        print(
            f"# {variant} on the frames bus, the daemon's wake-ups per conversion by thread: "
            + ", ".join(f"{name} {n / rate:.2f}" for name, n in woke if n / rate >= 0.005)
        )
        line(
            f"{counted}_daemon_wakeups_per_conversion",
            sum(framed.wakeups.values()) / rate,
            "wakeups",
        )
        # What the frames bus itself took inside the sampler thread: the emulator's share left
        # in the figure above (a spidev ioctl on a Pi instead).
        line(f"{counted}_frames_bus_cpu_us_per_conversion", framed.bus_us_per_conversion or 0, "us")
    else:
        model = 0.0  # bit-banged, the emulated pins run inside the sampler: not separable
    # The scenario player and the chip's threads are the emulator's, not the daemon's; with
    # spi the bus model (above) runs in the sampler thread and is taken off as measured.
    line(f"{variant}_emulator_threads_cpu_one_core_fraction", emulator * 100, "%")
    line(f"{variant}_cpu_one_core_fraction_less_emulator", (cpu - emulator - model) * 100, "%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s of rolling instead of 60")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: can every figure still be made?"
    )
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: all; --smoke: the two on spi)",
    )
    args = parser.parse_args()
    chosen = args.variants or ("spi,spi_edge" if args.smoke else ",".join(VARIANTS))
    variants = [v.strip() for v in chosen.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: {','.join(unknown) or '(none)'} not in {', '.join(VARIANTS)}")
    measure_s = 2.0 if args.smoke else 15.0 if args.quick else 60.0
    model_s = 1.0 if args.smoke else 3.0 if args.quick else 10.0
    print(
        f"# mosquitto {mosquitto_version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    slept, waited = host_wake_cpu_us(40 if args.smoke else 400)
    line("host_sleep_wake_cpu_us", slept, "us")
    line("host_timed_wait_wake_cpu_us", waited, "us")
    line("host_handoff_cpu_us", host_handoff_cpu_us(40 if args.smoke else 400), "us")
    hot, cold = engine_hot_and_cold_us(40 if args.smoke else 800)
    line("host_engine_sample_hot_cpu_us", hot, "us")
    line("host_engine_sample_after_sleep_cpu_us", cold, "us")
    with tempfile.TemporaryDirectory(prefix="dg-bench-daemon-") as tmp:
        work = Path(tmp)
        with Broker(work) as broker:
            watcher = FirstSample(broker.port)
            try:
                for variant in variants:
                    bench_variant(
                        variant,
                        work,
                        watcher,
                        port=broker.port,
                        measure_s=measure_s,
                        model_s=model_s,
                    )
            finally:
                watcher.close()
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    try:
        main()
    except BenchFailure as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # the daemon, the broker and the scratch directory are gone
        print("stopped: the figures printed so far are all this run has", file=sys.stderr)
        sys.exit(130)
