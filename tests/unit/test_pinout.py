"""The wiring documents agree with the config: hardware/pinout.md, firmware/config.txt, defaults.

A pin moved in one place and not the others is a board that does the wrong thing; for the UV-C
output it is a board whose UV is not held off at boot (S3).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dermaguard.config import PinsConfig, default_config
from dermaguard.hw.pins import mock_factory

ROOT = Path(__file__).resolve().parents[2]
PINOUT = ROOT / "hardware" / "pinout.md"
FIRMWARE = ROOT / "firmware" / "config.txt"
NOT_WIRED = "—"


@dataclasses.dataclass(frozen=True)
class Row:
    signal: str
    bcm: int | None
    header: int | None
    direction: str


def pinout_rows() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in PINOUT.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("signal", "") or set(cells[0]) <= {"-"}:
            continue
        signal, bcm, header, direction = cells[:4]
        assert signal not in rows, f"{signal} appears twice in the pinout"
        rows[signal] = Row(
            signal,
            None if bcm == NOT_WIRED else int(bcm),
            None if header == NOT_WIRED else int(header),
            direction,
        )
    return rows


def firmware_outputs_low() -> dict[int, int]:
    """GPIO -> line number of every ``gpio=<list>=op,dl`` line (lists and ranges allowed)."""
    out: dict[int, int] = {}
    for number, line in enumerate(FIRMWARE.read_text(encoding="utf-8").splitlines(), 1):
        match = re.fullmatch(r"gpio=([0-9,\-]+)=(.+)", line.strip())
        if not match:
            continue
        options = set(match.group(2).split(","))
        if not {"op", "dl"} <= options:
            continue
        for part in match.group(1).split(","):
            low, _, high = part.partition("-")
            for gpio in range(int(low), int(high or low) + 1):
                assert gpio not in out, f"GPIO{gpio} set twice in {FIRMWARE.name}"
                out[gpio] = number
    return out


def test_the_pinout_table_lists_every_configured_pin_at_its_default() -> None:
    rows = pinout_rows()
    pins = default_config().pins
    names = {f.name for f in dataclasses.fields(PinsConfig)}
    assert set(rows) == names
    for name in names:
        assert rows[name].bcm == getattr(pins, name), name


def test_header_pin_numbers_match_the_board() -> None:
    factory = mock_factory()
    try:
        for row in pinout_rows().values():
            if row.bcm is None:
                assert row.header is None, row.signal
                continue
            [(_, info)] = factory.board_info.find_pin(f"GPIO{row.bcm}")
            assert row.header == info.number, row.signal
    finally:
        factory.close()


def test_every_output_is_driven_low_from_boot_and_no_input_is() -> None:
    rows = pinout_rows()
    assert {r.direction for r in rows.values()} <= {"in", "out"}
    outputs = {r.bcm for r in rows.values() if r.direction == "out"}
    inputs = {r.bcm for r in rows.values() if r.direction == "in" and r.bcm is not None}
    held_low = set(firmware_outputs_low())
    assert outputs == held_low
    assert not inputs & held_low


@pytest.mark.parametrize("signal", ["uv_led", "buzzer"])
def test_s3_uv_and_buzzer_are_outputs_held_low_at_boot(signal: str) -> None:
    row = pinout_rows()[signal]
    assert row.direction == "out"
    assert row.bcm in firmware_outputs_low()
