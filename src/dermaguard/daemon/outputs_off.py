"""``dermaguard outputs-off``: drive the UV-C and buzzer outputs to their off level and exit.

The service runs it as ``ExecStopPost=`` (systemd/dermaguard.service), so it runs however the
daemon ended: a clean stop, a crash, or a SIGKILL from the watchdog or the OOM killer, after
which no exit handler of the daemon ran (S3's "UV off at exit" cannot run in a killed process).
Raspberry Pi kernels keep a released output driven unless ``dtparam=strict_gpiod`` is set
(firmware/config.txt), so a killed daemon could leave the UV-C gate high until the next start.

It needs no daemon and holds nothing afterwards: it opens each output at its off level (the
configured polarity: ``case.uv_active_high``, ``alarm.buzzer_active_high``), reads the level
back and releases the pin. An output it cannot open (busy, no GPIO access) is reported and the
other is still driven; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gpiozero import DigitalOutputDevice

from dermaguard.config.load import Config


@dataclass(frozen=True, slots=True)
class Output:
    """One output to switch off: its name, BCM pin and active level."""

    name: str
    gpio: int
    active_high: bool

    @property
    def off_level(self) -> bool:
        return not self.active_high


def safety_outputs(config: Config) -> tuple[Output, ...]:
    """The outputs that must be off when the daemon is not running, UV-C first."""
    return (
        Output("uv_led", config.pins.uv_led, config.case.uv_active_high),
        Output("buzzer", config.pins.buzzer, config.alarm.buzzer_active_high),
    )


def drive_off(outputs: tuple[Output, ...], pin_factory: Any, out: TextIO) -> bool:
    """Drive each output to its off level and release it; whether every one was driven."""
    ok = True
    for output in outputs:
        try:
            device = DigitalOutputDevice(
                output.gpio,
                active_high=output.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            )
        except Exception as exc:  # busy, no access: say so, and go on with the next one
            ok = False
            out.write(f"{output.name} (GPIO{output.gpio}): could not drive it off: {exc}\n")
            continue
        try:
            device.off()
            level = bool(device.pin.state)
            if level != output.off_level:
                ok = False
                out.write(f"{output.name} (GPIO{output.gpio}): reads {int(level)} after off\n")
            else:
                word = "high" if level else "low"
                out.write(f"{output.name} (GPIO{output.gpio}): off ({word})\n")
        finally:
            device.close()
    return ok


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``outputs-off`` subcommand's arguments."""
    p = sub.add_parser(
        "outputs-off",
        help="drive the UV-C and buzzer outputs to their off level (the service's stop path)",
        description="Drives the UV-C LED and buzzer outputs to their configured off level and "
        "releases them. The service runs it after the daemon has stopped, whatever stopped it "
        "(ExecStopPost=); it needs no running daemon.",
    )
    p.add_argument(
        "-c", "--config", type=Path, default=None, help="YAML config file (default: built-in)"
    )


def cmd_outputs_off(args: argparse.Namespace, pin_factory: Any = None) -> int:
    """0 when every output was driven off; 1 when one could not be."""
    from dermaguard.config.load import default_config, load_config
    from dermaguard.hw.pins import PinFactoryUnavailable, real_pin_factory

    config = load_config(args.config) if args.config is not None else default_config()
    try:
        factory = pin_factory if pin_factory is not None else real_pin_factory()
    except PinFactoryUnavailable as exc:
        # Simulated pins have nothing to switch off: the hint to use --simulate is not for here.
        reason = str(exc).split(" Run with --simulate", 1)[0]
        print(f"outputs-off: {reason} There are no outputs to switch off here.", file=sys.stderr)
        return 1
    return 0 if drive_off(safety_outputs(config), factory, sys.stdout) else 1
