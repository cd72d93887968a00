"""The ``dermaguard`` command: ``main``, and the commands that run the daemon, check a config,
calibrate and watch.

The grammar is in ``ui/cli_parser.py``, the commands that read the history in
``ui/cli_history.py``, the exit codes in ``ui/cli_common.py``; ``check-hardware``,
``outputs-off`` and ``web`` bring their own (``daemon/hw_check.py``, ``daemon/outputs_off.py``,
``ui/web/cli.py``).

A person's mistake (bad config, missing calibration, wrong scenario) prints a clear message and
exits 2 without a traceback; what the machine refuses (an unwritable directory, an unreadable
history, a closed standard output) exits 1 with a message naming it; our own bugs keep their
traceback and exit non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dermaguard.config.load import (
    Config,
    ConfigError,
    load_config,
    simulation_config,
    with_overrides,
)
from dermaguard.daemon import hw_check, outputs_off
from dermaguard.ui.cli_common import EXIT_USAGE, broker_address, environment_error, usage_error
from dermaguard.ui.cli_history import (
    HistoryUnreadable,
    cmd_history,
    cmd_new_roller,
    cmd_report,
    cmd_status,
)
from dermaguard.ui.cli_parser import build_parser
from dermaguard.ui.web import cli as web_cli

if TYPE_CHECKING:
    from dermaguard.core.calibration import Calibration


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the file, then its output polarities against the boot configuration (H33)."""
    from dermaguard.config.boot_config import boot_config_path, polarity_errors

    config = load_config(args.file)
    boot = args.boot_config if args.boot_config is not None else boot_config_path()
    if boot is None:
        print(f"{args.file}: no boot configuration found: output polarities not checked")
    else:
        try:
            text = boot.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return environment_error(f"cannot read {boot}: {exc.strerror or exc}")
        errors = polarity_errors(config, boot, text)
        if errors:
            raise ConfigError(errors, str(args.file))
    print(f"{args.file}: OK (device {config.device_id}, profile {config.profile})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dermaguard.config.paths import state_dir
    from dermaguard.daemon.app import StartupError, load_scenario
    from dermaguard.daemon.instance_lock import EXIT_IN_USE, StateDirInUse
    from dermaguard.daemon.run import run_daemon
    from dermaguard.hw.pins import PinFactoryUnavailable

    config = load_config(args.config)
    _setup_logging(args.log_level or config.log_level)
    if not (math.isfinite(args.speed) and args.speed > 0):
        return usage_error(f"--speed {args.speed:g} is not allowed: give a number more than 0")
    if args.system_clock and (args.simulate is None or args.speed != 1):
        return usage_error(
            "--system-clock runs a simulation in real time on this system's clock: "
            "give it with --simulate and without --speed (or --speed 1)"
        )
    try:
        scenario = load_scenario(args.simulate) if args.simulate is not None else None
        if scenario is not None and scenario.config_overrides:
            config = with_overrides(config, scenario.config_overrides, f"{args.simulate} (config:)")
        _make_state_dir(state_dir(config, simulated=scenario is not None))
        if args.no_mqtt:
            config = with_overrides(config, {"mqtt": {"enabled": False}}, "--no-mqtt")
        elif args.mqtt is not None:
            config = with_overrides(config, {"mqtt": broker_address(args.mqtt)}, "--mqtt")
        return run_daemon(config, scenario, args.speed, sys.stdout, system_clock=args.system_clock)
    except PinFactoryUnavailable as exc:
        return environment_error(str(exc))  # the machine has no GPIO: not a usage mistake
    except StartupError as exc:
        return usage_error(str(exc))
    except StateDirInUse as exc:
        environment_error(str(exc))
        return EXIT_IN_USE


def _service_clash(args: argparse.Namespace, config: Config) -> str | None:
    """On a Pi with the service installed: why this calibration would clash with it."""
    import shlex

    from dermaguard.daemon.pi_service import calibrate_clash, service_state

    weight = shlex.quote(args.reference) if args.reference else ""
    step = "--tare" if args.tare else f"--reference {weight}" if weight else ""
    return calibrate_clash(config, args.config, f"calibrate {step}".strip(), service_state())


def _make_state_dir(path: Path) -> None:
    """Create the state directory if it is missing, and say so: never a directory made
    silently. A path that cannot be made is an OSError naming it (exit 1)."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    print(f"dermaguard: created the state directory {path}", file=sys.stderr)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dermaguard.core.calibration import parse_reference

    config = load_config(args.config)
    _setup_logging(args.log_level or config.log_level)
    if args.tare and args.reference:
        return usage_error(
            "--tare and --reference need different loads: run them one after the other"
        )
    if args.undo and (args.tare or args.reference):
        return usage_error("--undo restores the previous calibration: give it on its own")
    if args.samples < 1:
        return usage_error("--samples must be at least 1")
    try:
        sim_load = parse_reference(args.sim_load) if args.sim_load not in ("0", "0g") else 0.0
    except ValueError as exc:
        return usage_error(f"--sim-load: {exc}")
    if not args.simulate and (clash := _service_clash(args, config)) is not None:
        return usage_error(clash)
    from dermaguard.config.paths import state_dir
    from dermaguard.daemon.instance_lock import EXIT_IN_USE, StateDirInUse
    from dermaguard.daemon.instance_lock import acquire as lock_state_dir

    # What calibrate writes (the calibration, a history event) is the daemon's: never while a
    # daemon runs on the same state directory (a running daemon tares through cmd/tare).
    directory = state_dir(config, simulated=args.simulate)
    try:
        _make_state_dir(directory)
        lock = lock_state_dir(directory, "calibrate")
    except StateDirInUse as exc:
        environment_error(str(exc))
        return EXIT_IN_USE
    with lock:
        return _calibrate_locked(args, config, sim_load)


def _calibrate_locked(args: argparse.Namespace, config: Config, sim_load: float) -> int:
    from dermaguard.config.calibration_file import in_effect
    from dermaguard.config.paths import calibration_file
    from dermaguard.daemon.app import open_hardware, sim_read, steady_scenario
    from dermaguard.daemon.calibrate import CalibrateError, check_plausible, interactive, summary
    from dermaguard.daemon.calibrate import add_reference as do_reference
    from dermaguard.daemon.calibrate import tare as do_tare
    from dermaguard.hw.pins import PinFactoryUnavailable

    path = calibration_file(config, simulated=args.simulate)
    if args.undo:
        return _undo_calibration(config, path, simulated=args.simulate)
    scenario = None
    if args.simulate:
        scenario = steady_scenario("calibrate", sim_load)
    try:
        hw = open_hardware(config, scenario, speed=1.0)
    except PinFactoryUnavailable as exc:
        return environment_error(str(exc))
    before = in_effect(path)
    try:
        _make_state_dir(path.parent)

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
            cal = do_reference(
                path, read, args.reference, args.samples, capacity_n=config.load_cell.capacity_n
            )
            print(f"calibration stored in {path}")
        elif sys.stdin.isatty():
            cal = interactive(
                path,
                read,
                args.samples,
                config.hx711.gain,
                capacity_n=config.load_cell.capacity_n,
            )
            print(f"calibration stored in {path}")
        else:
            return usage_error("no terminal: give --tare or --reference WEIGHT")
        print(summary(cal))
        _report_calibration_change(
            config, "tare" if args.tare else "reference", before, cal, simulated=args.simulate
        )
        warning = check_plausible(cal)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    except (CalibrateError, ValueError) as exc:
        return usage_error(str(exc))
    finally:
        hw.close()


def _undo_calibration(config: Config, path: Path, *, simulated: bool) -> int:
    """``calibrate --undo``: swap the calibration with the one its last change replaced."""
    from dermaguard.config.calibration_file import (
        CalibrationFileError,
        backup_path,
        restore_previous,
    )
    from dermaguard.daemon.calibrate import summary

    try:
        restored, replaced = restore_previous(path)
    except CalibrationFileError as exc:
        return usage_error(str(exc))
    made = f" (made {restored.created})" if restored.created else ""
    print(f"restored the previous calibration{made} to {path}")
    if replaced is not None:
        print(f"the one it replaced is kept in {backup_path(path)}: `--undo` again goes back")
    print(summary(restored))
    old = replaced if replaced is not None and replaced.is_complete else None
    _report_calibration_change(config, "undo", old, restored, simulated=simulated)
    return 0


def _report_calibration_change(
    config: Config,
    reason: str,
    old: Calibration | None,
    new: Calibration,
    *,
    simulated: bool,
) -> None:
    """Say what the change does to the alarm, and record it in the history."""
    from dermaguard.daemon.calibrate import CalibrateError, describe_change, record_change

    change = describe_change(old, new, config.pressure.zones.over_n)
    if change is not None:
        print(change)
    try:
        record_change(config, reason, old, new, simulated=simulated)
    except CalibrateError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    if new.is_complete:
        print("a running daemon uses the new calibration from its next start")


def cmd_watch(args: argparse.Namespace) -> int:
    from dermaguard.mqtt.settings import MqttSettingsError, settings_from_config
    from dermaguard.ui.watch.subscriber import BrokerUnreachable, WatchError, watch

    config = load_config(args.config)
    if not args.timeout > 0:
        return usage_error("--timeout must be more than 0")
    if args.mqtt is not None:
        config = with_overrides(config, {"mqtt": broker_address(args.mqtt)}, "--mqtt")
    if args.device is not None:
        config = with_overrides(config, {"device_id": args.device}, "--device")
    elif args.simulation:
        config = simulation_config(config)
    try:
        settings = settings_from_config(config)
        return watch(settings, config.pressure.zones, once=args.once, timeout=args.timeout)
    except BrokerUnreachable as exc:
        return environment_error(str(exc))
    except (MqttSettingsError, WatchError) as exc:
        return usage_error(str(exc))
    except KeyboardInterrupt:
        return 0


def _setup_logging(level: str) -> None:
    from dermaguard.daemon.logs import setup_logging

    setup_logging(level)


#: Options whose value a person may well start with a minus (a negative weight): argparse would
#: take it for an option and fail in its own words, so the value is attached (``--x=-200g``) and
#: the option's own check says what is wrong with it.
_DASHED_VALUES = ("--reference", "--sim-load")


def _attach_dashed_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in _DASHED_VALUES and following.startswith("-") and following[1:2].isdigit():
            out.append(f"{arg}={following}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_dashed_values(sys.argv[1:] if argv is None else argv))
    if sys.stdout is None:
        # Started with descriptor 1 closed (`>&-`): Python has no standard output at all, and
        # print() would drop every line without a word.
        if args.command != "run":
            return environment_error("standard output is not open: nothing could be shown")
        print(
            "dermaguard: standard output is not open: the daemon's lines go nowhere "
            "(the history and MQTT still get everything)",
            file=sys.stderr,
        )
        sys.stdout = Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    handlers = {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "calibrate": cmd_calibrate,
        "history": cmd_history,
        "status": cmd_status,
        "report": cmd_report,
        "new-roller": cmd_new_roller,
        "watch": cmd_watch,
        "check-hardware": hw_check.cmd_check_hardware,
        "outputs-off": outputs_off.cmd_outputs_off,
        "web": web_cli.cmd_web,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except HistoryUnreadable as exc:
        return environment_error(str(exc))
    except BrokenPipeError:
        # Piped into `head` or a pager that quit: say so once, and keep Python's flush at exit
        # from failing again on the same closed pipe.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return environment_error("standard output was closed before everything was written")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return environment_error(f"cannot use{where}: {exc.strerror or exc}")
