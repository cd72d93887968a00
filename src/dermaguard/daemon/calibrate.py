"""Calibration at the terminal and from scripts: tare, then known weights.

Each step averages a burst of conversions read through the real driver, so the same code runs
against a Pi's pins and against the emulator. The result is written atomically.
"""

from __future__ import annotations

import contextlib
import math
import select
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from dermaguard.config.calibration_file import (
    CalibrationFileError,
    load_calibration,
    save_keeping_previous,
)
from dermaguard.config.load import simulation_config
from dermaguard.config.paths import store_path
from dermaguard.config.schema import Config
from dermaguard.core.calibration import (
    Calibration,
    CalibrationError,
    check_on_line,
    parse_reference,
    with_checked_reference,
    with_tare,
)
from dermaguard.core.events import Event, EventType
from dermaguard.hw.hx711_protocol import HX711Error
from dermaguard.store import Store, StoreError

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
    save_keeping_previous(path, cal)
    return cal


def check_reference(cal: Calibration, raw: float, force_n: float, weight: str) -> None:
    """:func:`~dermaguard.core.calibration.check_on_line`, saying what to check as a
    :class:`CalibrateError`."""
    try:
        check_on_line(cal, raw, force_n, weight)
    except CalibrationError as exc:
        raise CalibrateError(str(exc)) from exc


def add_reference(
    path: Path, read: ReadRaw, weight: str, samples: int, *, capacity_n: float
) -> Calibration:
    """Add a known weight and refit the line through the tare and every weight so far.

    The weight is judged by :func:`~dermaguard.core.calibration.with_checked_reference`
    against ``capacity_n`` (``load_cell.capacity_n``); a refused one writes nothing.
    """
    force_n = parse_reference(weight)
    try:
        cal = load_calibration(path)
    except CalibrationFileError as exc:
        raise CalibrateError(f"{exc}; tare first: `dermaguard calibrate --tare`") from exc
    mean, noise = read_mean(read, samples)
    try:
        cal = with_checked_reference(
            cal, mean, noise, force_n, weight=weight, capacity_n=capacity_n, created=now_iso()
        )
    except CalibrationError as exc:
        raise CalibrateError(str(exc)) from exc
    save_keeping_previous(path, cal)
    return cal


def describe_change(old: Calibration | None, new: Calibration, over_n: float) -> str | None:
    """What a new scale does to the over-pressure alarm, said whenever the scale moves.

    ``None`` when the scale is unchanged (a tare only moves the zero).
    """
    if not new.is_complete:
        return None
    if old is None:
        return f"new calibration: the over-pressure alarm trips at {over_n:.2f} N"
    if new.scale_n_per_count == old.scale_n_per_count:
        return None
    ratio = new.scale_n_per_count / old.scale_n_per_count
    return (
        f"scale changed by {(ratio - 1) * 100:+.2f} % (was {old.scale_n_per_count * 1e6:.4f} "
        f"µN/count): the over-pressure alarm ({over_n:.2f} N) now trips at what the previous "
        f"calibration read as {over_n / ratio:.2f} N; `dermaguard calibrate --undo` restores "
        "the previous one"
    )


def change_event(reason: str, old: Calibration | None, new: Calibration, t: float) -> Event:
    """``calibration_changed`` for a calibration written by ``dermaguard calibrate``."""
    return Event(
        EventType.CALIBRATION_CHANGED,
        t,
        {
            "reason": reason,
            "old_scale_n_per_count": None if old is None else old.scale_n_per_count,
            "new_scale_n_per_count": new.scale_n_per_count,
            "old_offset": None if old is None else round(old.offset, 1),
            "offset": round(new.offset, 1),
            "complete": new.is_complete,
        },
    )


def record_change(
    config: Config, reason: str, old: Calibration | None, new: Calibration, *, simulated: bool
) -> None:
    """Record the change as ``calibration_changed`` in the device's history (the simulation's
    when ``simulated``).

    ``calibrate`` runs apart from the daemon, so the event goes into the history: the daemon
    publishes it from its outbox over MQTT when it next starts, which is also when it starts
    using the new calibration. Raises :class:`CalibrateError` naming the history when the
    record cannot be written (the calibration itself is already saved).
    """
    if simulated:
        config = simulation_config(config)
    history = store_path(config, simulated=simulated)
    try:
        store = Store.open(history, config.device_id, publish=config.mqtt.enabled)
        try:
            store.append_event(change_event(reason, old, new, time.monotonic()), time.time())
        finally:
            store.close()
    except (StoreError, OSError, sqlite3.Error) as exc:
        raise CalibrateError(
            f"the calibration changed, but the change could not be recorded in the history "
            f"{history}: {exc}"
        ) from exc


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
    """Shows the current reading on its own line, just above the prompt, until answered.

    The prompt stays on the line below and is never written over: each update saves the
    cursor (where the person types), moves up one line, rewrites the reading and restores the
    cursor. Updates stop once a typed line is waiting, before it is read: by then the terminal
    has moved the cursor down, and "one line up" would be the prompt itself. A reading longer
    than the terminal would wrap onto the prompt, so it is cut.
    """

    #: Save the cursor, go up a line to its start and clear it; then restore the cursor.
    _ABOVE = "\x1b7\x1b[1A\r\x1b[2K"
    _BACK = "\x1b8"
    #: Seconds between updates: at most five a second.
    PERIOD_S = 0.2

    def __init__(
        self, read: ReadRaw, cal: Calibration | None, out: TextIO, stdin: TextIO | None = None
    ) -> None:
        self.read, self.cal, self.out = read, cal, out
        self.stdin = stdin if stdin is not None else sys.stdin
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="live-reading", daemon=True)

    def __enter__(self) -> LiveReading:
        self.out.write("  reading…\n")  # the reading's line; the prompt goes below it
        self.out.flush()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        self._thread.join(timeout=2.0)

    def stop(self) -> None:
        """No update after this returns (one in progress has finished)."""
        with self._lock:
            self._stop.set()

    def ask(self, prompt: str) -> str:
        """``input(prompt)``, with the updates stopped as soon as the answer is typed."""
        self.out.write(prompt)
        self.out.flush()
        with contextlib.suppress(OSError, ValueError):  # not a selectable file: just read
            select.select([self.stdin], [], [])
        self.stop()
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def _show(self, text: str) -> None:
        width = shutil.get_terminal_size().columns
        with self._lock:
            if self._stop.is_set():
                return
            self.out.write(f"{self._ABOVE}{text[: max(1, width - 1)]}{self._BACK}")
            self.out.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                mean, sd = read_mean(self.read, 8)
            except CalibrateError as exc:
                self._show(f"  {exc}")
                time.sleep(0.5)
                continue
            text = f"  raw {mean:12.0f} ± {sd:6.0f} counts"
            if self.cal is not None and self.cal.is_complete:
                text += f"   force {self.cal.force(mean):7.3f} N"
            self._show(text)
            self._stop.wait(self.PERIOD_S)  # readable, and a simulated cell answers at once


def interactive(
    path: Path,
    read: ReadRaw,
    samples: int,
    gain: int,
    out: TextIO = sys.stdout,
    *,
    capacity_n: float,
) -> Calibration:
    """Walk a person through tare and one or more weights."""
    out.write("Calibration — take everything off the roller's handle.\n")
    with LiveReading(read, None, out) as live:
        live.ask("Press Enter when the reading is steady… ")
    cal = tare(path, read, samples, gain)
    out.write("Tare stored.\n")
    while True:
        out.write("Put a known weight on the roller (a kitchen-scale weight, a filled glass).\n")
        with LiveReading(read, cal, out) as live:
            weight = live.ask("Type its mass (e.g. 200g), or press Enter to finish: ").strip()
        if not weight:
            break
        try:
            cal = add_reference(path, read, weight, samples, capacity_n=capacity_n)
        except (ValueError, CalibrateError) as exc:
            out.write(f"{exc}\n")
            continue
        out.write(summary(cal) + "\n")
    if not cal.is_complete:
        raise CalibrateError("no reference weight given: the scale is not calibrated yet")
    out.write("Check: press on the roller and watch the force.\n")
    with LiveReading(read, cal, out) as live:
        live.ask("Press Enter to finish. ")
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
