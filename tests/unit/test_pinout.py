"""The wiring documents agree with the config: hardware/pinout.md, firmware/config.txt,
hardware/wiring.py (and the wiring.svg / wiring.png it drew), hardware/bom.csv and the config
defaults (``pins``, ``hx711.interface`` and the SPI0 pins of ``hx711.spi``).

A pin moved in one place and not the others is a board that does the wrong thing; for the UV-C
output it is a board whose UV is not held off at boot (S3), for the HX711 one whose PD_SCK is
on a pin the SPI driver does not drive. wiring.py takes its pins from the config; the committed
diagram is checked through the text of its SVG (no image diffing), and one test redraws it with
schemdraw (in the test extra) to catch a diagram not redrawn.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from dermaguard.config.load import Config, PinsConfig, default_config
from dermaguard.config.sections.hardware import SPI0_PINS
from dermaguard.sim.pins import mock_factory

ROOT = Path(__file__).resolve().parents[2]
PINOUT = ROOT / "hardware" / "pinout.md"
FIRMWARE = ROOT / "firmware" / "config.txt"
WIRING_PY = ROOT / "hardware" / "wiring.py"
WIRING_SVG = ROOT / "hardware" / "wiring.svg"
WIRING_PNG = ROOT / "hardware" / "wiring.png"
BOM = ROOT / "hardware" / "bom.csv"
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
    section: str  # the heading the row's table is under


def pinout_rows() -> dict[str, Row]:
    """Every row of every table in pinout.md, by signal (unique across the tables)."""
    rows: dict[str, Row] = {}
    section = ""
    for line in PINOUT.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
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
            section,
        )
    return rows


def spi_rows() -> dict[str, Row]:
    """The SPI0 table: ``spi0_<function>`` -> its row."""
    return {name: row for name, row in pinout_rows().items() if name.startswith("spi0_")}


def pins_rows() -> dict[str, Row]:
    """The ``pins:`` table: one row per PinsConfig field."""
    return {name: row for name, row in pinout_rows().items() if not name.startswith("spi0_")}


def firmware_lines() -> list[tuple[int, str]]:
    """(line number, text) of every setting in firmware/config.txt (no comments, no blanks)."""
    return [
        (number, line.strip())
        for number, line in enumerate(FIRMWARE.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def firmware_gpio_lines() -> dict[int, set[str]]:
    """GPIO -> the options of the ``gpio=<list>=<options>`` line that sets it."""
    out: dict[int, set[str]] = {}
    for _, line in firmware_lines():
        match = re.fullmatch(r"gpio=([0-9,\-]+)=(.+)", line)
        if not match:
            continue
        for part in match.group(1).split(","):
            low, _, high = part.partition("-")
            for gpio in range(int(low), int(high or low) + 1):
                assert gpio not in out, f"GPIO{gpio} set twice in {FIRMWARE.name}"
                out[gpio] = set(match.group(2).split(","))
    return out


def firmware_outputs_low() -> set[int]:
    """Every GPIO a ``gpio=...=op,dl`` line drives low from boot."""
    return {gpio for gpio, options in firmware_gpio_lines().items() if {"op", "dl"} <= options}


def with_interface(interface: str) -> Config:
    config = default_config()
    return dataclasses.replace(config, hx711=dataclasses.replace(config.hx711, interface=interface))


def test_the_hx711_is_on_spi_by_default_and_the_pinout_says_so() -> None:
    """The SPI table is the default wiring: its heading names the default interface."""
    assert default_config().hx711.interface == "spi"
    sections = {row.section for row in spi_rows().values()}
    assert sections == {"HX711 on SPI0 (`hx711.interface: spi`, the default)"}


def test_the_pinout_table_lists_every_configured_pin_at_its_default() -> None:
    rows = pins_rows()
    pins = default_config().pins
    names = {f.name for f in dataclasses.fields(PinsConfig)}
    assert set(rows) == names
    for name in names:
        assert rows[name].bcm == getattr(pins, name), name


def test_the_spi_table_lists_every_pin_spi0_owns() -> None:
    """All five, wired or not: the SPI driver owns them while SPI is on."""
    spi = default_config().hx711.spi
    assert spi.pins() == SPI0_PINS
    rows = spi_rows()
    assert set(rows) == {f"spi0_{function}" for function in SPI0_PINS}
    for function, bcm in SPI0_PINS.items():
        assert rows[f"spi0_{function}"].bcm == bcm, function
    # MOSI clocks PD_SCK, MISO reads DOUT; the rest are not connected.
    assert rows["spi0_mosi"].direction == "out" and "PD_SCK" in rows["spi0_mosi"].notes
    assert rows["spi0_miso"].direction == "in" and "DOUT" in rows["spi0_miso"].notes
    for function in ("sclk", "ce0", "ce1"):
        assert rows[f"spi0_{function}"].direction == "reserved", function
    # The chip select the config opens names the device node.
    assert f"/dev/spidev{spi.port}.{spi.device}" in rows[f"spi0_ce{spi.device}"].notes


def test_pd_sck_has_its_pull_down_in_the_table_and_the_bom() -> None:
    """Without it PD_SCK floats while SPI is off or at boot and may power the chip down."""
    assert "100 kΩ pull-down" in spi_rows()["spi0_mosi"].notes
    with BOM.open(encoding="utf-8", newline="") as f:
        parts = [
            row
            for row in csv.DictReader(f)
            if row["part"].startswith("Resistor") and "PD_SCK" in row["notes"]
        ]
    assert len(parts) == 1, parts
    assert parts[0]["part"].startswith("Resistor 100 kΩ")
    assert parts[0]["ref"] in wiring_svg_text()


def test_the_gpio_interface_pins_are_marked_as_the_alternative() -> None:
    """The rows only ``hx711.interface: gpio`` uses are the ones its drawing adds."""
    gpio_only = set(wiring.wiring_pins(with_interface("gpio"))) - set(wiring.wiring_pins())
    assert gpio_only == {"hx711_dout", "hx711_sck"}
    marked = {
        name
        for name, row in pins_rows().items()
        if row.notes.startswith("alternative wiring only (`hx711.interface: gpio`)")
    }
    assert marked == gpio_only
    assert "`hx711.interface: spi`" in pins_rows()["hx711_ready"].notes


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
    rows = pins_rows()
    assert {r.direction for r in rows.values()} <= {"in", "out"}
    outputs = {r.bcm for r in rows.values() if r.direction == "out"}
    inputs = {r.bcm for r in rows.values() if r.direction == "in" and r.bcm is not None}
    held_low = firmware_outputs_low()
    assert outputs == held_low
    assert not inputs & held_low


def test_spi_is_on_and_no_gpio_line_touches_its_pins() -> None:
    """The SPI driver owns GPIO 7-11 once loaded: a gpio= line there would fight it for the
    pin until then, and PD_SCK's pull-down already holds it low."""
    assert "dtparam=spi=on" in [line for _, line in firmware_lines()]
    assert not set(SPI0_PINS.values()) & set(firmware_gpio_lines())
    # And no configured pin sits on the bus by default.
    assert not set(SPI0_PINS.values()) & {r.bcm for r in pins_rows().values()}


@pytest.mark.parametrize("signal", ["uv_led", "buzzer"])
def test_s3_uv_and_buzzer_are_outputs_held_low_at_boot(signal: str) -> None:
    row = pinout_rows()[signal]
    assert row.direction == "out"
    assert row.bcm in firmware_outputs_low()


def test_the_firmware_lines_apply_on_every_model() -> None:
    """Appended after a [pi4] or [cm5] section, they would apply to that model only."""
    lines = [line for _, line in firmware_lines()]
    assert lines[0] == "[all]"
    assert not [line for line in lines[1:] if line.startswith("[")]
    assert "dtparam=watchdog=on" in lines


# --- hardware/wiring.py and the diagram it drew ------------------------------------------------


def test_wiring_py_draws_the_config_defaults() -> None:
    config = default_config()
    drawn = wiring.wiring_pins()
    # The default SPI wiring: MOSI and MISO, and every pins.* field but the gpio interface's.
    fields = {f.name for f in dataclasses.fields(PinsConfig)}
    assert set(drawn) == (fields - {"hx711_dout", "hx711_sck"}) | {"spi0_mosi", "spi0_miso"}
    assert set(wiring.PIN_LABELS) == set(drawn)
    for name, pin in drawn.items():
        if name.startswith("spi0_"):
            assert pin.bcm == SPI0_PINS[name.removeprefix("spi0_")], name
            assert not pin.optional, name
        else:
            configured = getattr(config.pins, name)
            assert pin.optional is (configured is None), name
            if configured is not None:
                assert pin.bcm == configured, name
        assert wiring.PIN_LABELS[name] == f"GPIO{pin.bcm} (pin {pin.header})"
    reserved = wiring.reserved_pins()
    assert {name: pin.bcm for name, pin in reserved.items()} == {
        f"spi0_{function}": SPI0_PINS[function] for function in ("sclk", "ce0", "ce1")
    }


def test_wiring_py_follows_a_changed_config() -> None:
    config = with_interface("gpio")
    moved = dataclasses.replace(
        config, pins=dataclasses.replace(config.pins, uv_led=16, uv_sensor=26, hx711_sck=12)
    )
    drawn = wiring.wiring_pins(moved)
    assert (drawn["uv_led"].bcm, drawn["uv_led"].header) == (16, 36)
    assert not drawn["uv_sensor"].optional
    # The bit-banged HX711 on its pins, nothing on SPI, and no ready line (spi only).
    assert (drawn["hx711_sck"].bcm, drawn["hx711_sck"].header) == (12, 32)
    assert drawn["hx711_dout"].bcm == config.pins.hx711_dout
    assert not [name for name in drawn if name.startswith("spi0_")]
    assert "hx711_ready" not in drawn
    assert wiring.reserved_pins(moved) == {}


def test_wiring_py_draws_a_wired_ready_pin_as_wired() -> None:
    config = default_config()
    wired = dataclasses.replace(config, pins=dataclasses.replace(config.pins, hx711_ready=16))
    ready = wiring.wiring_pins(wired)["hx711_ready"]
    assert (ready.bcm, ready.optional) == (16, False)
    assert wiring.wiring_pins()["hx711_ready"].optional


def test_wiring_py_agrees_with_the_pinout_table() -> None:
    """Every row is drawn where the table puts it: by default, or by the gpio alternative."""
    drawn = {**wiring.wiring_pins(with_interface("gpio")), **wiring.wiring_pins()}
    drawn.update(wiring.reserved_pins())
    assert set(drawn) == set(pinout_rows())
    for row in pinout_rows().values():
        pin = drawn[row.signal]
        if row.bcm is None:
            # Not wired by default: the diagram shows it where the table suggests.
            suggestion = f"BCM {pin.bcm}, header pin {pin.header}"
            assert pin.optional and suggestion in row.notes, (row.signal, row.notes)
            assert f"`pins.{row.signal}: {pin.bcm}`" in row.notes, row.notes
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


def wiring_svg_text() -> str:
    """Every text of the committed diagram, one after the other."""
    return "\n".join(text for _, text in svg_texts(WIRING_SVG.read_bytes()))


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


def test_the_committed_diagram_names_the_reserved_spi_pins_and_the_alternative() -> None:
    """GPIO 11, 8 and 7 are left unconnected, and the caption points to the gpio wiring."""
    text = wiring_svg_text()
    for name, pin in wiring.reserved_pins().items():
        assert f"{pin.label}: {name.removeprefix('spi0_').upper()}" in text, (name, REDRAW)
    assert "hx711.interface: gpio" in text, REDRAW
    assert "can lose reads under load" in text, REDRAW


def test_the_committed_diagram_is_what_wiring_py_draws_now() -> None:
    """Redraws the SVG (schemdraw, from the test extra) and compares every text in it."""
    fresh = wiring.build("svg").get_imagedata("svg")
    drawn = sorted(text for _, text in svg_texts(fresh))
    committed = sorted(text for _, text in svg_texts(WIRING_SVG.read_bytes()))
    assert drawn == committed, REDRAW


def test_wiring_py_draws_the_gpio_alternative(tmp_path: Path) -> None:
    """``--interface gpio`` draws the bit-banged HX711 on pins.hx711_dout/sck, nothing on SPI."""
    svg, png = tmp_path / "gpio.svg", tmp_path / "gpio.png"
    assert (
        wiring.main(["--interface", "gpio", "--svg", str(svg), "--png", str(png), "--dpi", "30"])
        == 0
    )
    texts = svg_texts(svg.read_bytes())
    labels = {text for _, text in texts if re.fullmatch(r"GPIO\d+ \(pin \d+\)", text)}
    expected = {pin.label for pin in wiring.wiring_pins(with_interface("gpio")).values()}
    assert labels == expected
    assert not [text for _, text in texts if text.startswith(("spi0_", "hx711_ready:"))]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_lid_contact_input_is_pulled_up_from_boot() -> None:
    """BCM 16 resets with a pull-down, which would fight the contact's 10 kΩ pull-up and read
    "lid shut" weakly; the boot line makes it an input pulled up, as the daemon opens it."""
    bcm = default_config().pins.lid_contact
    assert bcm is not None
    assert firmware_gpio_lines()[bcm] == {"ip", "pu"}
    assert f"`gpio={bcm}=ip,pu`" in pins_rows()["lid_contact"].notes


def test_released_outputs_return_to_inputs_at_the_pull_downs() -> None:
    """H32: a killed daemon's outputs fall back to inputs, where the pull-downs hold the UV-C
    MOSFET and the buzzer transistor off (Raspberry Pi kernels keep them driven otherwise)."""
    assert "dtparam=strict_gpiod" in [line for _, line in firmware_lines()]
    rows = pins_rows()
    assert "100 kΩ gate pull-down" in rows["uv_led"].notes
    assert "10 kΩ base pull-down" in rows["buzzer"].notes
    notes = {ref: row["notes"] for ref, row in bom_rows().items()}
    assert "Q2 gate to GND" in notes["R7"] and "Q1 base to GND" in notes["R5"]


def bom_rows() -> dict[str, dict[str, str]]:
    """bom.csv by reference; a range (``R10-R12``) is one row for several parts."""
    with BOM.open(encoding="utf-8", newline="") as f:
        return {row["ref"]: row for row in csv.DictReader(f)}


def bom_refs() -> set[str]:
    """Every single reference designator in bom.csv, ranges expanded and counted."""
    refs: set[str] = set()
    for ref, row in bom_rows().items():
        match = re.fullmatch(r"([A-Z]+)(\d+)-\1(\d+)", ref)
        if match:
            prefix, low, high = match.group(1), int(match.group(2)), int(match.group(3))
            expanded = {f"{prefix}{n}" for n in range(low, high + 1)}
            assert len(expanded) == int(row["qty"]), ref
            refs |= expanded
        else:
            refs.add(ref)
    return refs


#: The parts of the UV-C interlock and of the case's safety (docs/SAFETY.md, H30-H35), each
#: in the BOM, the assembly text and (where it is wired) the diagram.
INTERLOCK_PARTS = ("S1b", "S3", "U4", "R9", "F1", "D2", "Q2")
CASE_PARTS = ("M1", "HS1", "LB1", "W1", "PS2")


def test_the_readme_bom_and_diagram_name_the_same_interlock_and_safety_parts() -> None:
    readme = (ROOT / "hardware" / "README.md").read_text(encoding="utf-8")
    diagram = wiring_svg_text()
    refs = bom_refs()
    for ref in INTERLOCK_PARTS:
        assert ref in refs, f"{ref} is not in bom.csv"
        assert re.search(rf"\b{ref}\b", readme), f"hardware/README.md never names {ref}"
        assert re.search(rf"\b{ref}\b", diagram), (ref, REDRAW)
    for ref in CASE_PARTS:
        assert ref in refs, f"{ref} is not in bom.csv"
    assert "S1a" not in refs and "S1a" not in diagram  # one actuator for two channels: gone
    # The lid's two channels are on the pins the config, the pinout and the BOM name.
    pins = default_config().pins
    assert pins.lid_contact is not None
    notes = {ref: row["notes"] for ref, row in bom_rows().items()}
    for ref, signal, gpio in (("S1b", "lid_contact", pins.lid_contact), ("S3", "lid", pins.lid)):
        assert f"{signal} (GPIO{gpio})" in notes[ref], ref
        assert f"`{signal}` (GPIO{gpio})" in readme, signal
        assert pinout_rows()[signal].bcm == gpio
    # The HX711 board's rate jumper, named where a builder looks (H35).
    assert "SJ2" in notes["U2"] and "SJ2" in readme and "SJ2" in diagram
    # The case's leakage and build rules (H34).
    for words in (
        "overlapping lip",
        "light-tight",
        "UV warning label",
        "PLA",
        "fluorescent UV indicator card",
        "lid-gap test",
        "never from the Pi's 5 V pins",
        "heat sink",
    ):
        assert words in readme, words


def test_the_dout_resistor_the_uv_sensor_pull_up_and_the_cells_axis_agree_everywhere() -> None:
    """R16 in DOUT, R15 on the LM393's open collector (at the sensor, so an unplugged sensor
    reads dark through the input's pull-down) and the load cell's sensing axis: one value and
    one place in the BOM, the pinout, the README and the committed diagram."""
    readme = (ROOT / "hardware" / "README.md").read_text(encoding="utf-8")
    diagram = wiring_svg_text()
    bom = bom_rows()
    rows = pinout_rows()
    assert "R16" in bom_refs() and "1 kΩ" in bom["R16"]["part"]
    assert "DOUT" in bom["R16"]["notes"] and "R16" in bom["U2"]["notes"]
    assert "R16\n1 kΩ" in diagram, REDRAW
    assert "**R16, 1 kΩ in series with DOUT**" in readme
    for signal in ("spi0_miso", "hx711_dout"):
        assert "R16 (1 kΩ in series" in rows[signal].notes, signal
    assert "10 kΩ" in bom["R15"]["part"] and "at U3, not at the Pi" in bom["R15"]["notes"]
    assert "R15\n10 kΩ\nat U3" in diagram, REDRAW
    assert "R15, a\n  10 kΩ pull-up to 3V3, at the sensor, not at the Pi" in readme
    assert "R15, a 10 kΩ pull-up to 3V3 at the sensor" in rows["uv_sensor"].notes
    assert "(its input has a pull-down)" in PINOUT.read_text(encoding="utf-8")
    for text in (diagram, readme, bom["LC1"]["notes"]):
        assert "cos θ" in text and "sensing axis" in text.lower(), REDRAW
