"""Calibration at the terminal and from scripts: tare, then known weights.

Each step averages a burst of conversions read through the real driver, so the same code runs
against a Pi's pins and against the emulator. The result is written atomically.
"""

from __future__ import annotations

import math
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from dermaguard.calibration_file import CalibrationFileError, load_calibration, save_calibration
from dermaguard.core.calibration import (
    Calibration,
    CalibrationError,
    parse_reference,
    with_reference,
    with_tare,
)
from dermaguard.hw.hx711 import HX711Error

ReadRaw = Callable[[], int]


class CalibrateError(Exception):
    """A calibration step failed; the message tells the person what to do."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_mean(read: ReadRaw, n: int) -> tuple[float, float]:
    """Mean and standard deviation of ``n`` good conversions (bad ones are retried)."""
    values: list[int] = []
    failures = 0
    while len(values) < n:
        try:
            values.append(read())
        except HX711Error as exc:
            failures += 1
            if failures > max(5, n):
                raise CalibrateError(
                    f"the load cell is not answering ({exc}); check the HX711 wiring"
                ) from exc
    return statistics.fmean(values), statistics.pstdev(values)


def tare(path: Path, read: ReadRaw, samples: int, gain: int) -> Calibration:
    """Zero the scale; an existing slope is kept, so a re-tare needs no weights."""
    try:
        old: Calibration | None = load_calibration(path)
    except CalibrationFileError:
        old = None
    mean, _ = read_mean(read, samples)
    cal = with_tare(old, mean, gain, now_iso())
    save_calibration(path, cal)
    return cal


def add_reference(path: Path, read: ReadRaw, weight: str, samples: int) -> Calibration:
    """Add a known weight and refit the line through the tare and every weight so far."""
    force_n = parse_reference(weight)
    try:
        cal = load_calibration(path)
    except CalibrationFileError as exc:
        raise CalibrateError(f"{exc}; tare first: `dermaguard calibrate --tare`") from exc
    mean, _ = read_mean(read, samples)
    try:
        cal = with_reference(cal, mean, force_n, now_iso())
    except CalibrationError as exc:
        raise CalibrateError(str(exc)) from exc
    save_calibration(path, cal)
    return cal


def summary(cal: Calibration) -> str:
    lines = [
        f"offset {cal.offset:.1f} counts, scale {cal.scale_n_per_count * 1e6:.4f} µN/count "
        f"(gain {cal.gain})",
    ]
    for p in cal.points:
        fitted = cal.force(p.raw)
        lines.append(
            f"  {p.force_n:7.3f} N reference → reads {fitted:7.3f} N "
            f"(error {fitted - p.force_n:+.3f} N)"
        )
    return "\n".join(lines)


class LiveReading:
    """Prints the current reading on one line until stopped, so a person can watch it settle."""

    def __init__(self, read: ReadRaw, cal: Calibration | None, out: TextIO) -> None:
        self.read, self.cal, self.out = read, cal, out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-reading", daemon=True)

    def __enter__(self) -> LiveReading:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.out.write("\n")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                mean, sd = read_mean(self.read, 8)
            except CalibrateError as exc:
                self.out.write(f"\r  {exc}   ")
                time.sleep(0.5)
                continue
            text = f"\r  raw {mean:12.0f} ± {sd:6.0f} counts"
            if self.cal is not None and self.cal.is_complete:
                text += f"   force {self.cal.force(mean):7.3f} N"
            self.out.write(text + "   ")
            self.out.flush()


def interactive(
    path: Path, read: ReadRaw, samples: int, gain: int, out: TextIO = sys.stdout
) -> Calibration:
    """Walk a person through tare and one or more weights."""
    ask: Callable[[str], str] = input
    out.write("Calibration — take everything off the roller's handle.\n")
    with LiveReading(read, None, out):
        ask("Press Enter when the reading is steady… ")
    cal = tare(path, read, samples, gain)
    out.write("Tare stored.\n")
    while True:
        out.write("Put a known weight on the roller (a kitchen-scale weight, a filled glass).\n")
        with LiveReading(read, cal, out):
            weight = ask("Type its mass (e.g. 200g), or press Enter to finish: ").strip()
        if not weight:
            break
        try:
            cal = add_reference(path, read, weight, samples)
        except (ValueError, CalibrateError) as exc:
            out.write(f"{exc}\n")
            continue
        out.write(summary(cal) + "\n")
    if not cal.is_complete:
        raise CalibrateError("no reference weight given: the scale is not calibrated yet")
    out.write("Check: press on the roller and watch the force.\n")
    with LiveReading(read, cal, out):
        ask("Press Enter to finish. ")
    return cal


def check_plausible(cal: Calibration) -> str | None:
    """A warning when the fit looks wrong (for example a weight given in the wrong unit)."""
    if not cal.is_complete:
        return None
    worst = max((abs(cal.force(p.raw) - p.force_n) for p in cal.points), default=0.0)
    biggest = max((p.force_n for p in cal.points), default=1.0)
    if math.isfinite(worst) and worst > 0.05 * biggest:
        return (
            f"the points do not lie on a line (worst error {worst:.3f} N): check the weights "
            "and that nothing touched the roller"
        )
    return None
