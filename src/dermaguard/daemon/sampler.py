"""The sampler thread: reads the HX711's conversions and turns them into the engine's inputs.

A good conversion becomes ``ForceRead``; no good conversion within the time limit becomes
``ReadFailed`` (a sensor fault in the engine, S7). A failed SPI transfer (``OSError``, e.g.
``EIO`` from ``spidev``) is a sensor problem, never a reason to stop the daemon: the sampler
counts it, retries, closes and opens the bus again after :data:`REOPEN_AFTER_ERRORS` failures in
a row (through the driver's ``reopen``, the code that opened it at start-up), and when no good
conversion came within the limit because of them, reports ``ReadFailed(t, "bus_error")``. The
first good conversion after that starts the engine's usual recovery (``sensor_recovered``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dermaguard.common.clock import Clock
from dermaguard.core.events import ForceRead, Input, ReadFailed
from dermaguard.hw.hx711_protocol import LoadCellADC, NotReady, ReadDiscarded
from dermaguard.hw.hx711_rate import FIRST_WAIT_S, SLOWEST_GAP_S

#: Sample periods without a good conversion that make a sensor fault (the default limit).
READY_TIMEOUT_PERIODS = 3
#: Longest time (clock seconds) without a good conversion while reads are being discarded
#: (our own timing hiccups, not the sensor's) before it is reported as a sensor fault.
MAX_BLIND_S = 0.25
#: Failed transfers in a row after which the bus is closed and opened again; while they go on
#: failing, the run before the next try doubles, up to :data:`MAX_REOPEN_GAP` failures.
REOPEN_AFTER_ERRORS = 3
MAX_REOPEN_GAP = 200
#: Real seconds between tries while transfers fail: a failing ioctl returns at once, and a
#: tight retry loop would take the CPU the engine needs.
BUS_RETRY_S = 0.005

log = logging.getLogger(__name__)


@runtime_checkable
class Reopenable(Protocol):
    """A driver whose bus can be closed and opened again (the SPI one)."""

    def reopen(self) -> None: ...


@dataclass
class Sampler:
    """Reads conversions and queues them; no good conversion within the limit is a fault.

    The limit is ``timeout_periods`` sample periods after the last good conversion, plus the
    chip's settling time when a read was discarded since, or the driver says the chip may be
    settling (a clock-high phase that ran long may have reset the chip, and a reset chip is
    silent while it settles: that is our hiccup, not a sensor fault). Limits are kept on the
    clock's time (virtual in simulation) while each driver wait is short in real time, so a
    stalled simulator never fakes a fault either. Failed transfers: see the module.
    """

    driver: LoadCellADC
    clock: Clock
    put: Callable[[Input], None]
    rate_sps: int
    timeout_periods: int = READY_TIMEOUT_PERIODS
    stop_event: threading.Event = field(default_factory=threading.Event)
    samples: int = 0
    discarded: int = 0
    #: Passes of the read loop: grows while the sampler runs, good sensor or not. The service
    #: watchdog follows it, so a hung sampler gets the daemon restarted while a dead sensor
    #: is reported as a sensor fault (S7) instead of restarting the daemon in a loop.
    cycles: int = 0
    #: Transfers that failed with an ``OSError``; times the bus was opened again, and tries
    #: to do so that failed.
    bus_errors: int = 0
    reopens: int = 0
    reopen_failures: int = 0

    def run(self) -> None:
        limit = self.timeout_periods / self.rate_sps
        settle = self.driver.settle_s
        # The runtime resets the chip at start-up: it is silent while it settles.
        last_good = last_discard = self.clock.monotonic()
        discards = 0
        starting = True
        settling = False
        errors_in_row = 0  # failed transfers since the last good conversion
        errors = 0  # ... since the last good conversion or the last ReadFailed
        last_error = ""
        next_reopen = REOPEN_AFTER_ERRORS
        while not self.stop_event.is_set():
            self.cycles += 1
            now = self.clock.monotonic()
            deadline = last_good + limit
            if discards or starting or settling:
                # The chip may be resetting after a stretched pulse, but never stay blind for
                # longer than MAX_BLIND_S: then the force is unknown and a person must know.
                deadline = max(deadline, last_discard + settle + limit)
                deadline = min(deadline, last_good + max(MAX_BLIND_S, settle + 2 * limit))
            if _rate_unknown(self.driver):
                # The board's rate is not measured yet: allow for the slowest board's first
                # conversion and gaps (hw/hx711_rate.py), so a 10 samples/s board under a config
                # of 80 is reported as such, not as a chip that never answers.
                deadline = max(deadline, last_good + (FIRST_WAIT_S if starting else SLOWEST_GAP_S))
            remaining = deadline - now
            if remaining <= 0:
                if errors:
                    detail = f"{errors} SPI transfers failed, the last with: {last_error}"
                    self.put(ReadFailed(now, "bus_error", detail))
                elif (problem := _rate_problem(self.driver)) is not None:
                    # The board converts at another rate: its conversions are refused, and the
                    # fault says which jumper and pin to change (hw/hx711_rate.py).
                    self.put(ReadFailed(now, "wrong_rate", problem))
                else:
                    detail = f"{discards} reads discarded" if discards else "no data"
                    self.put(ReadFailed(now, "timeout", detail))
                last_good, discards, starting, settling, errors = now, 0, False, False, 0
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
            except OSError as exc:
                self.bus_errors += 1
                errors_in_row += 1
                errors += 1
                last_error = str(exc) or type(exc).__name__
                if errors_in_row == 1:
                    log.warning("HX711 bus transfer failed (%s): retrying", last_error)
                if errors_in_row >= next_reopen:
                    next_reopen = errors_in_row + min(errors_in_row, MAX_REOPEN_GAP)
                    if self._reopen(errors_in_row):
                        # A reopened bus starts with a chip reset: allow for its settling.
                        settling, last_discard = True, self.clock.monotonic()
                self.stop_event.wait(BUS_RETRY_S)
                continue
            if errors_in_row:
                log.warning("HX711 bus works again after %d failed transfers", errors_in_row)
                errors_in_row = errors = 0
                next_reopen = REOPEN_AFTER_ERRORS
            self.samples += 1
            last_good, discards, starting = self.clock.monotonic(), 0, False
            # The data was good, but a stretched gain-select pulse may have reset the chip.
            settling = self.driver.may_be_settling
            if settling:
                last_discard = last_good
            self.put(ForceRead(last_good, raw))

    def _reopen(self, errors_in_row: int) -> bool:
        """Close and open the bus again; whether it worked (a failure is retried later)."""
        driver = self.driver
        if not isinstance(driver, Reopenable):
            return False
        try:
            driver.reopen()
        except Exception as exc:
            self.reopen_failures += 1
            # Once per spell at warning level: a bus that stays gone must not flood the log.
            level = logging.WARNING if errors_in_row <= REOPEN_AFTER_ERRORS else logging.DEBUG
            log.log(level, "reopening the HX711 bus failed (%s); trying again later", exc)
            return False
        self.reopens += 1
        log.warning("HX711 bus reopened after %d failed transfers in a row", errors_in_row)
        return True


__all__ = [
    "BUS_RETRY_S",
    "MAX_BLIND_S",
    "MAX_REOPEN_GAP",
    "READY_TIMEOUT_PERIODS",
    "REOPEN_AFTER_ERRORS",
    "Reopenable",
    "Sampler",
]


def _rate_unknown(driver: LoadCellADC) -> bool:
    """The driver measures the board's rate (the SPI driver does) and has not yet."""
    watch = getattr(driver, "rate_watch", None)
    return watch is not None and not watch.known


def _rate_problem(driver: LoadCellADC) -> str | None:
    """The driver's measured-rate fault, if it measures the rate (the SPI driver does)."""
    watch = getattr(driver, "rate_watch", None)
    return None if watch is None else watch.problem
