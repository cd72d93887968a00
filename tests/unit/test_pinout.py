"""The wiring documents agree with the config: hardware/pinout.md, firmware/config.txt,
hardware/wiring.py (and the wiring.svg / wiring.png it drew), and the config defaults.

A pin moved in one place and not the others is a board that does the wrong thing; for the UV-C
output it is a board whose UV is not held off at boot (S3). wiring.py takes its pins from the
config; the committed diagram is checked through the text of its SVG (no image diffing), and
one test redraws it with schemdraw (in the test extra) to catch a diagram not redrawn.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from dermaguard.config import PinsConfig, default_config
from dermaguard.hw.pins import mock_factory

ROOT = Path(__file__).resolve().parents[2]
PINOUT = ROOT / "hardware" / "pinout.md"
FIRMWARE = ROOT / "firmware" / "config.txt"
WIRING_PY = ROOT / "hardware" / "wiring.py"
WIRING_SVG = ROOT / "hardware" / "wiring.svg"
WIRING_PNG = ROOT / "hardware" / "wiring.png"
NOT_WIRED = "—"
REDRAW = "the diagram is out of date: run `python hardware/wiring.py`, commit wiring.svg and .png"


def _load_wiring() -> ModuleType:
    """hardware/wiring.py as a module (hardware/ is not a package); needs no schemdraw."""
    spec = importlib.util.spec_from_file_location("dermaguard_hardware_wiring", WIRING_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


wiring = _load_wiring()


@dataclasses.dataclass(frozen=True)
class Row:
    signal: str
    bcm: int | None
    header: int | None
    direction: str
    notes: str


def pinout_rows() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in PINOUT.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] in ("signal", "") or set(cells[0]) <= {"-"}:
            continue
        signal, bcm, header, direction, notes = cells[:5]
        assert signal not in rows, f"{signal} appears twice in the pinout"
        rows[signal] = Row(
            signal,
            None if bcm == NOT_WIRED else int(bcm),
            None if header == NOT_WIRED else int(header),
            direction,
            notes,
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


def test_the_firmware_lines_apply_on_every_model() -> None:
    """Appended after a [pi4] or [cm5] section, they would apply to that model only."""
    lines = [
        line.strip()
        for line in FIRMWARE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "[all]"
    assert not [line for line in lines[1:] if line.startswith("[")]
    assert "dtparam=watchdog=on" in lines


# --- hardware/wiring.py and the diagram it drew ------------------------------------------------


def test_wiring_py_draws_the_config_defaults() -> None:
    pins = default_config().pins
    drawn = wiring.wiring_pins()
    assert set(drawn) == {f.name for f in dataclasses.fields(PinsConfig)}
    assert set(wiring.PIN_LABELS) == set(drawn)
    for name, pin in drawn.items():
        configured = getattr(pins, name)
        assert pin.optional is (configured is None), name
        if configured is not None:
            assert pin.bcm == configured, name
        assert wiring.PIN_LABELS[name] == f"GPIO{pin.bcm} (pin {pin.header})"


def test_wiring_py_follows_a_changed_config() -> None:
    moved = dataclasses.replace(default_config().pins, uv_led=16, uv_sensor=26)
    drawn = wiring.wiring_pins(moved)
    assert (drawn["uv_led"].bcm, drawn["uv_led"].header) == (16, 36)
    assert not drawn["uv_sensor"].optional


def test_wiring_py_agrees_with_the_pinout_table() -> None:
    drawn = wiring.wiring_pins()
    for row in pinout_rows().values():
        pin = drawn[row.signal]
        if row.bcm is None:
            # Not wired by default: the diagram shows it where the table suggests.
            suggestion = f"BCM {pin.bcm}, header pin {pin.header}"
            assert pin.optional and suggestion in row.notes, (row.signal, row.notes)
        else:
            assert (pin.bcm, pin.header) == (row.bcm, row.header), row.signal


def test_wiring_py_header_numbers_match_the_board() -> None:
    factory = mock_factory()
    try:
        for bcm, header in wiring.HEADER_PIN.items():
            [(_, info)] = factory.board_info.find_pin(f"GPIO{bcm}")
            assert info.number == header, bcm
    finally:
        factory.close()


def svg_texts(svg: bytes) -> list[tuple[float, str]]:
    """(y, text) of every text in a schemdraw SVG drawn with svgconfig.text = "text"."""
    out: list[tuple[float, str]] = []
    for element in ET.fromstring(svg).iter():
        if element.tag.rsplit("}", 1)[-1] != "text":
            continue
        lines = [t.text or "" for t in element if t.tag.rsplit("}", 1)[-1] == "tspan"]
        out.append((float(element.get("y", "nan")), "\n".join(lines) or element.text or ""))
    return out


def test_the_committed_diagram_wires_every_pin_to_its_block() -> None:
    """Each block's wire note ("uv_led: ...") sits on the row of its GPIO label."""
    assert WIRING_PNG.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert WIRING_PNG.stat().st_size > 10_000
    texts = svg_texts(WIRING_SVG.read_bytes())
    labels = {text: y for y, text in texts if re.fullmatch(r"GPIO\d+ \(pin \d+\)", text)}
    assert set(labels) == set(wiring.PIN_LABELS.values()), REDRAW
    for signal, label in wiring.PIN_LABELS.items():
        notes = [y for y, text in texts if text.startswith(f"{signal}:")]
        assert len(notes) == 1, (signal, REDRAW)
        nearest = min(labels, key=lambda text: abs(labels[text] - notes[0]))
        assert nearest == label, (signal, REDRAW)


def test_the_committed_diagram_is_what_wiring_py_draws_now() -> None:
    """Redraws the SVG (schemdraw, from the test extra) and compares every text in it."""
    fresh = wiring.build("svg").get_imagedata("svg")
    drawn = sorted(text for _, text in svg_texts(fresh))
    committed = sorted(text for _, text in svg_texts(WIRING_SVG.read_bytes()))
    assert drawn == committed, REDRAW
