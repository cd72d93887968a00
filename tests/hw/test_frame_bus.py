"""The frames bus (``FrameSpiBus``) gives the driver exactly what the bit-level model does.

``bench/daemon.py`` measures the daemon's own CPU on the frames bus, whose polls and reads cost
a lookup, so that figure stands for the daemon only if the driver meets the same chip there:
the same codes, the same discards, the same transfers. The driver is opened as the daemon opens
it (``open_load_cell``) on each bus in turn, over the same conversions; single transfers are
compared byte for byte where the chip's own clock makes a conversion fall due around them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dermaguard.common.clock import SimClock
from dermaguard.config.load import default_config, parse_config
from dermaguard.daemon.app import steady_scenario
from dermaguard.daemon.load_cell import chip_pins, open_load_cell
from dermaguard.hw.hx711_protocol import HX711Error
from dermaguard.hw.hx711_spi import HX711Spi, decode_frame, read_frame
from dermaguard.sim.hardware import SimHardware
from dermaguard.sim.hx711_chip import MID_READ, HX711Chip, LoadModel, MidRead
from dermaguard.sim.pins import mock_factory
from dermaguard.sim.spi_bus import BUS_MODEL_ENV, FrameSpiBus, SimSpiBus, reply_for

PERIOD_S = 1 / 80
LOOK_AHEAD_S = 0.00025
READY = default_config().pins.hx711_dout
#: A read's transfer at 1 MHz: 9 bytes of 8 bits and the controller's idle bit.
READ_S = 9 * 9e-6


@contextmanager
def opened(bus_class: type[SimSpiBus], config_data: dict[str, Any]) -> Iterator[Any]:
    """A noisy chip on virtual time, ``bus_class`` on it, and the daemon's driver."""
    config = parse_config(config_data)
    factory = mock_factory()
    clock = SimClock()
    dout, _ = chip_pins(config)
    chip = HX711Chip(factory, dout, None, clock=clock, load=LoadModel(noise_counts=2000.0))
    bus = bus_class(chip, hz=config.hx711.spi.hz, mode=config.hx711.spi.mode)
    driver = open_load_cell(config, factory, clock, bus=bus)
    assert isinstance(driver, HX711Spi)
    try:
        clock.advance(chip.settle_s)  # the reset at opening
        yield clock, chip, bus, driver
    finally:
        driver.close()
        chip.close()
        factory.close()


def force_at(k: int) -> float:
    return 0.05 * (k % 40)


def run(bus_class: type[SimSpiBus], config_data: dict[str, Any], steps: int) -> dict[str, Any]:
    """Every outcome of ``steps`` lockstep conversions read as the sampler reads them (a poll
    just before each, unless a data-ready GPIO is wired), with a full-scale spell (codes held
    until the next confirms them) and a spike; and the counts both sides must agree on."""
    outcomes: list[int | str] = []
    made: set[int] = set()
    with opened(bus_class, config_data) as (clock, chip, bus, driver):
        for k in range(steps):
            clock.advance(PERIOD_S - LOOK_AHEAD_S)
            if driver.data_ready == "poll" and chip.dout:
                try:
                    driver.read_raw(0.0, exact_timeout=True)
                except HX711Error as exc:
                    outcomes.append(f"look: {exc}")
            clock.advance(LOOK_AHEAD_S)
            chip.force_n = force_at(k)
            chip.saturate("high" if 60 <= k < 64 else None)
            if k == 90:
                chip.spike(500_000)
            chip.convert()
            if chip.last_code is not None:
                made.add(chip.last_code)
            try:
                outcomes.append(driver.read_raw(0.05))
            except HX711Error as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
        return {
            "outcomes": outcomes,
            "made": made,
            "transfers": bus.transfers,
            "driver": (driver.transfers, driver.reads, driver.discarded, driver.resets),
            "chip": (chip.reads_completed, chip.next_gain, chip.conversions),
            "fast": getattr(bus, "fast_transfers", 0),
        }


@pytest.mark.parametrize(
    "config_data",
    [
        {},
        {"hx711": {"gain": 64}},
        {"hx711": {"gain": 32}},
        {"pins": {"hx711_ready": READY}},
    ],
    ids=["poll-128", "poll-64", "poll-32", "ready-128"],
)
def test_the_driver_reads_the_same_codes_on_the_frames_bus(config_data: dict[str, Any]) -> None:
    exact = run(SimSpiBus, config_data, 150)
    framed = run(FrameSpiBus, config_data, 150)
    assert framed["outcomes"] == exact["outcomes"]
    for key in ("transfers", "driver", "chip"):
        assert framed[key] == exact[key], key
    codes = [o for o in framed["outcomes"] if isinstance(o, int)]
    assert len(codes) > 100, framed["outcomes"]
    assert set(codes) <= framed["made"]  # each code is a conversion the chip made
    # Steady state costs a lookup: only the resets (at opening, after a gain's settling or an
    # out-of-step read) were clocked bit by bit.
    assert framed["fast"] >= framed["transfers"] - framed["driver"][3]


#: The chips' power-down threshold here. A conversion falling due while PD_SCK is high makes
#: the bit-level model check it against real time, which the bus's bit times run ahead of or
#: behind as fast as the host runs Python: the reference itself would vary with the load.
RELAXED_POWER_DOWN_NS = 10_000_000


def own_clock_pair(mid_read: MidRead, due_after_s: float) -> list[tuple[HX711Chip, SimSpiBus]]:
    """Two chips alike, converting on their own clocks, one behind each bus: each has a
    conversion waiting, and the next falls due ``due_after_s`` after the clock's time now."""
    pair = []
    for bus_class in (SimSpiBus, FrameSpiBus):
        clock = SimClock()
        chip = HX711Chip(
            mock_factory(),
            9,
            None,
            clock=clock,
            load=LoadModel(noise_counts=5e5),
            power_down_ns=RELAXED_POWER_DOWN_NS,
        )
        first = clock.monotonic() + 0.001
        chip.run_on_clock(mid_read=mid_read, first_at=first)
        clock.advance_to(first + PERIOD_S - due_after_s)
        chip.tick()
        pair.append((chip, bus_class(chip)))
    return pair


def chip_state(chip: HX711Chip) -> tuple[object, ...]:
    return (
        chip.dout,
        chip.pulses,
        chip.next_gain,
        chip.reads_completed,
        chip.mid_read_conversions,
        chip.last_code,
    )


@pytest.mark.parametrize("mid_read", MID_READ)
@pytest.mark.parametrize(
    "due_after_s", [-1e-6, 0.0, 2e-6, 9e-6, 0.5 * READ_S, READ_S - 1e-6, READ_S + 20e-6, 0.001]
)
def test_transfers_around_a_conversion_of_the_chips_own_clock_match_bit_for_bit(
    mid_read: MidRead, due_after_s: float
) -> None:
    """A read, a poll and another read, with a conversion falling due before, inside or after
    them: what MISO reads and where the chip is left are the same on both buses."""
    (exact_chip, exact), (framed_chip, framed) = own_clock_pair(mid_read, due_after_s)
    for frame in (read_frame(128), [0x00], read_frame(64), [0x00]):
        assert framed.transfer(frame) == exact.transfer(frame), frame
        assert chip_state(framed_chip) == chip_state(exact_chip), frame
    for chip in (exact_chip, framed_chip):
        chip.close()


@given(st.integers(0, 0xFFFFFF))
def test_a_reply_from_the_table_decodes_to_its_word(word: int) -> None:
    assert decode_frame(reply_for(word)) == word


def test_the_simulation_keeps_the_exact_bus_unless_the_frames_bus_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def bus_of(**kwargs: Any) -> type[object]:
        factory = mock_factory()
        try:
            sim = SimHardware(factory, steady_scenario("bus", 0.0), dout=9, sck=None, **kwargs)
            return type(sim.bus)
        finally:
            factory.close()

    monkeypatch.delenv(BUS_MODEL_ENV, raising=False)
    assert bus_of() is SimSpiBus
    monkeypatch.setenv(BUS_MODEL_ENV, "frames")
    assert bus_of() is FrameSpiBus
    assert bus_of(bus_model="bits") is SimSpiBus
    monkeypatch.setenv(BUS_MODEL_ENV, "fast")
    with pytest.raises(ValueError, match="bits, frames"):
        bus_of()


def test_a_misspelt_bus_model_is_refused_with_a_sentence_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermaguard.ui.cli import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv(BUS_MODEL_ENV, "fast")
    config = tmp_path / "dermaguard.yaml"
    config.write_text("mqtt: {enabled: false}\n", encoding="utf-8")
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "over_pressure.yaml"
    assert main(["run", "--simulate", str(scenario), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{BUS_MODEL_ENV}=fast is not a bus model" in err and "Traceback" not in err
