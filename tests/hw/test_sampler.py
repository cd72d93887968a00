"""The sampler thread against the real driver and the chip emulator, on virtual time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from pytest_mock import MockerFixture

from dermaguard.common.clock import SimClock
from dermaguard.core.events import ForceRead, Input, ReadFailed
from dermaguard.daemon.sampler import Sampler
from dermaguard.hw.hx711 import HX711, MICROCONTROLLER
from dermaguard.hw.hx711_protocol import ReadDiscarded
from dermaguard.hw.hx711_rate import FIRST_WAIT_S, SLOWEST_GAP_S
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from support.waiting import wait_until

PERIOD_S = 1 / 80


@dataclass
class StretchRig:
    """The sampler on the real bit-banged driver and the chip emulator, with one good sample
    read, ready to stretch a later PD_SCK pulse past the chip's power-down time."""

    chip: HX711Chip
    driver: HX711
    sampler: Sampler
    got: list[Input]
    stretch: Callable[[int], None]


@contextmanager
def stretch_rig(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, mocker: MockerFixture
) -> Iterator[StretchRig]:
    # Both time limits are raised far above any pause a busy host causes, so only the test's
    # own 30 ms stretch counts as long (the driver discards and the chip resets as they would).
    load = LoadModel(offset_counts=123_456, counts_per_newton=0.0)
    chip = HX711Chip(
        pin_factory,
        hx_pins.dout,
        hx_pins.sck,
        clock=sim_clock,
        load=load,
        power_down_ns=15_000_000,
    )
    driver = HX711(hx_pins.dout, hx_pins.sck, max_clock_high_us=10_000, clock=sim_clock)
    got: list[Input] = []
    sampler = Sampler(driver, sim_clock, got.append, rate_sps=80)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    sck = pin_factory.pin(hx_pins.sck)

    def stretch(nth: int) -> None:
        """From now on, the ``nth`` high PD_SCK pulse lasts 30 ms."""
        highs = [0]

        def delay(us: float) -> None:
            if sck.state:
                highs[0] += 1
                if highs[0] == nth:
                    time.sleep(0.03)  # past the chip's power-down time

        mocker.patch.object(MICROCONTROLLER, "delay_us", side_effect=delay)

    try:
        sim_clock.advance(PERIOD_S)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 1)
        yield StretchRig(chip, driver, sampler, got, stretch)
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
        driver.close()
        chip.close()


def test_a_stretched_gain_pulse_keeps_the_sample_and_the_reset_is_not_a_sensor_fault(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, mocker: MockerFixture
) -> None:
    """The 25th pulse only selects the gain: stretched past 60 µs, the data is already out and
    kept, but the chip resets and is silent for its 50 ms settling time, longer than the 3-period
    fault limit. The sampler must wait that out instead of reporting a sensor fault (S7 is for
    the sensor's failures, not for our timing)."""
    with stretch_rig(pin_factory, hx_pins, sim_clock, mocker) as rig:
        chip, sampler = rig.chip, rig.sampler
        rig.stretch(25)  # the 25th pulse only selects the gain
        sim_clock.advance(PERIOD_S)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 2)
        mocker.stopall()
        assert chip.power_down_count == 1
        assert rig.driver.may_be_settling

        # Six and a half periods pass with no data (the chip settles for four): past the limit
        # counted from the first read plus the settling, within the one counted from the
        # stretched read. Let the sampler look at the clock before the chip speaks again.
        assert not chip.convert()
        for _ in range(6):
            sim_clock.advance(PERIOD_S)
        sim_clock.advance(PERIOD_S / 2)
        cycles = sampler.cycles
        assert wait_until(lambda: sampler.cycles >= cycles + 3)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 3)

    got = rig.got
    assert [type(i) for i in got] == [ForceRead, ForceRead, ForceRead]
    assert [i.raw for i in got if isinstance(i, ForceRead)] == [123_456] * 3
    assert not any(isinstance(i, ReadFailed) for i in got)


def test_s7_no_conversion_for_exactly_the_limit_is_a_timeout_fault_and_a_moment_less_is_not(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock
) -> None:
    """The default limit is 3 sample periods after the last good conversion, on the clock's
    time: at 2.5 periods the sampler still waits, at exactly 3 it reports ``ReadFailed``
    (``timeout``, "no data": the chip gave nothing, no read was discarded). That is the limit
    once the board's rate is measured (until then it allows for a 10 samples/s board,
    hw/hx711_rate.py), so the chip first converts a period apart until it is."""
    # Time limits far above any pause a busy host causes: no read is stretched into a reset.
    chip = HX711Chip(
        pin_factory,
        hx_pins.dout,
        hx_pins.sck,
        clock=sim_clock,
        load=LoadModel(),
        power_down_ns=15_000_000,
    )
    driver = HX711(hx_pins.dout, hx_pins.sck, max_clock_high_us=10_000, clock=sim_clock)
    got: list[Input] = []
    sampler = Sampler(driver, sim_clock, got.append, rate_sps=80)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()

    def sample_a_period_on() -> None:
        """A period on, the chip converts (unless settling) and the sampler reads it."""
        seen = sampler.samples + sampler.discarded
        sim_clock.advance(PERIOD_S)
        if chip.convert():
            assert wait_until(lambda: sampler.samples + sampler.discarded > seen)

    def looked() -> None:
        """Wait until the sampler has looked at the clock a few times since now."""
        cycles = sampler.cycles
        assert wait_until(lambda: sampler.cycles >= cycles + 3)

    try:
        while not driver.rate_watch.known:
            sample_a_period_on()
        assert driver.rate_watch.problem is None
        assert not driver.may_be_settling
        good = len(got)
        assert all(isinstance(i, ForceRead) for i in got)
        last_good = got[-1].t
        sim_clock.advance_to(last_good + 2.5 * PERIOD_S)
        looked()
        assert len(got) == good, got
        sim_clock.advance_to(last_good + 3 / 80)
        assert wait_until(lambda: len(got) == good + 1)
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
        driver.close()
        chip.close()
    assert got[good] == ReadFailed(last_good + 3 / 80, "timeout", "no data")


def test_s7_a_discarded_read_allows_for_the_chips_settling_and_is_no_sensor_fault(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock, mocker: MockerFixture
) -> None:
    """A data pulse stretched past the chip's power-down time: the driver discards the read and
    the chip resets, silent while it settles (50 ms, over the 3-period limit). The discard, not
    the sensor, explains the silence: the sampler waits it out and reports no fault."""
    with stretch_rig(pin_factory, hx_pins, sim_clock, mocker) as rig:
        chip, sampler = rig.chip, rig.sampler
        # Two periods on, the chip converts and the 10th data pulse is stretched.
        rig.stretch(10)
        sim_clock.advance(2 * PERIOD_S)
        assert chip.convert()
        assert wait_until(lambda: sampler.discarded == 1)
        mocker.stopall()
        assert chip.power_down_count == 1
        # Past the limit counted from the last good conversion, inside the one counted from the
        # discard plus the settling; the sampler looks at the clock, then the chip speaks.
        assert not chip.convert()
        for _ in range(5):
            sim_clock.advance(PERIOD_S)
        cycles = sampler.cycles
        assert wait_until(lambda: sampler.cycles >= cycles + 3)
        assert chip.convert()
        assert wait_until(lambda: sampler.samples == 2)

    got = rig.got
    assert [type(i) for i in got] == [ForceRead, ForceRead]


def looked_at(sampler: Sampler, clock: SimClock, t: float) -> None:
    """Move the clock to ``t`` and wait until the sampler has looked at it (a few passes)."""
    clock.advance_to(t)
    cycles = sampler.cycles
    assert wait_until(lambda: sampler.cycles >= cycles + 3)


def test_s7_a_load_cell_silent_from_start_up_is_a_fault_once_any_board_would_have_spoken(
    pin_factory: Any, hx_pins: Any, sim_clock: SimClock
) -> None:
    """No conversion ever (DOUT never falls): the first ``timeout`` comes once even a
    10 samples/s board would have settled and converted (FIRST_WAIT_S), not sooner; after it,
    one every gap of the slowest board (SLOWEST_GAP_S), the start-up allowance spent."""
    chip = HX711Chip(pin_factory, hx_pins.dout, hx_pins.sck, clock=sim_clock, load=LoadModel())
    driver = HX711(hx_pins.dout, hx_pins.sck, max_clock_high_us=10_000, clock=sim_clock)
    got: list[Input] = []
    sampler = Sampler(driver, sim_clock, got.append, rate_sps=80)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()

    try:
        looked_at(sampler, sim_clock, FIRST_WAIT_S - 0.001)
        assert got == []
        looked_at(sampler, sim_clock, FIRST_WAIT_S)
        assert wait_until(lambda: len(got) == 1)
        looked_at(sampler, sim_clock, FIRST_WAIT_S + SLOWEST_GAP_S - 0.001)
        assert len(got) == 1
        looked_at(sampler, sim_clock, FIRST_WAIT_S + SLOWEST_GAP_S)
        assert wait_until(lambda: len(got) == 2)
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
        driver.close()
        chip.close()
    assert got == [
        ReadFailed(FIRST_WAIT_S, "timeout", "no data"),
        ReadFailed(FIRST_WAIT_S + SLOWEST_GAP_S, "timeout", "no data"),
    ]


class _EveryReadDiscarded:
    """A 10 samples/s load cell every read of which the driver discards (the edge under
    test: a chip that keeps resetting, or a read that never checks out)."""

    interface, gain, rate_sps, settle_s, may_be_settling = "spi", 128, 10, 0.4, False
    reads = discarded = timeouts = 0

    def read_raw(self, timeout_s: float, *, exact_timeout: bool = False) -> int:
        time.sleep(0.001)  # a real read takes time: no busy loop in the test
        raise ReadDiscarded("out of step with the chip")

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def blind_spell(
    driver: _EveryReadDiscarded, clock: SimClock, looks: list[float], due: float
) -> None:
    """Every read discarded from time 0: the sampler looks at each of ``looks`` and reports
    nothing, then reports one ``ReadFailed`` at ``due``."""
    got: list[Input] = []
    sampler = Sampler(cast(Any, driver), clock, got.append, rate_sps=driver.rate_sps)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        for t in looks:
            looked_at(sampler, clock, t)
        assert got == []
        clock.advance_to(due)
        assert wait_until(lambda: len(got) == 1)
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
    [failed] = got
    assert isinstance(failed, ReadFailed) and (failed.t, failed.reason) == (due, "timeout")
    counted, _, words = failed.detail.partition(" ")
    assert words == "reads discarded"
    assert 0 < int(counted) <= sampler.discarded  # each counted once (more came after it)


def test_s7_reads_discarded_one_after_another_are_a_fault_after_the_settling_and_two_limits(
    sim_clock: SimClock,
) -> None:
    """Each discard allows for a chip that may be settling, but the force is never unknown for
    longer than the settling plus two fault limits (at 10 samples/s: 0.4 s plus twice 0.3 s)."""
    looks = [k * 0.1 - 0.001 for k in range(1, 11)]  # up to 0.999 s
    blind_spell(_EveryReadDiscarded(), sim_clock, looks, due=1.0)


class _GoodThenDiscarded(_EveryReadDiscarded):
    """One good read at start-up, then every read discarded with the chip neither reset nor
    settling: a tail of ones held and never confirmed, or reads that may have raced the next
    conversion."""

    good = 1

    def read_raw(self, timeout_s: float, *, exact_timeout: bool = False) -> int:
        if self.good:
            self.good -= 1
            return 1234
        return super().read_raw(timeout_s, exact_timeout=exact_timeout)


def test_s7_reads_discarded_after_a_good_one_are_a_fault_after_the_settling_and_two_limits(
    sim_clock: SimClock,
) -> None:
    """Not only at start-up: discards after a good read, with no reset and no settling behind
    them, are allowed the settling plus two limits too, and no more."""
    got: list[Input] = []
    driver = _GoodThenDiscarded()
    sampler = Sampler(cast(Any, driver), sim_clock, got.append, rate_sps=driver.rate_sps)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(got) == 1)  # the good read, at 0
        for t in [k * 0.1 - 0.001 for k in range(1, 11)]:  # up to 0.999 s
            looked_at(sampler, sim_clock, t)
        assert len(got) == 1
        sim_clock.advance_to(1.0)
        assert wait_until(lambda: len(got) == 2)
    finally:
        sampler.stop_event.set()
        thread.join(2.0)
    good, failed = got
    assert isinstance(good, ForceRead) and good.t == 0.0
    assert isinstance(failed, ReadFailed) and (failed.t, failed.reason) == (1.0, "timeout")


class _EveryReadDiscardedAt80(_EveryReadDiscarded):
    """The same at 80 samples/s, where the chip settles in 50 ms."""

    rate_sps, settle_s = 80, 0.05


def test_s7_at_80_samples_a_second_discards_one_after_another_are_a_fault_at_a_quarter_second(
    sim_clock: SimClock,
) -> None:
    """At 80 samples/s the settling plus two limits is only 0.125 s, which a busy host's
    hiccups could reach on their own: the force may stay unknown for up to 0.25 s
    (docs/ARCHITECTURE.md, MAX_BLIND_S), and never longer."""
    looks = [k * 0.01 for k in range(1, 25)] + [0.249]
    blind_spell(_EveryReadDiscardedAt80(), sim_clock, looks, due=0.25)
