"""UV-C case benchmark: how fast UV goes off when the lid opens, and what the core costs.

Prints one ``name: value unit`` line per figure. ``--quick`` keeps it under 30 s.

- lid-open → UV pin low through the shell's direct path (safety rule S2), on gpiozero mock pins,
  in real time: from the lid pin changing to the UV pin going low (median and p99, ms). It
  measures our code path (gpiozero's callback dispatch and ``CaseIO``), not the kernel's GPIO
  interrupt latency, which only a Pi can show.
- lid-open → UV off through the engine path (queue, engine thread, ``SetUv`` applied), with
  the whole runtime running on mock pins (median and p99, ms).
- core: ``CaseMachine.handle`` per input during a running cycle (median and p99, µs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from dermaguard.common.clock import RealClock
from dermaguard.config.load import default_config
from dermaguard.config.params import default_case_params
from dermaguard.core.calibration import Calibration
from dermaguard.core.case import CaseMachine, LidChanged, LidContactChanged, UvSensed
from dermaguard.core.events import SetUv, Tick, UvOutput
from dermaguard.daemon.app import build_engine, open_case
from dermaguard.daemon.runtime import Runtime
from dermaguard.hw.hx711 import HX711
from dermaguard.hw.indicators import Indicators
from dermaguard.hw.pins import install_pin_factory
from dermaguard.sim.hx711_chip import HX711Chip, LoadModel
from dermaguard.sim.pins import BoundedMockPin, mock_factory
from figures import line, pct


class _TimedPin(BoundedMockPin):
    """The UV pin, noting when it last went low (perf_counter_ns)."""

    low_ns = 0

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        if changed and not value:
            self.low_ns = time.perf_counter_ns()
        return changed


def bench_direct_path(episodes: int) -> None:
    config = default_config()
    factory = mock_factory()
    install_pin_factory(factory)
    uv_pin = factory.pin(config.pins.uv_led, pin_class=_TimedPin)
    lid_pin = factory.pin(config.pins.lid)
    io = open_case(config, RealClock())  # the daemon's wiring and debounce
    latencies: list[float] = []
    try:
        # A closing lid is reported after the debounce; the direct path does not need that.
        lid_pin.drive_low()
        for _ in range(episodes):
            if not io.set_uv(True):
                raise RuntimeError("UV refused with the lid closed")
            start = time.perf_counter_ns()
            lid_pin.drive_high()
            if uv_pin.state:
                raise RuntimeError("UV still on after the lid opened")
            latencies.append((uv_pin.low_ns - start) / 1e6)
            lid_pin.drive_low()
    finally:
        io.close()
        factory.close()
        install_pin_factory(None)
    latencies = latencies[max(1, episodes // 20) :]  # skip warm-up
    line("lid_open_to_uv_low_direct_median", statistics.median(latencies), "ms")
    line("lid_open_to_uv_low_direct_p99", pct(latencies, 0.99), "ms")
    line("lid_open_to_uv_low_direct_p99_share_of_50ms", pct(latencies, 0.99) / 50.0, "fraction")


def bench_engine_path(episodes: int) -> None:
    """Lid-open → UV off through the queue, the engine and ``CaseIO.set_uv(False)``.

    The whole runtime runs on mock pins (the HX711 emulator free-running at 80 samples/s, so
    the engine thread also has samples to process). The time is taken when the runtime has
    applied the engine's ``SetUv(False)`` — the path that would switch UV off if the direct
    lid callback did not exist.
    """
    config = default_config()
    factory = mock_factory()
    install_pin_factory(factory)
    pins = config.pins
    chip = HX711Chip(factory, pins.hx711_dout, pins.hx711_sck)
    lid_pin = factory.pin(pins.lid)
    # The lid's second channel, S1b's NC contact: low while the lid is open (hardware/).
    assert pins.lid_contact is not None
    contact_pin = factory.pin(pins.lid_contact)
    dock_pin = factory.pin(pins.dock)
    clock = RealClock()
    io = open_case(config, clock)
    lid_pin.drive_high()  # open (active low; set after the pull-ups are applied)
    contact_pin.drive_low()
    dock_pin.drive_low()  # docked
    driver = HX711(pins.hx711_dout, pins.hx711_sck)
    indicators = Indicators(pins.led_red, pins.led_green, pins.led_blue, pins.buzzer)
    model = LoadModel()
    engine = build_engine(
        config,
        Calibration(offset=model.offset_counts, scale_n_per_count=1 / model.counts_per_newton),
    )
    uv_events: list[tuple[bool, int]] = []

    def sink(effect: object) -> None:
        if isinstance(effect, SetUv):
            uv_events.append((effect.on, time.perf_counter_ns()))

    runtime = Runtime(engine, clock, indicators, driver, io, rate_sps=80, sinks=[sink])
    io.set_sink(runtime.put)
    runtime.start()
    chip.start()
    latencies: list[float] = []
    try:
        for _ in range(episodes):
            uv_events.clear()
            contact_pin.drive_high()  # the lever goes down with the lid...
            lid_pin.drive_low()  # ...and the magnet closes the reed: after the debounce, a cycle
            if not _wait(lambda: any(on for on, _ in uv_events), 2.0):
                raise RuntimeError("the cycle did not start")
            start = time.perf_counter_ns()
            lid_pin.drive_high()
            contact_pin.drive_low()
            if not _wait(lambda: any(not on for on, _ in uv_events), 2.0):
                raise RuntimeError("the engine never switched UV off")
            off_ns = next(ns for on, ns in uv_events if not on)
            latencies.append((off_ns - start) / 1e6)
            time.sleep(0.03)
    finally:
        chip.stop()
        runtime.stop()
        indicators.close()
        driver.close()
        io.close()
        chip.close()
        factory.close()
        install_pin_factory(None)
    line("lid_open_to_uv_off_engine_median", statistics.median(latencies), "ms")
    line("lid_open_to_uv_off_engine_p99", pct(latencies, 0.99), "ms")
    line("lid_open_to_uv_off_engine_p99_share_of_50ms", pct(latencies, 0.99) / 50.0, "fraction")


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.0005)
    return bool(predicate())


def bench_core(n: int) -> None:
    params = default_case_params(cycle_s=1e9, uv_sensor=True, uv_confirm_s=5.0)
    machine = CaseMachine(params, docked=True)
    machine.handle(LidContactChanged(0.0, True))  # both lid channels close (hardware/)
    machine.handle(LidChanged(0.0, True))
    machine.handle(UvOutput(0.005, True))  # the shell reports the pin it drove (H17)
    machine.handle(UvSensed(0.01, True))
    times: list[float] = []
    for i in range(n):
        inp = Tick(0.02 + i * 0.1)
        t0 = time.perf_counter_ns()
        machine.handle(inp)
        times.append((time.perf_counter_ns() - t0) / 1000)
    if not machine.uv_on:
        raise RuntimeError("the cycle ended during the benchmark")
    times = times[n // 10 :]
    line("case_core_per_input_median", statistics.median(times), "us")
    line("case_core_per_input_p99", pct(times, 0.99), "us")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, under 30 s")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: can every figure still be made?"
    )
    args = parser.parse_args()
    bench_direct_path(50 if args.smoke else 500 if args.quick else 5_000)
    bench_engine_path(10 if args.smoke else 100 if args.quick else 1_000)
    bench_core(2_000 if args.smoke else 20_000 if args.quick else 200_000)


if __name__ == "__main__":
    main()
