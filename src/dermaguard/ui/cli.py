"""The ``dermaguard`` command: run, check-config, calibrate.

A person's mistake (bad config, missing calibration, wrong scenario) prints a clear message and
exits 2 without a traceback; what the machine refuses (an unwritable directory, an unreadable
history, a closed standard output) exits 1 with a message naming it; our own bugs keep their
traceback and exit non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dermaguard import __version__
from dermaguard.config.load import (
    Config,
    ConfigError,
    load_config,
    simulation_config,
    with_overrides,
)
from dermaguard.daemon import hw_check

if TYPE_CHECKING:
    from dermaguard.core.calibration import Calibration

if TYPE_CHECKING:
    from dermaguard.store import StoreReader
from dermaguard.ui.web import cli as web_cli

EXIT_USAGE = 2
#: The machine refused something (an unwritable directory, an unreadable history, a closed
#: standard output): the message names it.
EXIT_ENVIRONMENT = 1

_T = TypeVar("_T")


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
    web_cli.add_parser(sub)
    return parser


def _load(path: Path | None) -> Config:
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: OK (device {config.device_id}, profile {config.profile})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dermaguard.daemon.app import StartupError, load_scenario, simulation_state_dir
    from dermaguard.daemon.run import run_daemon
    from dermaguard.hw.pins import PinFactoryUnavailable

    config = _load(args.config)
    _setup_logging(args.log_level or config.log_level)
    if args.speed <= 0:
        return _usage_error("--speed must be more than 0")
    try:
        scenario = load_scenario(args.simulate) if args.simulate is not None else None
        if scenario is not None and scenario.config_overrides:
            config = with_overrides(config, scenario.config_overrides, f"{args.simulate} (config:)")
        _make_state_dir(
            simulation_state_dir(config) if scenario is not None else config.resolved_state_dir()
        )
        if args.no_mqtt:
            config = with_overrides(config, {"mqtt": {"enabled": False}}, "--no-mqtt")
        elif args.mqtt is not None:
            config = with_overrides(config, {"mqtt": _broker_address(args.mqtt)}, "--mqtt")
        return run_daemon(config, scenario, args.speed, sys.stdout)
    except (StartupError, PinFactoryUnavailable) as exc:
        return _usage_error(str(exc))


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


def _broker_address(text: str) -> dict[str, object]:
    """``host``, ``host:port`` or ``[v6addr]:port`` → mqtt overrides (validated as config)."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    out: dict[str, object] = {"enabled": True, "host": host}
    if port is not None:
        out["port"] = int(port) if port.isdigit() else port
    return out


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dermaguard.core.calibration import parse_reference
    from dermaguard.daemon.calibrate import CalibrateError, check_plausible, interactive, summary
    from dermaguard.daemon.calibrate import add_reference as do_reference
    from dermaguard.daemon.calibrate import tare as do_tare

    config = _load(args.config)
    _setup_logging(args.log_level or config.log_level)
    if args.tare and args.reference:
        return _usage_error(
            "--tare and --reference need different loads: run them one after the other"
        )
    if args.undo and (args.tare or args.reference):
        return _usage_error("--undo restores the previous calibration: give it on its own")
    if args.samples < 1:
        return _usage_error("--samples must be at least 1")
    try:
        sim_load = parse_reference(args.sim_load) if args.sim_load not in ("0", "0g") else 0.0
    except ValueError as exc:
        return _usage_error(f"--sim-load: {exc}")
    if not args.simulate and (clash := _service_clash(args, config)) is not None:
        return _usage_error(clash)
    from dermaguard.config.calibration_file import in_effect
    from dermaguard.daemon.app import calibration_file, open_hardware, sim_read, steady_scenario
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
        return _usage_error(str(exc))
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
            cal = do_reference(path, read, args.reference, args.samples)
            print(f"calibration stored in {path}")
        elif sys.stdin.isatty():
            cal = interactive(path, read, args.samples, config.hx711.gain)
            print(f"calibration stored in {path}")
        else:
            return _usage_error("no terminal: give --tare or --reference WEIGHT")
        print(summary(cal))
        _report_calibration_change(
            config, "tare" if args.tare else "reference", before, cal, simulated=args.simulate
        )
        warning = check_plausible(cal)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    except (CalibrateError, ValueError) as exc:
        return _usage_error(str(exc))
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
        return _usage_error(str(exc))
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
    """Say what the change does to the alarm, and record it as ``calibration_changed``.

    ``calibrate`` runs apart from the daemon, so the event goes into the device's history
    (the simulation's with ``--simulate``): the daemon publishes it from its outbox over MQTT
    when it next starts, which is also when it starts using the new calibration.
    """
    import time

    from dermaguard.daemon.app import store_path
    from dermaguard.daemon.calibrate import change_event, describe_change
    from dermaguard.store import Store, StoreError

    change = describe_change(old, new, config.pressure.zones.over_n)
    if change is not None:
        print(change)
    if simulated:
        config = simulation_config(config)
    history = store_path(config, simulated=simulated)
    try:
        store = Store.open(history, config.device_id, publish=config.mqtt.enabled)
        try:
            store.append_event(change_event(reason, old, new, time.monotonic()), time.time())
        finally:
            store.close()
    except (StoreError, OSError, sqlite3.Error) as exc:
        print(
            f"warning: the calibration changed, but the change could not be recorded in the "
            f"history {history}: {exc}",
            file=sys.stderr,
        )
    if new.is_complete:
        print("a running daemon uses the new calibration from its next start")


def _history_path(config: Config, simulation: bool) -> tuple[Path, str]:
    """The store to read, and a line saying which one it is (every command says so).

    Without ``--simulation`` the device's history is read; on a machine that has only ever run
    the simulation, that history is shown instead, saying so, rather than nothing.
    """
    from dermaguard.daemon.app import store_path

    device = store_path(config, simulated=False)
    simulated = store_path(config, simulated=True)
    if simulation:
        return simulated, f"(simulation history: {simulated})\n"
    if not device.exists() and simulated.exists():
        return simulated, (
            f"(no device history on this machine: showing the simulation's, {simulated})\n"
        )
    return device, f"(device history: {device})\n"


class HistoryUnreadable(Exception):
    """The history exists but cannot be read: nothing may be shown as if it were empty."""


def _read_history(path: Path, read: Callable[[StoreReader], _T]) -> _T:
    """``read(reader)`` on the store at ``path``; any failure is a :class:`HistoryUnreadable`
    naming the file, so no command shows made-up figures for a history it could not read."""
    import sqlite3

    from dermaguard.store import StoreError, open_readonly

    try:
        reader = open_readonly(path)
    except StoreError as exc:
        raise HistoryUnreadable(str(exc)) from exc
    try:
        return read(reader)
    except sqlite3.Error as exc:
        raise HistoryUnreadable(f"cannot read {path}: {exc}") from exc
    finally:
        reader.close()


def cmd_history(args: argparse.Namespace) -> int:
    from dermaguard.ui.history_view import format_history, history_json

    config = _load(args.config)
    if args.limit < 1:
        return _usage_error(f"-n/--limit must be at least 1, got {args.limit}")
    path, note = _history_path(config, args.simulation)
    if args.json:
        print(note.strip(), file=sys.stderr)  # stdout stays pure JSON
    if not path.exists():
        print("[]" if args.json else f"{note}{format_history([])}\n(nothing recorded there yet)")
        return 0
    sessions = _read_history(path, lambda r: r.recent_sessions(args.limit))
    if args.json:
        print(history_json(sessions))
    else:
        print(note + format_history(sessions))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from dermaguard.common.timefmt import iso_utc, utc_epoch
    from dermaguard.daemon.status_file import STATUS_NAME, read_status
    from dermaguard.ui.history_view import format_status, live_case

    config = _load(args.config)
    path, note = _history_path(config, args.simulation)
    last: dict[str, object] | None = None
    roller: dict[str, object] = {"roller_id": None, "uses": None}  # unknown without a history
    if path.exists():
        last, rollers = _read_history(path, lambda r: (r.last_session(), r.rollers()))
        roller = rollers[-1] if rollers else {"roller_id": 1, "uses": 0}
    else:
        note += "(nothing recorded there yet)\n"
    next_allowed = None
    if last is not None and isinstance(last.get("ended_at"), str):
        ended = utc_epoch(str(last["ended_at"]))
        if ended is not None:
            next_allowed = iso_utc(ended + config.care.rest_s)
    case_state, sterile = live_case(read_status(path.parent / STATUS_NAME))
    status = {
        "case_state": case_state,
        "sterile": sterile,
        "sterile_until": None,
        "roller_id": roller.get("roller_id"),
        "roller_uses": roller.get("uses"),
        "replace_after_uses": config.care.replace_after_uses,
        "last_session": last,
        "next_allowed_at": next_allowed,
        "needle_mm": config.care.needle_mm,
    }
    print(note + format_status(status, now_wall=time.time()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dermaguard.store import StoreError, open_readonly
    from dermaguard.ui.report import ReportError, calendar_figure, check_output, session_figure

    config = _load(args.config)
    if (args.session is None) == (args.weeks is None):
        return _usage_error("give a SESSION_NO or --weeks N (one of them)")
    if args.weeks is not None and not 1 <= args.weeks <= 52:
        return _usage_error("--weeks must be 1 to 52")
    try:
        check_output(args.output)
    except ReportError as exc:
        return _usage_error(str(exc))
    path, note = _history_path(config, args.simulation)
    try:
        reader = open_readonly(path)
    except StoreError as exc:
        return _environment_error(str(exc))
    try:
        if args.weeks is not None:
            sessions = reader.recent_sessions(10_000)
            out = calendar_figure(sessions, args.weeks, args.output)
        else:
            summary = reader.session(args.session)
            if summary is None:
                last = reader.last_session_no()
                held = f"it holds sessions 1 to {last}" if last else "it holds no session yet"
                return _usage_error(f"there is no session {args.session} in {path}: {held}")
            trace = reader.trace(args.session)
            out = session_figure(summary, trace, config.pressure.zones, args.output)
    except ReportError as exc:
        return _usage_error(str(exc))
    finally:
        reader.close()
    print(f"{note}wrote {out}")
    return 0


def cmd_new_roller(args: argparse.Namespace) -> int:
    """Record a new roller in an existing history; never creates one as a side effect."""
    import time

    from dermaguard.daemon.app import store_path
    from dermaguard.store import Store, StoreError

    config = _load(args.config)
    path = store_path(config, simulated=args.simulation)
    which = "simulation" if args.simulation else "device"
    if not path.exists():
        other = "" if args.simulation else " (for the simulation's, add --simulation)"
        return _usage_error(
            f"no {which} history yet ({path}): nothing to change; the first roller starts at "
            f"0 uses when the daemon first runs{other}"
        )
    try:
        store = Store.open(path, config.device_id)
    except StoreError as exc:
        return _environment_error(str(exc))
    try:
        roller_id = store.new_roller(time.time())
    finally:
        store.close()
    print(
        f"roller {roller_id} is in use from now on (0 uses) in the {which} history ({path}); "
        "a running daemon picks this up when it restarts"
    )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from dermaguard.mqtt.settings import MqttSettingsError, settings_from_config
    from dermaguard.ui.watch import WatchError, watch

    config = _load(args.config)
    if not args.timeout > 0:
        return _usage_error("--timeout must be more than 0")
    if args.mqtt is not None:
        config = with_overrides(config, {"mqtt": _broker_address(args.mqtt)}, "--mqtt")
    if args.device is not None:
        config = with_overrides(config, {"device_id": args.device}, "--device")
    elif args.simulation:
        config = simulation_config(config)
    try:
        settings = settings_from_config(config)
        return watch(settings, config.pressure.zones, once=args.once, timeout=args.timeout)
    except (MqttSettingsError, WatchError) as exc:
        return _usage_error(str(exc))
    except KeyboardInterrupt:
        return 0


def _usage_error(message: str) -> int:
    print(f"dermaguard: {message}", file=sys.stderr)
    return EXIT_USAGE


def _setup_logging(level: str) -> None:
    from dermaguard.daemon.logs import setup_logging

    setup_logging(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        return _environment_error(str(exc))
    except BrokenPipeError:
        # Piped into `head` or a pager that quit: say so once, and keep Python's flush at exit
        # from failing again on the same closed pipe.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _environment_error("standard output was closed before everything was written")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _environment_error(f"cannot use{where}: {exc.strerror or exc}")


def _environment_error(message: str) -> int:
    """The machine refused (a file, a directory, a closed pipe): not a usage mistake."""
    with contextlib.suppress(OSError):
        print(f"dermaguard: {message}", file=sys.stderr)
    return EXIT_ENVIRONMENT
