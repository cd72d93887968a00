"""Draw the dermaguard wiring diagram: ``hardware/wiring.svg`` and ``hardware/wiring.png``.

Run it after changing a pin or a part::

    pip install -e '.[hardware]'      # schemdraw (matplotlib comes with dermaguard)
    python hardware/wiring.py         # rewrites hardware/wiring.svg and hardware/wiring.png
    python hardware/wiring.py --interface gpio --svg /tmp/gpio.svg --png /tmp/gpio.png

The default drawing is the default wiring: the HX711 on SPI0 (``hx711.interface: spi``);
``--interface gpio`` draws the bit-banged alternative instead. The GPIO numbers are not typed
in here: they come from ``dermaguard.config.load.default_config()`` (``pins`` and the SPI0 pins of
``hx711.spi``), the same defaults the daemon uses, so the drawing cannot disagree with the
config. ``tests/unit/test_pinout.py`` checks :func:`wiring_pins` against the config,
``hardware/pinout.md`` and ``firmware/config.txt``, and that the committed SVG carries every
pin label this script draws. The pin data is importable without schemdraw; only :func:`draw`
needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path
from typing import Any

from dermaguard.config.load import Config, PinsConfig, default_config

HERE = Path(__file__).resolve().parent
SVG = HERE / "wiring.svg"
PNG = HERE / "wiring.png"

#: BCM GPIO -> physical pin of the 40-pin header. The same on every 40-pin Raspberry Pi, from the
#: Zero 2 W to the Pi 5 (the test checks it against gpiozero's board data).
HEADER_PIN: dict[int, int] = {
    2: 3, 3: 5, 4: 7, 14: 8, 15: 10, 17: 11, 18: 12, 27: 13, 22: 15, 23: 16, 24: 18, 10: 19,
    9: 21, 25: 22, 11: 23, 8: 24, 7: 26, 0: 27, 1: 28, 5: 29, 6: 31, 12: 32, 13: 33, 19: 35,
    16: 36, 26: 37, 20: 38, 21: 40,
}  # fmt: skip

#: Power pins, for the labels in the header box.
POWER_PINS: dict[str, tuple[int, ...]] = {
    "3V3": (1, 17),
    "5V": (2, 4),
    "GND": (6, 9, 14, 20, 25, 30, 34, 39),
}

#: Where an optional pin goes when it is null in the config (the default): drawn as optional on
#: the GPIO ``hardware/pinout.md`` suggests. BCM 5 for ``hx711_ready`` is the DOUT pin of the
#: bit-banged wiring, so a board moved to SPI can keep that wire.
SUGGESTED: dict[str, int] = {"uv_sensor": 26, "hx711_ready": 5}

#: ``pins.*`` fields that only one HX711 interface uses; the other interface's are not drawn.
INTERFACE_ONLY: dict[str, frozenset[str]] = {
    "spi": frozenset({"hx711_ready"}),
    "gpio": frozenset({"hx711_dout", "hx711_sck"}),
}
#: The SPI signals wired to the HX711: MOSI clocks PD_SCK, MISO reads DOUT.
SPI_WIRED = ("mosi", "miso")


@dataclasses.dataclass(frozen=True)
class WiredPin:
    """One GPIO of the drawing: its signal name (as in pinout.md) and its header pin.

    ``signal`` is a ``pins.*`` field name (``uv_led``) or an SPI0 pin (``spi0_mosi``).
    """

    signal: str
    bcm: int
    header: int
    optional: bool = False  # not wired by default (pins.<signal> is null in the config)

    @property
    def label(self) -> str:
        """The text drawn at the pin, e.g. ``GPIO25 (pin 22)``."""
        return f"GPIO{self.bcm} (pin {self.header})"


def _spi_pins(config: Config) -> dict[str, WiredPin]:
    """Every pin SPI0 owns, as ``spi0_<function>``."""
    return {
        f"spi0_{function}": WiredPin(f"spi0_{function}", bcm, HEADER_PIN[bcm])
        for function, bcm in config.hx711.spi.pins().items()
    }


def wiring_pins(config: Config | None = None) -> dict[str, WiredPin]:
    """Every GPIO the diagram wires, by signal: BCM number and header pin.

    ``config`` defaults to the config defaults. With ``hx711.interface: spi`` the HX711 is on
    SPI0's MOSI and MISO and ``pins.hx711_dout``/``hx711_sck`` are not drawn; with ``gpio`` it
    is on those two and ``pins.hx711_ready`` is not drawn. An optional pin that is not wired
    (``None``) is drawn on its :data:`SUGGESTED` GPIO and marked optional.
    """
    config = default_config() if config is None else config
    interface = config.hx711.interface
    out: dict[str, WiredPin] = {}
    if interface == "spi":
        spi = _spi_pins(config)
        out.update({f"spi0_{function}": spi[f"spi0_{function}"] for function in SPI_WIRED})
    other = "gpio" if interface == "spi" else "spi"
    for field in dataclasses.fields(PinsConfig):
        if field.name in INTERFACE_ONLY[other]:
            continue
        bcm = getattr(config.pins, field.name)
        optional = bcm is None
        if optional:
            if field.name not in SUGGESTED:
                raise ValueError(f"pins.{field.name} is not wired and has no suggested GPIO")
            bcm = SUGGESTED[field.name]
        out[field.name] = WiredPin(field.name, bcm, HEADER_PIN[bcm], optional)
    return out


def reserved_pins(config: Config | None = None) -> dict[str, WiredPin]:
    """SPI0's pins that are not wired but belong to its driver (none with interface gpio)."""
    config = default_config() if config is None else config
    if config.hx711.interface != "spi":
        return {}
    wired = {f"spi0_{function}" for function in SPI_WIRED}
    return {name: pin for name, pin in _spi_pins(config).items() if name not in wired}


#: The heading of the list of SPI0 pins the diagram leaves unconnected.
RESERVED_TITLE = "SPI0 owns GPIO 7-11;\nleave unconnected:"

#: signal -> label drawn at its header pin, built from the config defaults.
PIN_LABELS: dict[str, str] = {name: pin.label for name, pin in wiring_pins().items()}

# --- drawing ------------------------------------------------------------------------------------

FONT = 11  # points, for component values and notes
BLOCK_GAP = 1.2  # vertical space between two blocks
X_BLOCK = 9.0  # where the blocks start, right of the header box
HEADER_W = 4.8  # width of the header box, whose right edge is x = 0
#: How far below the top of the sheet the HX711 board's centre is: below the header's title.
HX711_TOP = 5.0
LID_RED = "#c0392b"  # the lid microswitch S1b: its NO contact (UV-C supply) and NC contact
UV_VIOLET = "#7b2cbf"
LOAD_CELL_WIRES = {"E+": "#d62728", "E-": "black", "A-": "#8c8c8c", "A+": "#2ca02c"}


def _elements() -> Any:
    """``schemdraw.elements``, imported when drawing (the pin data above needs no schemdraw).

    Typed ``Any``: schemdraw's chained element methods are only partly annotated.
    """
    import schemdraw.elements

    return schemdraw.elements


class _Sheet:
    """The drawing being built, block by block from the top, and each block's GPIO input."""

    def __init__(self, canvas: str) -> None:
        import schemdraw

        if canvas == "svg":
            # <text> elements, not glyph outlines: the labels stay searchable (the pinout test
            # reads them) and the file stays small.
            schemdraw.svgconfig.text = "text"
        self.d = schemdraw.Drawing(canvas=canvas, show=False)
        self.d.config(fontsize=FONT, lw=1.3)
        self.inputs: list[tuple[WiredPin, tuple[float, float], str]] = []
        self.block: list[Any] = []
        self.y = 0.0  # top of the next block

    def add(self, element: Any) -> Any:
        placed = self.d.add(element)
        self.block.append(placed)
        return placed

    def gpio(self, pin: WiredPin, point: Any, note: str) -> None:
        """Record that ``pin`` of the header is wired to ``point`` (its block's input)."""
        self.inputs.append((pin, (float(point[0]), float(point[1])), note))

    def end_block(self) -> None:
        """The next block starts below everything drawn since the last call."""
        ymin = min(e.get_bbox(transform=True, includetext=True).ymin for e in self.block)
        self.y = ymin - BLOCK_GAP
        self.block = []


def _hx711(s: _Sheet, pins: dict[str, WiredPin]) -> None:
    elm = _elements()

    size = (5.0, 4.0)
    bridge = ("A+", "A-", "E-", "E+")  # listed bottom to top
    hx = s.add(
        elm.Ic(
            pins=[
                elm.IcPin("SCK", side="left"),
                elm.IcPin("DT", side="left"),
                elm.IcPin("VCC", side="top"),
                elm.IcPin("VDD", side="top"),
                elm.IcPin("GND", side="bottom"),
                *(
                    elm.IcPin(name, side="right", anchorname=f"b{i}")
                    for i, name in enumerate(bridge)
                ),
            ],
            size=size,
            label="HX711\nboard\n(SJ2 cut,\nRATE high:\n80 SPS)",
            lsize=FONT,
        )
        .side("L", pad=1.0, spacing=2.0)
        .side("T", pad=1.0, spacing=2.0)
        .side("R", pad=0.6, spacing=0.93)
        .theta(0)
        .anchor("center")
        .at((X_BLOCK + 4.8, s.y - HX711_TOP))
    )
    # R16 in DOUT, at the board, on every board: it limits the current if DOUT and PD_SCK are
    # swapped, or if DOUT sits above 3.3 V (a single-supply board on 5 V).
    r16 = s.add(
        elm.Resistor().at((hx.DT[0] - 2.2, hx.DT[1])).to(hx.DT).label("R16\n1 kΩ", loc="top")
    )
    if "spi0_mosi" in pins:
        # PD_SCK on MOSI with its pull-down; DOUT on MISO, and optionally also on hx711_ready.
        s.gpio(pins["spi0_miso"], r16.start, "spi0_miso: HX711 DOUT")
        s.gpio(pins["spi0_mosi"], hx.SCK, "spi0_mosi: HX711 PD_SCK")
        node = s.add(elm.Dot().at((hx.SCK[0] - 1.6, hx.SCK[1])))
        s.add(elm.Resistor().at(node.center).down(1.6).label("R8\n100 kΩ", loc="bottom"))
        s.add(elm.Ground())
        ready = pins["hx711_ready"]
        join = s.add(elm.Dot(open=ready.optional).at((r16.start[0] - 0.6, hx.DT[1])))
        style = {"ls": "--"} if ready.optional else {}
        top = hx.center[1] + size[1] / 2 + 0.9
        wire = s.add(elm.Line(**style).at(join.center).to((join.center[0], top)))
        note = "hx711_ready: DOUT falling edge"
        if ready.optional:
            note = f"hx711_ready: optional, pins.hx711_ready: {ready.bcm}"
        s.gpio(ready, wire.end, note)
    else:
        s.gpio(pins["hx711_dout"], r16.start, "hx711_dout: data in")
        s.gpio(pins["hx711_sck"], hx.SCK, "hx711_sck: PD_SCK clock out")
    # VCC (analog) at 5 V keeps the SparkFun board's excitation regulator in regulation; VDD
    # (digital) at 3.3 V sets DOUT's level for the Pi.
    for supply, rail in ((hx.VCC, "5V"), (hx.VDD, "3V3")):
        s.add(elm.Line().at(supply).up(0.6))
        s.add(elm.Vdd(label=rail))
    s.add(elm.Line().at(hx.GND).down(0.5))
    s.add(elm.Ground())
    cell = s.add(
        elm.Ic(
            pins=[
                elm.IcPin(name, side="left", anchorname=f"b{i}") for i, name in enumerate(bridge)
            ],
            size=size,
            label="load cell 5 kg\n(full bridge)\nin the roller\nhandle",
            lsize=FONT,
        )
        .side("L", pad=0.6, spacing=0.93)
        .theta(0)
        .anchor("center")
        .at((hx.center[0] + size[0] + 4.5, hx.center[1]))
    )
    for i, name in enumerate(bridge):
        colour = LOAD_CELL_WIRES[name]
        s.add(elm.Line(color=colour, lw=2.2).at(getattr(hx, f"b{i}")).to(getattr(cell, f"b{i}")))
    s.add(
        elm.Label()
        .at(((hx.center[0] + cell.center[0]) / 2, hx.center[1] + size[1] / 2 + 0.9))
        .label("shielded 4-core cable,\nstrain-relieved in the handle", fontsize=FONT - 1)
    )
    # The cell senses force along one axis only: drawn as the force going into it.
    bottom = cell.center[1] - size[1] / 2
    s.add(
        elm.Arrow(lw=2.2)
        .at((cell.center[0] - 1.2, bottom - 2.2))
        .to((cell.center[0] - 1.2, bottom - 0.15))
        .label("F", loc="left", fontsize=FONT + 2)
    )
    s.add(
        elm.Label()
        .at((cell.center[0] - 1.6, bottom - 1.1))
        .label(
            "sensing axis = the cell's arrow,\nalong the handle: the skin pushes\n"
            "the head back. At θ off that axis\nit reads about F·cos θ",
            halign="right",
            fontsize=FONT - 1,
        )
    )
    s.end_block()


def _rgb_led(s: _Sheet, pins: dict[str, WiredPin]) -> None:
    elm = _elements()

    # Green and blue LEDs drop about 3 V, so they get less resistance to be seen at 3.3 V.
    channels = (
        ("led_red", "red", "#d62728", "220 Ω"),
        ("led_green", "green", "#2ca02c", "100 Ω"),
        ("led_blue", "blue", "#1f77b4", "100 Ω"),
    )
    y0 = s.y - 0.7
    ends = []
    for i, (signal, name, colour, ohms) in enumerate(channels):
        r = s.add(elm.Resistor().at((X_BLOCK, y0 - 1.5 * i)).right(2.5).label(ohms))
        s.add(elm.LED(color=colour).right(2.0).label(name, loc="bottom"))
        ends.append(s.add(elm.Line().right(0.8)).end)
        s.gpio(pins[signal], r.start, f"{signal}: RGB LED, {name}")
    s.add(elm.Line().at(ends[0]).to((ends[0][0], ends[-1][1] - 0.6)))
    for end in ends[1:]:
        s.add(elm.Dot().at(end))
    s.add(elm.Ground())
    s.add(
        elm.Label()
        .at((ends[0][0] + 0.5, y0 - 1.5))
        .label("LD1 RGB LED,\ncommon cathode\n(GPIO high = on)", halign="left")
    )
    s.end_block()


def _buzzer(s: _Sheet, pins: dict[str, WiredPin]) -> None:
    elm = _elements()

    y = s.y - 4.2
    r = s.add(elm.Resistor().at((X_BLOCK, y)).right(2.5).label("1 kΩ"))
    s.gpio(pins["buzzer"], r.start, "buzzer: NPN low-side switch")
    node = s.add(elm.Dot())
    q = s.add(
        elm.BjtNpn(circle=True)
        .theta(0)
        .anchor("base")
        .at((node.center[0] + 1.6, y))
        .label("Q1 NPN\nBC337 or\n2N2222", loc="right", ofst=(0.2, 0))
    )
    s.add(elm.Line().at(node.center).to(q.base))
    s.add(elm.Resistor().at(node.center).down(2.0).label("10 kΩ", loc="bottom"))
    s.add(elm.Ground())
    s.add(elm.Line().at(q.emitter).down(0.4))
    s.add(elm.Ground())
    low = s.add(elm.Line().at(q.collector).up(0.5))
    s.add(elm.RBox(w=0.9, h=0.5).up(2.0).label("BZ1\n5 V active\nbuzzer", loc="bottom"))
    high = s.add(elm.Line().up(0.4))
    s.add(elm.Vdd(label="5V"))
    s.add(elm.Line().at(low.end).left(1.4))
    s.add(elm.Diode().up(2.0).label("D1\n1N4148", loc="top"))
    s.add(elm.Line().to(high.start))
    s.end_block()


def _switch(s: _Sheet, pin: WiredPin, name: str, note: str, *, reed: bool = False) -> Any:
    """A switch to GND with its input filter: 10 kΩ pull-up, 1 kΩ series, 100 nF to GND."""
    elm = _elements()

    y = s.y - 2.4
    wire = s.add(elm.Line().at((X_BLOCK, y)).right(0.8))
    s.gpio(pin, wire.start, note)
    node = s.add(elm.Dot())
    s.add(elm.Capacitor().at(node.center).down(1.2).label("100 nF", loc="bottom"))
    s.add(elm.Ground())
    s.add(elm.Line().at(node.center).right(0.6))
    top = s.add(elm.Dot())
    s.add(elm.Resistor().at(top.center).up(1.4).label("10 kΩ", loc="top"))
    s.add(elm.Vdd(label="3V3"))
    s.add(elm.Resistor().at(top.center).right(2.0).label("1 kΩ"))
    kind = elm.SwitchReed if reed else elm.Switch
    sw = s.add(kind().right(2.0).label(name, loc="top"))
    s.add(elm.Line().right(0.8))
    s.add(elm.Ground())
    s.end_block()
    return sw


def _lid_contact(s: _Sheet, pin: WiredPin) -> Any:
    """S1b's normally-closed contact, read through an optocoupler (its COM is on +V_UV)."""
    elm = _elements()

    y = s.y - 2.2
    wire = s.add(elm.Line().at((X_BLOCK, y)).right(1.0))
    s.gpio(pin, wire.start, "lid_contact: low = lid open (S1b NC closed)")
    node = s.add(elm.Dot())
    s.add(elm.Resistor().at(node.center).up(1.4).label("10 kΩ", loc="bottom"))
    s.add(elm.Vdd(label="3V3"))
    s.add(elm.Line().at(node.center).right(0.8))
    opto = s.add(elm.Optocoupler().reverse().anchor("collector"))
    s.add(elm.Line().at(opto.emitter).down(0.4))
    s.add(elm.Ground())
    s.add(elm.Line().at(opto.cathode).down(0.4))
    s.add(elm.Ground())
    s.add(
        elm.Label()
        .at((opto.anode[0] + 0.4, opto.emitter[1] - 0.3))
        .label("U4 optocoupler\nPC817", fontsize=FONT - 1, halign="left")
    )
    s.add(elm.Line().at(opto.anode).right(0.6))
    s.add(elm.Resistor().right(2.0).label("R9\n1.5 kΩ"))
    sw = s.add(
        elm.Switch(nc=True, color=LID_RED)
        .right(2.0)
        .label("S1b NC contact\n(closed = lid open)", loc="top", color=LID_RED)
    )
    s.add(elm.Line().right(2.6))
    s.add(elm.Vdd(label="+V_UV, after F1"))
    s.end_block()
    return sw


def _uv(s: _Sheet, pins: dict[str, WiredPin], contact: Any) -> None:
    elm = _elements()

    y = s.y - 7.4
    r = s.add(elm.Resistor().at((X_BLOCK, y)).right(2.5).label("100 Ω"))
    s.gpio(pins["uv_led"], r.start, "uv_led: UV-C LED driver")
    node = s.add(elm.Dot())
    s.add(elm.Line().right(0.8))
    q = s.add(elm.NFet().theta(0).reverse().anchor("gate"))
    s.add(
        elm.Label()
        .at((q.drain[0] + 0.5, q.gate[1] - 0.2))
        .label("Q2 logic-level\nN-MOSFET\nAO3400A", halign="left")
    )
    s.add(elm.Resistor().at(node.center).down(2.0).label("100 kΩ", loc="bottom"))
    s.add(elm.Ground())
    s.add(elm.Line().at(q.source).down(0.4))
    s.add(elm.Ground())
    low = s.add(elm.Line().at(q.drain).up(0.5))
    s.add(
        elm.LED(color=UV_VIOLET)
        .up(2.2)
        .reverse()
        .label("UV-C LED\nmodule\n(275 nm)", loc="bottom", color=UV_VIOLET)
    )
    high = s.add(elm.Line().up(0.5))
    sw = s.add(
        elm.Switch(color=LID_RED)
        .up(2.2)
        .label(
            "S1b lid microswitch, NO contact\n(closed = lid shut):\nin series with the UV-C supply",
            loc="top",
            color=LID_RED,
        )
    )
    s.add(elm.Fuse().up(1.4).label("F1 fuse", loc="bottom"))
    s.add(elm.Vdd(label="+V_UV (PS2, 5-12 V; never the Pi's 5V)"))
    s.add(elm.Line().at(low.end).left(1.6))
    s.add(elm.Schottky().up(2.2).label("D2\n1N5819", loc="top"))
    s.add(elm.Line().to(high.start))
    # The NO and NC contacts belong to the one microswitch S1b: a dotted mechanical link.
    a = contact.center
    b = sw.center
    s.add(elm.Wire("|-", color=LID_RED, ls=":").at((a[0], a[1] - 0.2)).to((b[0] - 0.3, b[1])))
    s.end_block()


def _uv_sensor(s: _Sheet, pin: WiredPin) -> None:
    elm = _elements()

    y = s.y - 1.6
    box = s.add(
        elm.Ic(
            pins=[
                elm.IcPin("OUT", side="left"),
                elm.IcPin("VCC", side="top"),
                elm.IcPin("GND", side="bottom"),
            ],
            size=(5.0, 2.6),
            label="U3 UV sensor board\n(optional)",
            lsize=FONT,
            ls="--",
        )
        .side("L", pad=1.3)
        .theta(0)
        .anchor("OUT")
        .at((X_BLOCK + 3.4, y))
    )
    wire = s.add(elm.Line(ls="--").at((X_BLOCK, y)).to(box.OUT))
    # R15 pulls the LM393's open collector up at the sensor's end of the wire, from the
    # sensor's own 3V3: unplugged, the sensor leaves the input to the Pi's pull-down (dark).
    rail = box.VCC[1] + 0.4
    node = s.add(elm.Dot().at((box.OUT[0] - 1.0, y)))
    s.add(
        elm.Resistor()
        .at(node.center)
        .to((node.center[0], rail))
        .label("R15\n10 kΩ\nat U3", loc="top")
    )
    s.add(elm.Line(ls="--").to((box.VCC[0], rail)))
    s.add(elm.Line().at(box.VCC).up(0.4))
    s.add(elm.Dot())
    s.add(elm.Vdd(label="3V3"))
    s.add(elm.Line().at(box.GND).down(0.4))
    s.add(elm.Ground())
    note = "uv_sensor: lit = high (LM393, R15 pull-up at the sensor)"
    if pin.optional:
        note = f"uv_sensor: lit = high; optional, pins.uv_sensor: {pin.bcm}"
    s.gpio(pin, wire.start, note)
    s.end_block()


def _header(s: _Sheet, top: float, reserved: dict[str, WiredPin]) -> None:
    """The Pi's header box, a wire from each GPIO to its block's input, and the pins SPI0
    reserves without wiring them."""
    elm = _elements()

    bottom = min(y for _, (_, y), _ in s.inputs) - 3.2
    left = -HEADER_W
    s.add(elm.Rect(corner1=(left, top), corner2=(0, bottom), lw=1.8).at((0, 0)).theta(0))
    s.add(
        elm.Label()
        .at((left / 2, top - 1.0))
        .label("Raspberry Pi\n40-pin header\n(BCM GPIO numbers)", fontsize=FONT + 1)
    )
    power = "\n".join(f"{name}: pin {', '.join(map(str, p))}" for name, p in POWER_PINS.items())
    s.add(elm.Label().at((left / 2, bottom + 1.4)).label(power, fontsize=FONT - 2))
    if reserved:
        # In the widest gap between two wired pins, clear of their labels.
        ys = sorted((y for _, (_, y), _ in s.inputs), reverse=True)
        upper, lower = max(itertools.pairwise(ys), key=lambda pair: pair[0] - pair[1])
        lines = [RESERVED_TITLE] + [
            f"{pin.label}: {name.removeprefix('spi0_').upper()}"
            for name, pin in sorted(reserved.items(), key=lambda item: -item[1].bcm)
        ]
        s.add(
            elm.Label()
            .at((left / 2, (upper + lower) / 2))
            .label("\n".join(lines), fontsize=FONT - 1)
        )
    for pin, (x, y), note in s.inputs:
        s.add(elm.Dot().at((0, y)))
        s.add(elm.Label().at((-0.25, y)).label(pin.label, halign="right"))
        style = {"ls": "--"} if pin.optional else {}
        s.add(elm.Line(**style).at((0, y)).to((x, y)).label(note, loc="top", fontsize=FONT - 1))


def build(canvas: str, config: Config | None = None) -> Any:
    """The wiring diagram as a schemdraw Drawing on ``canvas`` ("svg" or "matplotlib")."""
    elm = _elements()

    config = default_config() if config is None else config
    wired = wiring_pins(config)
    s = _Sheet(canvas)
    title = "dermaguard wiring: HX711 on SPI0 (GPIO numbers from the config: pins.*, hx711.spi)"
    if config.hx711.interface == "gpio":
        title = "dermaguard wiring, alternative: HX711 bit-banged (GPIO numbers from pins.*)"
    s.add(elm.Label().at((-HEADER_W, 1.6)).label(title, halign="left", fontsize=FONT + 4))
    s.block = []
    _hx711(s, wired)
    _rgb_led(s, wired)
    _buzzer(s, wired)
    _switch(s, wired["dock"], "S2 dock switch (NO)", "dock: closed = docked")
    _switch(
        s,
        wired["lid"],
        "S3 lid reed switch\n(magnet in the lid)",
        "lid: closed = lid shut",
        reed=True,
    )
    contact = _lid_contact(s, wired["lid_contact"])
    _uv(s, wired, contact)
    _uv_sensor(s, wired["uv_sensor"])
    _header(s, top=0.4, reserved=reserved_pins(config))
    if config.hx711.interface == "spi":
        hx711_note = (
            "HX711 on SPI0 (hx711.interface: spi): the SPI controller clocks PD_SCK on MOSI, so "
            "no pause of Linux can power the chip down;\n"
            "R8 holds PD_SCK low while SPI is off. VDD at 3.3 V keeps DOUT safe for the Pi; VCC "
            "at 5 V. Alternative for boards wired otherwise:\n"
            "bit-banged on GPIO (hx711.interface: gpio, DOUT and PD_SCK on pins.hx711_dout and "
            "pins.hx711_sck), which can lose reads under load.\n"
        )
    else:
        hx711_note = (
            "HX711 bit-banged on GPIO (hx711.interface: gpio): a pause of the host over 60 µs "
            "with PD_SCK high powers the chip down\n"
            "and loses the read; the default SPI wiring (hardware/pinout.md) cannot. VDD at 3.3 V "
            "keeps DOUT safe for the Pi.\n"
        )
    notes = hx711_note + (
        "UV-C interlock: the microswitch S1b's NO contact carries the UV-C supply, so the LED is "
        "unpowered whenever its lever is up, whatever\n"
        "the software does. The software reads two diverse channels: S1b's NC contact (through U4) "
        "and the reed switch S3 (a magnet in the lid);\n"
        "UV runs only while both read the lid shut, and a disagreement is a latched fault "
        "(hardware/README.md).\n"
        "R16 in DOUT limits the current if DOUT and PD_SCK are swapped or DOUT sits above "
        "3.3 V. R15 sits at the UV sensor, so a sensor unplugged reads dark.\n"
        "Q2's source goes straight to PS2's negative, one wire from there to the Pi's GND. "
        "Outputs are driven low by firmware/config.txt once the\n"
        "firmware has read it (a few seconds after power-on); the 10 kΩ and 100 kΩ pull-downs "
        "keep Q1 and Q2 off before that."
    )
    s.add(elm.Label().at((-HEADER_W, s.y - 0.8)).label(notes, halign="left"))
    return s.d


def draw(svg: Path = SVG, png: Path = PNG, dpi: int = 110, config: Config | None = None) -> None:
    """Write the diagram as SVG (text kept as text) and as PNG."""
    build("svg", config).save(str(svg))
    build("matplotlib", config).save(str(png), transparent=False, dpi=dpi)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw hardware/wiring.svg and wiring.png.")
    parser.add_argument("--svg", type=Path, default=SVG, help="SVG to write")
    parser.add_argument("--png", type=Path, default=PNG, help="PNG to write")
    parser.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")
    parser.add_argument(
        "--interface",
        choices=("spi", "gpio"),
        default=default_config().hx711.interface,
        help="the HX711 wiring to draw: spi (the default) or the bit-banged gpio alternative",
    )
    args = parser.parse_args(argv)
    config = default_config()
    config = dataclasses.replace(
        config, hx711=dataclasses.replace(config.hx711, interface=args.interface)
    )
    draw(args.svg, args.png, args.dpi, config)
    print(f"wrote {args.svg} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
