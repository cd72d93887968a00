"""``dermaguard check-hardware``: read the HX711 and the case switches for a few seconds, and say
what to check for each thing that is wrong.

It is the first thing to run after wiring a board. The UV-C output is locked out before
anything is read and stays off throughout (S3): this command never lights the lamp.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dermaguard.config.load import Config
from dermaguard.hw.hx711_protocol import LoadCellADC, NotReady, ReadDiscarded

if TYPE_CHECKING:
    from dermaguard.hw.case_io import CaseIO

#: Conversions per second within this fraction of the configured rate count as right.
RATE_TOLERANCE = 0.2
#: A gap between good reads longer than this many periods means conversions were lost.
GAP_PERIODS = 1.5


@dataclass
class Hx711Findings:
    """What a few seconds of reads showed."""

    seconds: float = 0.0
    codes: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    discarded: int = 0
    timeouts: int = 0
    sync_errors: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: The board's rate as the driver measured it, and the fault if it is not the configured.
    measured_sps: float | None = None
    rate_problem: str | None = None

    @property
    def rate(self) -> float:
        return len(self.codes) / self.seconds if self.seconds > 0 else 0.0

    def lost(self, rate_sps: int) -> int:
        """Conversions the chip made that were never read, from the gaps between good reads."""
        period = 1.0 / rate_sps
        lost = 0
        for earlier, later in zip(self.times, self.times[1:], strict=False):
            gap = later - earlier
            if gap > GAP_PERIODS * period:
                lost += round(gap / period) - 1
        return lost


def read_for(driver: LoadCellADC, seconds: float) -> Hx711Findings:
    """Read conversions for ``seconds`` of real time, noting every failure and its reason."""
    found = Hx711Findings()
    timeout = max(0.1, 3.0 / driver.rate_sps)
    sync_before = getattr(driver, "sync_errors", 0)
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            code = driver.read_raw(min(timeout, max(0.0, end - time.monotonic())))
        except NotReady:
            found.timeouts += 1
            continue
        except ReadDiscarded as exc:
            found.discarded += 1
            key = exc.reason.split(":")[0]
            found.reasons[key] = found.reasons.get(key, 0) + 1
            continue
        found.codes.append(code)
        found.times.append(time.monotonic())
    found.seconds = time.monotonic() - start
    found.sync_errors = getattr(driver, "sync_errors", 0) - sync_before
    watch = getattr(driver, "rate_watch", None)
    if watch is not None:
        found.measured_sps, found.rate_problem = watch.measured_sps, watch.problem
    return found


def describe_interface(config: Config, driver: LoadCellADC) -> str:
    hx = config.hx711
    if hx.interface == "spi":
        spi = hx.spi
        ready = config.pins.hx711_ready
        how = f"data-ready edge on GPIO{ready}" if ready is not None else "data-ready polled"
        return (
            f"spi (/dev/spidev{spi.port}.{spi.device}, {spi.hz / 1e6:g} MHz, mode {spi.mode}; "
            f"PD_SCK on MOSI GPIO10, DOUT on MISO GPIO9; {how})"
        )
    return (
        f"gpio (bit-banged: DOUT GPIO{config.pins.hx711_dout}, PD_SCK GPIO{config.pins.hx711_sck})"
    )


def hx711_problems(config: Config, found: Hx711Findings, n_per_count: float | None) -> list[str]:
    """Each problem the reads show, with the wire or setting to check."""
    spi = config.hx711.interface == "spi"
    dout = "DOUT → GPIO9 (MISO, header pin 21)" if spi else f"DOUT → GPIO{config.pins.hx711_dout}"
    sck = (
        "PD_SCK → GPIO10 (MOSI, header pin 19)" if spi else f"PD_SCK → GPIO{config.pins.hx711_sck}"
    )
    rate_sps = config.hx711.rate_sps
    problems: list[str] = []
    if found.rate_problem is not None:
        # The board answers, at another rate: its conversions are refused, so say why first.
        problems.append(found.rate_problem.removeprefix("wrong board rate: "))
        return problems
    if not found.codes:
        if found.sync_errors or found.discarded:
            problems.append(
                "the HX711 answers but no read holds together (DOUT seems stuck low): check that "
                f"{sck} and {dout} are not swapped, that DOUT is not shorted to GND, and the "
                "HX711's VDD (3.3 V), VCC and GND"
            )
        else:
            problems.append(
                f"no conversion was ever ready (DOUT never went low): check {dout}, the HX711's "
                f"VDD (3.3 V), VCC and GND, and {sck}"
                + (" (with the 100 kΩ pull-down to GND)" if spi else "")
            )
        return problems
    rate = found.rate
    if abs(rate - rate_sps) > RATE_TOLERANCE * rate_sps:
        other = 10 if rate_sps == 80 else 80
        if abs(rate - other) <= RATE_TOLERANCE * other:
            problems.append(
                f"conversions arrive at {rate:.1f}/s, not {rate_sps}/s: the HX711's RATE pin "
                f"selects {other}/s; set hx711.rate_sps: {other} or rewire RATE"
            )
        else:
            problems.append(
                f"conversions arrive at {rate:.1f}/s, not about {rate_sps}/s: reads are failing "
                f"or the chip is resetting; check its supply and {sck}"
            )
    if found.sync_errors:
        problems.append(
            f"{found.sync_errors} reads were out of step with the chip: keep the HX711's wires "
            "short and away from the UV-C driver, check the 100 kΩ pull-down on PD_SCK, or "
            "lower hx711.spi.hz"
            if spi
            else f"{found.sync_errors} reads were out of step with the chip: check the wiring"
        )
    timing = sum(n for reason, n in found.reasons.items() if reason.startswith("PD_SCK stayed"))
    if timing:
        problems.append(
            f"{timing} reads were lost to the host stretching a PD_SCK pulse: this is the gpio "
            "interface's known weakness; wire the HX711 to SPI0 and use hx711.interface: spi"
        )
    if len(set(found.codes)) == 1 and len(found.codes) > 10:
        problems.append(
            f"every conversion read exactly {found.codes[0]}: a real load cell always shows "
            "some noise; check the load cell's wires to E+, E-, A+ and A-"
        )
    if n_per_count is not None and len(found.codes) > 2:
        noise_n = statistics.pstdev(found.codes) * abs(n_per_count)
        if noise_n > 0.05:
            problems.append(
                f"noise is {noise_n:.3f} N (standard deviation with the roller still): keep it "
                "untouched while this runs; if it was, check the load cell's wires and shielding"
            )
    return problems


def print_hx711(
    out: TextIO,
    config: Config,
    driver: LoadCellADC,
    found: Hx711Findings,
    n_per_count: float | None,
) -> None:
    rate_sps = config.hx711.rate_sps
    out.write(f"HX711 interface: {describe_interface(config, driver)}\n")
    out.write(
        f"  conversions read: {len(found.codes)} in {found.seconds:.1f} s "
        f"({found.rate:.1f}/s; expected {rate_sps}/s)\n"
    )
    if found.measured_sps is not None:
        out.write(f"  board rate (measured): {found.measured_sps:.1f} samples/s\n")
    out.write(f"  lost conversions: {found.lost(rate_sps)}\n")
    out.write(f"  sync errors: {found.sync_errors}\n")
    out.write(f"  reads discarded: {found.discarded}; not ready in time: {found.timeouts}\n")
    if len(found.codes) > 1:
        noise = statistics.pstdev(found.codes)
        mean = statistics.fmean(found.codes)
        line = f"  noise: {noise:.1f} counts (N = {len(found.codes)}, mean {mean:.0f})"
        if n_per_count is not None:
            line += f" = {noise * abs(n_per_count):.4f} N"
        else:
            line += " (not calibrated: no value in newtons)"
        out.write(line + "\n")


# -- the command ------------------------------------------------------------------------------

SIM_FAULTS = ("none", "miswired", "no-chip")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``check-hardware`` subcommand's arguments."""
    p = sub.add_parser(
        "check-hardware",
        help="read the HX711 and the case switches for a few seconds and say what to fix",
        description="Reads the HX711 for a few seconds (leave the roller still and unloaded) "
        "and prints the interface, conversions per second, lost conversions, sync errors and "
        "noise; reads the lid and dock switches (open and close them while it runs to see "
        "them change). For each problem it names the wire or setting to check. The UV-C lamp "
        "stays off throughout. Stop the dermaguard service first: it holds the hardware.",
    )
    p.add_argument(
        "-c", "--config", type=Path, default=None, help="YAML config file (default: built-in)"
    )
    p.add_argument("--seconds", type=float, default=3.0, help="how long to read (default 3)")
    p.add_argument("--simulate", action="store_true", help="check the emulated hardware instead")
    p.add_argument(
        "--sim-board-rate",
        type=int,
        choices=(10, 80),
        default=None,
        help="with --simulate: the emulated board's RATE pin (10: the SparkFun board as "
        "shipped, SJ2 uncut; default: as hx711.rate_sps says)",
    )
    p.add_argument(
        "--sim-fault",
        choices=SIM_FAULTS,
        default="none",
        help="with --simulate: miswired (PD_SCK and DOUT swapped: MISO reads low) or no-chip "
        "(nothing answers: MISO reads high)",
    )


def cmd_check_hardware(args: argparse.Namespace) -> int:
    """Open the hardware with UV locked out, read it, print findings; 1 if anything is wrong."""
    from dermaguard.config.load import load_config
    from dermaguard.daemon import pi_service

    out = sys.stdout
    if not 0.5 <= args.seconds <= 600:
        print("dermaguard: --seconds must be between 0.5 and 600", file=sys.stderr)
        return 2
    if (args.sim_fault != "none" or args.sim_board_rate is not None) and not args.simulate:
        print("dermaguard: --sim-fault and --sim-board-rate go with --simulate", file=sys.stderr)
        return 2
    config = load_config(args.config)
    if not args.simulate and pi_service.service_state() == "active":
        print(
            "dermaguard: the dermaguard service is running and holds the HX711 and the case "
            "switches; stop it first (sudo systemctl stop dermaguard), run check-hardware, then "
            "start it again (sudo systemctl start dermaguard)",
            file=sys.stderr,
        )
        return 2
    from dermaguard.config.paths import state_dir
    from dermaguard.daemon.instance_lock import EXIT_IN_USE, StateDirInUse
    from dermaguard.daemon.instance_lock import acquire as lock_state_dir

    # A daemon on this state directory holds the hardware (and a simulated one the emulated
    # device): one process per state directory. None there yet: nobody can hold it.
    directory = state_dir(config, simulated=args.simulate)
    try:
        lock = lock_state_dir(directory, "check-hardware") if directory.is_dir() else None
    except StateDirInUse as exc:
        print(f"dermaguard: {exc}", file=sys.stderr)
        return EXIT_IN_USE
    try:
        return _check_locked(args, config, out)
    finally:
        if lock is not None:
            lock.release()


def _check_locked(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    from dermaguard.config.calibration_file import CalibrationFileError, load_calibration
    from dermaguard.config.paths import calibration_file
    from dermaguard.daemon.app import open_hardware, steady_scenario
    from dermaguard.hw.pins import PinFactoryUnavailable

    scenario = None
    if args.simulate:
        scenario = steady_scenario(
            "check-hardware", 0.0, noise_counts=150.0, board_rate_sps=args.sim_board_rate
        )
    try:
        hw = open_hardware(config, scenario, speed=1.0)
    except PinFactoryUnavailable as exc:
        print(f"dermaguard: {exc}", file=sys.stderr)
        return 1  # the machine refused (no GPIO here): README's exit 1
    except Exception as exc:
        if not _hardware_refusal(exc):
            raise
        print(
            f"dermaguard: the hardware is busy ({exc}): is the dermaguard service running? "
            "Stop it first: sudo systemctl stop dermaguard",
            file=sys.stderr,
        )
        return 2
    try:
        hw.case.lock_out()  # S3: nothing below may light the UV-C lamp
        if hw.sim is not None:
            hw.sim.wiring_fault(args.sim_fault)
            hw.sim.start()
        cal_path = calibration_file(config, simulated=args.simulate)
        try:
            cal = load_calibration(cal_path)
            n_per_count = cal.scale_n_per_count if cal.is_complete else None
        except CalibrationFileError:
            n_per_count = None
        switches = _SwitchWatch(hw.case)
        switches.start()
        try:
            found = read_for(hw.driver, args.seconds)
        finally:
            switches.stop()
        print_hx711(out, config, hw.driver, found, n_per_count)
        problems = hx711_problems(config, found, n_per_count)
        problems += switches.report(out, config)
        if hw.case.uv_on:
            problems.append("the UV-C output reads on although it is locked out: check its driver")
        out.write("UV-C: off throughout (locked out by this check)\n")
        if problems:
            out.write("\nTo check:\n")
            for problem in problems:
                out.write(f"- {problem}\n")
            return 1
        out.write("\nAll good.\n")
        return 0
    finally:
        hw.close()


def _hardware_refusal(exc: BaseException) -> bool:
    """A pin or bus that another process holds: gpiozero's pin-in-use error, an OS error (a
    busy /dev/spidev), or lgpio's own error type ("GPIO busy"), which is no OSError."""
    from gpiozero.exc import GPIOPinInUse

    module = type(exc).__module__ or ""
    return isinstance(exc, GPIOPinInUse | OSError) or module.split(".")[0] == "lgpio"


class _SwitchWatch:
    """Samples the lid and dock switches every 20 ms while the HX711 is read."""

    def __init__(self, case: CaseIO) -> None:
        self._case = case
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="check-switches", daemon=True)
        self.lid = [case.lid_closed]
        self.dock = [case.docked]
        self.lit: set[bool | None] = {case.uv_lit}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            lid, dock = self._case.lid_closed, self._case.docked
            if lid != self.lid[-1]:
                self.lid.append(lid)
            if dock != self.dock[-1]:
                self.dock.append(dock)
            self.lit.add(self._case.uv_lit)

    def report(self, out: TextIO, config: Config) -> list[str]:
        lid = "closed" if self.lid[-1] else "open"
        dock = "roller docked" if self.dock[-1] else "no roller"
        out.write(
            f"Lid switch (GPIO{config.pins.lid}): {lid}, changed {len(self.lid) - 1} times\n"
            f"Dock switch (GPIO{config.pins.dock}): {dock}, changed {len(self.dock) - 1} times\n"
        )
        problems: list[str] = []
        contact = self._case.lid_contact_shut
        if contact is not None:
            reed = self._case.lid_reed_closed
            out.write(
                f"  reed switch (GPIO{config.pins.lid}): {'closed' if reed else 'open'}; "
                f"microswitch NC contact (GPIO{config.pins.lid_contact}): "
                f"{'lid shut' if contact else 'lid open'}\n"
            )
            if reed != contact:
                problems.append(
                    "the lid's two channels disagree: the reed switch and the microswitch S1b "
                    "must both read the lid open, and both shut (check the magnet, the lever, "
                    "the optocoupler and that S1b is not welded: hardware/README.md)"
                )
        if self._case.has_sensor:
            seen = "light" if True in self.lit else "dark"
            out.write(f"UV sensor (GPIO{config.pins.uv_sensor}): {seen} with the UV-C lamp off\n")
            if True in self.lit:
                problems.append(
                    "the UV sensor reads light while the UV-C lamp is off: check its wiring "
                    "(it must read low when dark) and that no daylight reaches it"
                )
        if len(self.lid) == 1 and len(self.dock) == 1:
            out.write("  (open and close the lid, and dock the roller, while this runs)\n")
        return problems
