"""The HX711 board's real output data rate, measured before ``hx711.rate_sps`` is trusted.

The rate is wired, not programmed: the RATE pin high gives 80 samples/s, low gives 10. The
SparkFun SEN-13879 ties RATE to GND through solder jumper SJ2, so it ships at 10 samples/s; a
board left that way under a config of 80 is silent for eight of the driver's periods at a time,
and a driver that trusted the config would take every wait for a reset chip and reset it before
its first conversion. So, until a period has been measured:

* the driver does not reset a silent chip before :data:`FIRST_WAIT_S` (the longest any board is
  silent after a reset: settling plus two periods at 10 samples/s), and looks for data after a
  reset as early as the fastest board may have it;
* it polls without a schedule, so each data-ready is seen within a poll of when it happens, and
  the intervals between them are the chip's period.

A measured rate that is not the configured one is a fault naming SJ2 and RATE, never silently
adapted: a 10 samples/s alarm is eight times slower, and a person must choose that. Both
drivers measure it: :mod:`dermaguard.hw.hx711_spi` and the bit-banged :mod:`dermaguard.hw.hx711`.

The conversions before the period is known are used, on purpose: normally the first six (the
seventh data-ready completes :data:`INTERVALS_NEEDED` intervals; a reset, or a read the driver
suspects of one, starts the count again, so an interval never spans a settling chip and six
spoiled reads in a row are never taken for a slow board). The rate pin changes *when* a
conversion comes, not what it reads: gain and scale are the same at 10 and 80 samples/s, so
those forces are right. Only their timing is off, once per driver (a reset keeps the measured
rate), for about six samples: a 10 samples/s board under a config of 80 gives them over
600 ms, with the alarm up to eight times later than configured (the filters count samples),
and an 80 samples/s board under a config of 10 gives them in 75 ms, with a spike filter that
spans less time (an alarm sooner, never one missed). Then its conversions are refused and the
force is unknown (``sensor_fault`` ``wrong_rate``). Holding them back instead would cost every
start 75 ms (80 samples/s) or 600 ms (10 samples/s) with no force at all, the right board's as
well, and the wrong board's first 600 ms with no alarm possible rather than a late one.
``tests/hw/test_hx711_board_rate_gpio.py`` checks the six values and the refusals after them.
"""

from __future__ import annotations

from dermaguard.hw.hx711_protocol import SETTLE_S, ReadDiscarded

#: Silence allowed before a period is known: a 10 samples/s chip settles 400 ms after a reset and
#: then converts every 100 ms.
FIRST_WAIT_S = max(settle + 2.0 / rate for rate, settle in SETTLE_S.items())
#: The longest gap between two conversions of any board (two periods at 10 samples/s): how long
#: a reader waits between conversions while the period is not known.
SLOWEST_GAP_S = 2.0 / min(SETTLE_S)
#: The shortest interval between two conversions of any board (80 samples/s, its oscillator
#: fast by the tolerance below): a shorter one between two looks only says the first was late.
SHORTEST_PERIOD_S = 1.0 / (max(SETTLE_S) * 1.3)
#: Intervals between consecutive data-ready edges needed to know the period.
INTERVALS_NEEDED = 6
#: The measured rate may differ from the nominal one by this fraction (the chip's oscillator).
TOLERANCE = 0.3


def mismatch_message(configured_sps: int, measured_sps: float) -> str:
    """What is wrong and the two ways to fix it, with the board's jumper and pin named."""
    fix = (
        "cut solder jumper SJ2 on the board (it ties RATE to GND) and tie RATE to VDD for "
        "80 samples/s, or set hx711.rate_sps: 10 (the alarm then reacts eight times slower)"
        if configured_sps == 80
        else "tie RATE to GND (solder jumper SJ2 on the SparkFun board) for 10 samples/s, "
        "or set hx711.rate_sps: 80"
    )
    return (
        f"wrong board rate: the HX711 converts at {measured_sps:.1f} samples/s, not the "
        f"configured {configured_sps} (hx711.rate_sps; its RATE pin sets it): {fix}"
    )


class WrongRate(ReadDiscarded):
    """The board converts at a rate other than the configured one; its conversions are not
    used (their timing, the timeouts and the filters all assume the configured rate)."""


class RateWatch:
    """Learns the chip's period from consecutive data-ready times."""

    def __init__(self, configured_sps: int) -> None:
        self.configured_sps = configured_sps
        self._last: float | None = None
        self._intervals: list[float] = []
        #: The measured rate once known (samples/s), and the fault if it is not the configured.
        self.measured_sps: float | None = None
        self.problem: str | None = None

    @property
    def known(self) -> bool:
        return self.measured_sps is not None

    def settle_s(self, configured_settle_s: float) -> float:
        """How long a reset chip may be assumed to settle (not looked at): the configured
        rate's time once the rate is known, else the shortest of any board."""
        return configured_settle_s if self.known else min(SETTLE_S.values())

    def silence_limit_s(self, settle_s: float, period_s: float) -> float:
        """How long a chip may stay silent before the driver resets it."""
        return settle_s + 2 * period_s if self.known else FIRST_WAIT_S

    def restart(self) -> None:
        """The chip was reset: the next data-ready starts a new interval."""
        self._last = None

    def ready(self, t: float) -> None:
        """A data-ready was seen at clock time ``t`` (right after the previous one was read)."""
        last, self._last = self._last, t
        if self.known or last is None:
            return
        if t - last < SHORTEST_PERIOD_S:
            # No board converts this fast: the previous one was seen late, this one on time.
            return
        self._intervals.append(t - last)
        if len(self._intervals) < INTERVALS_NEEDED:
            return
        # The shortest interval: a reader that misses a conversion (a busy CPU, a read thrown
        # away) sees a multiple of the period, never less than one (but for a poll's jitter),
        # so a slow reader is never taken for a slow board.
        period = min(self._intervals)
        self.measured_sps = 1.0 / period if period > 0 else float("inf")
        nominal = self.configured_sps
        if abs(self.measured_sps - nominal) > TOLERANCE * nominal:
            self.problem = mismatch_message(nominal, self.measured_sps)
