"""The boot configuration's output levels against the configured output polarity.

From power-on until the daemon runs, only the firmware's ``gpio=<pins>=op,dl`` lines (and the
gate and base pull-downs) hold the UV-C driver and the buzzer off. They hold a pin *low*: right
for an active-high driver, and the opposite of off for an active-low one, which a setting like
``case.uv_active_high: false`` would then switch on at every boot. ``dermaguard check-config``
therefore refuses a polarity whose off level the boot configuration does not hold, naming the
line to change (docs/SAFETY.md, H33).

The boot configuration read is the installed ``/boot/firmware/config.txt`` when there is one
(the firmware reads that file), else the repository's ``firmware/config.txt`` (what
``firmware/provision.sh`` would install).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dermaguard.config.messages import not_allowed
from dermaguard.config.schema import Config

#: The file the Raspberry Pi firmware reads on Raspberry Pi OS bookworm.
INSTALLED = Path("/boot/firmware/config.txt")
#: The repository's lines for it (src/dermaguard/config/ -> the repository root).
REPOSITORY = Path(__file__).resolve().parents[3] / "firmware" / "config.txt"

_GPIO_LINE = re.compile(r"gpio=([0-9,\-]+)=(\S+)")


@dataclass(frozen=True, slots=True)
class BootLevel:
    """How the boot configuration leaves one GPIO: the last ``gpio=`` line that sets it."""

    line_no: int
    line: str
    output: bool  # op
    high: bool | None  # dh: True, dl: False, neither: None


def boot_config_path(installed: Path = INSTALLED, repository: Path = REPOSITORY) -> Path | None:
    """The installed file when it exists, else the repository's; ``None`` when neither does."""
    for path in (installed, repository):
        if path.is_file():
            return path
    return None


def boot_levels(text: str) -> dict[int, BootLevel]:
    """GPIO -> the ``gpio=`` line that last sets it (the firmware applies them in order)."""
    levels: dict[int, BootLevel] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        match = _GPIO_LINE.fullmatch(line)
        if match is None:
            continue
        options = set(match.group(2).split(","))
        high = True if "dh" in options else False if "dl" in options else None
        for part in match.group(1).split(","):
            low, _, top = part.partition("-")
            if not low.isdigit() or (top and not top.isdigit()):
                continue
            for gpio in range(int(low), int(top or low) + 1):
                levels[gpio] = BootLevel(number, line, "op" in options, high)
    return levels


def polarity_errors(config: Config, path: Path, text: str) -> list[str]:
    """One message per safety output whose configured off level the boot config does not
    drive from boot (UV-C driver, buzzer)."""
    levels = boot_levels(text)
    outputs = (
        ("case.uv_active_high", config.case.uv_active_high, "pins.uv_led", config.pins.uv_led),
        (
            "alarm.buzzer_active_high",
            config.alarm.buzzer_active_high,
            "pins.buzzer",
            config.pins.buzzer,
        ),
    )
    errors: list[str] = []
    for key, active_high, pin_key, gpio in outputs:
        off = "dl" if active_high else "dh"
        wanted = f"gpio={gpio}=op,{off}"
        level = levels.get(gpio)
        if level is None or not level.output or level.high is None:
            where = "has no line" if level is None else f"line {level.line_no} ({level.line})"
            requirement = (
                f"{path} {where} that drives GPIO{gpio} ({pin_key}) to its off level from boot; "
                f"add `{wanted}` (in firmware/config.txt, then run firmware/provision.sh)"
            )
            errors.append(not_allowed(key, active_high, requirement))
        elif level.high != (not active_high):
            driven = "high" if level.high else "low"
            requirement = (
                f"{path} line {level.line_no} (`{level.line}`) drives GPIO{gpio} ({pin_key}) "
                f"{driven} from boot, which switches this driver on; change that line to "
                f"`{wanted}` (and the pull resistor on the driver's input to match), or set "
                f"{key}: {'false' if active_high else 'true'}"
            )
            errors.append(not_allowed(key, active_high, requirement))
    return errors
