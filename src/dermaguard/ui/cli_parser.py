"""The ``dermaguard`` command line: every subcommand, its options and their help.

Only the grammar: what each command does lives in ``ui/cli.py`` (the daemon, calibration and
watch commands, and ``main``) and ``ui/cli_history.py`` (the commands that read the history);
``check-hardware`` and ``web`` add their own parsers (``daemon/hw_check.py``, ``ui/web/cli.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dermaguard import __version__
from dermaguard.daemon import hw_check, outputs_off
from dermaguard.ui.web import cli as web_cli


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="YAML config file (default: built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dermaguard",
        description="Pressure alarm, UV-C case interlock and history for a derma roller.",
    )
    parser.add_argument("--version", action="version", version=f"dermaguard {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (on a Pi, or --simulate on any machine)")
    _config_arg(run)
    run.add_argument(
        "--simulate",
        type=Path,
        metavar="SCENARIO",
        help="run on simulated hardware driven by a scenario file (see scenarios/)",
    )
    run.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulation speed: virtual seconds per real second (default 1)",
    )
    run.add_argument(
        "--system-clock",
        action="store_true",
        help="with --simulate at speed 1: date records by this system's clock and follow its "
        "NTP synchronisation, as the device does (default: the simulation's own calendar)",
    )
    broker = run.add_mutually_exclusive_group()
    broker.add_argument(
        "--mqtt",
        metavar="HOST[:PORT]",
        help="publish to this broker (overrides mqtt.host and mqtt.port, and enables MQTT)",
    )
    broker.add_argument(
        "--no-mqtt", action="store_true", help="run without MQTT (the local alarm never needs it)"
    )

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", type=Path, help="the YAML config file to check")
    check.add_argument(
        "--boot-config",
        type=Path,
        default=None,
        help="the boot configuration whose output levels the polarities must match (default: "
        "/boot/firmware/config.txt if present, else the repository's firmware/config.txt)",
    )

    cal = sub.add_parser(
        "calibrate",
        help="tare the load cell and calibrate it with known weights",
        description="Without options, walks you through calibration at the terminal. "
        "For scripts: `--tare` with nothing on the roller, then `--reference 200g` "
        "with a known weight on it. A weight that disagrees with a finished calibration is "
        "refused; a tare starts a new one. Every change keeps the calibration it replaced "
        "(`--undo` restores it).",
    )
    _config_arg(cal)
    cal.add_argument("--tare", action="store_true", help="zero the scale (nothing on the roller)")
    cal.add_argument("--reference", metavar="WEIGHT", help="known weight on the roller, e.g. 200g")
    cal.add_argument(
        "--undo",
        action="store_true",
        help="restore the calibration the last change replaced (again: go back)",
    )
    cal.add_argument("--samples", type=int, default=40, help="conversions averaged per step")
    cal.add_argument(
        "--simulate",
        action="store_true",
        help="calibrate the emulated load cell instead of real hardware",
    )
    cal.add_argument(
        "--sim-load",
        metavar="WEIGHT",
        default="0g",
        help="with --simulate: the weight resting on the emulated roller (default 0g)",
    )

    def history_source(p: argparse.ArgumentParser) -> None:
        _config_arg(p)
        p.add_argument(
            "--simulation",
            action="store_true",
            help="read the simulation's history (kept apart from the device's)",
        )

    hist = sub.add_parser("history", help="recent sessions as a table (or --json)")
    history_source(hist)
    hist.add_argument("-n", "--limit", type=int, default=20, help="how many sessions (default 20)")
    hist.add_argument("--json", action="store_true", help="JSON for scripts")

    status = sub.add_parser("status", help="disinfection, roller uses and the next allowed session")
    history_source(status)

    report = sub.add_parser(
        "report",
        help="draw a session (SESSION_NO) or a calendar (--weeks N) as a PNG",
    )
    history_source(report)
    report.add_argument(
        "session",
        nargs="?",
        type=int,
        metavar="SESSION_NO",
        help="the session to draw (its number in `dermaguard history`)",
    )
    report.add_argument("--weeks", type=int, help="calendar of the last N weeks instead")
    report.add_argument(
        "--by",
        choices=("sessions", "steadiness"),
        default="sessions",
        help="with --weeks: colour session days alike, or by their steadiness (pass force spread)",
    )
    report.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")

    roller = sub.add_parser("new-roller", help="record that a new roller is in use (resets uses)")
    history_source(roller)

    watch = sub.add_parser(
        "watch",
        help="show a device live from its MQTT topics (read-only)",
        description="Subscribes to a device's state, force, events, last session and "
        "availability and shows them live in the terminal. It never publishes anything.",
    )
    _config_arg(watch)
    watch.add_argument(
        "--mqtt",
        metavar="HOST[:PORT]",
        help="read from this broker (overrides mqtt.host and mqtt.port)",
    )
    watched = watch.add_mutually_exclusive_group()
    watched.add_argument(
        "--device", metavar="ID", help="the device_id to watch (default: the config's)"
    )
    watched.add_argument(
        "--simulation",
        action="store_true",
        help="watch the simulation (`run --simulate` publishes as <device_id>-sim)",
    )
    watch.add_argument(
        "--once",
        action="store_true",
        help="print one frame once the state has arrived, then exit (for scripts)",
    )
    watch.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="with --once: seconds to wait for the broker and the state (default 5)",
    )
    hw_check.add_parser(sub)
    outputs_off.add_parser(sub)
    web_cli.add_parser(sub)
    return parser
