"""The ``dermaguard`` command: run, check-config, calibrate.

A person's mistake (bad config, missing calibration, wrong scenario) prints a clear message and
exits 2 without a traceback; our own bugs keep their traceback and exit non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dermaguard import __version__
from dermaguard.config import Config, ConfigError, load_config, with_overrides

EXIT_USAGE = 2


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

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", type=Path)

    cal = sub.add_parser(
        "calibrate",
        help="tare the load cell and calibrate it with known weights",
        description="Without options, walks you through calibration at the terminal. "
        "For scripts: `--tare` with nothing on the roller, then `--reference 200g` "
        "with a known weight on it.",
    )
    _config_arg(cal)
    cal.add_argument("--tare", action="store_true", help="zero the scale (nothing on the roller)")
    cal.add_argument("--reference", metavar="WEIGHT", help="known weight on the roller, e.g. 200g")
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
    return parser


def _load(path: Path | None) -> Config:
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: OK (device {config.device_id}, profile {config.profile})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dermaguard.app import StartupError, run_daemon
    from dermaguard.hw.pins import PinFactoryUnavailable
    from dermaguard.sim.scenario import ScenarioError, load_scenario

    config = _load(args.config)
    _setup_logging(args.log_level or config.log_level)
    if args.speed <= 0:
        return _usage_error("--speed must be more than 0")
    try:
        scenario = load_scenario(args.simulate) if args.simulate is not None else None
        if scenario is not None and scenario.config_overrides:
            config = with_overrides(config, scenario.config_overrides, f"{args.simulate} (config:)")
        return run_daemon(config, scenario, args.speed, sys.stdout)
    except (ScenarioError, StartupError, PinFactoryUnavailable) as exc:
        return _usage_error(str(exc))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dermaguard.calibrate import CalibrateError, check_plausible, interactive, summary
    from dermaguard.calibrate import add_reference as do_reference
    from dermaguard.calibrate import tare as do_tare
    from dermaguard.core.calibration import parse_reference

    config = _load(args.config)
    _setup_logging(args.log_level or config.log_level)
    if args.tare and args.reference:
        return _usage_error(
            "--tare and --reference need different loads: run them one after the other"
        )
    if args.samples < 1:
        return _usage_error("--samples must be at least 1")
    try:
        sim_load = parse_reference(args.sim_load) if args.sim_load not in ("0", "0g") else 0.0
    except ValueError as exc:
        return _usage_error(f"--sim-load: {exc}")
    from dermaguard.app import open_hardware, sim_read, simulation_state_dir
    from dermaguard.hw.pins import PinFactoryUnavailable
    from dermaguard.sim.scenario import Scenario

    scenario = None
    if args.simulate:
        scenario = Scenario("calibrate", "", 1e9, ((0.0, sim_load),))
    try:
        hw = open_hardware(config, scenario, speed=1.0)
    except PinFactoryUnavailable as exc:
        return _usage_error(str(exc))
    path = (
        simulation_state_dir(config) / "calibration.json"
        if args.simulate
        else config.calibration_path()
    )
    try:

        def read() -> int:
            if hw.sim is not None:
                return sim_read(hw, sim_load)
            return hw.driver.read_raw(1.0)

        if args.tare:
            cal = do_tare(path, read, args.samples, config.hx711.gain)
            print(f"tare stored in {path}")
            if not cal.is_complete:
                print(
                    "next: put a known weight on the roller and run "
                    "`dermaguard calibrate --reference 200g`"
                )
        elif args.reference:
            cal = do_reference(path, read, args.reference, args.samples)
            print(f"calibration stored in {path}")
        elif sys.stdin.isatty():
            cal = interactive(path, read, args.samples, config.hx711.gain)
            print(f"calibration stored in {path}")
        else:
            return _usage_error("no terminal: give --tare or --reference WEIGHT")
        print(summary(cal))
        warning = check_plausible(cal)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    except (CalibrateError, ValueError) as exc:
        return _usage_error(str(exc))
    finally:
        hw.close()


def _usage_error(message: str) -> int:
    print(f"dermaguard: {message}", file=sys.stderr)
    return EXIT_USAGE


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "check-config": cmd_check_config, "calibrate": cmd_calibrate}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
