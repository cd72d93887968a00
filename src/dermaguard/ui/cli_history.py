"""The ``dermaguard`` commands that read or change the history: history, status, report and
new-roller.

Each says which history it reads (the device's or the simulation's), and a history that exists
but cannot be read is an error naming the file, never shown as if it were empty.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dermaguard.config.load import Config, load_config
from dermaguard.config.params import pass_params
from dermaguard.ui.cli_common import environment_error, usage_error

if TYPE_CHECKING:
    from dermaguard.store import StoreReader

_T = TypeVar("_T")

#: ``status`` of a session a stopped daemon left open (a crash, a power cut).
OPEN_AFTER_STOP = (
    "cut short: the daemon stopped during it (closed as interrupted at its next start)"
)


def _history_path(config: Config, simulation: bool) -> tuple[Path, str]:
    """The store to read, and a line saying which one it is (every command says so).

    Without ``--simulation`` the device's history is read; on a machine that has only ever run
    the simulation, that history is shown instead, saying so, rather than nothing.
    """
    from dermaguard.config.paths import store_path

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

    config = load_config(args.config)
    if args.limit < 1:
        return usage_error(f"-n/--limit must be at least 1, got {args.limit}")
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
    from dermaguard.core.session import next_allowed_wall
    from dermaguard.daemon.status_file import STATUS_NAME, read_status
    from dermaguard.ui.history_view import format_status, live_case

    config = load_config(args.config)
    path, note = _history_path(config, args.simulation)
    last: dict[str, object] | None = None
    roller: dict[str, object] = {"roller_id": None, "uses": None}  # unknown without a history
    newest: list[dict[str, object]] = []
    if path.exists():
        last, rollers, newest = _read_history(
            path, lambda r: (r.last_session(), r.rollers(), r.recent_sessions(1))
        )
        roller = rollers[-1] if rollers else {"roller_id": 1, "uses": 0}
    else:
        note += "(nothing recorded there yet)\n"
    next_allowed = None
    if last is not None and last.get("clock_synced") is False:
        note += (
            "The last session was dated before the clock was synchronised: the rest since it "
            "cannot be checked.\n"
        )
    elif last is not None and isinstance(last.get("ended_at"), str):
        ended = utc_epoch(str(last["ended_at"]))
        if ended is not None:
            next_allowed = iso_utc(next_allowed_wall(ended, config.care.rest_s))
    live = read_status(path.parent / STATUS_NAME)
    if newest and newest[0].get("status") == "open":
        # A session still open in the history: running now, or cut short by a crash (the
        # daemon closes it as interrupted at its next start). Either way it is the last one.
        running = live is not None and live.get("running") is True
        last = {**newest[0], "status": "in progress" if running else OPEN_AFTER_STOP}
    case_state, sterile = live_case(live)
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
    print(note + format_status(status, now_wall=time.time()) + _history_lines(live))
    return 0


def _history_lines(live: dict[str, object] | None) -> str:
    """What the running daemon says of its history: unavailable (why; events wait in memory),
    or a corrupt file it set aside. Nothing when all is well."""
    if live is None or live.get("running") is not True:
        return ""
    out = ""
    if live.get("history") == "unavailable":
        out += (
            f"\nHistory:       UNAVAILABLE ({live.get('history_problem') or 'unknown reason'}); "
            "the alarm and the UV-C interlocks work, events are kept in memory and written "
            "when it returns"
        )
    if live.get("clock_synced") is False:
        out += (
            "\nClock:         NOT SYNCHRONISED (no NTP yet): times are guesses and the rest "
            "between sessions cannot be checked until it is"
        )
    if live.get("history_set_aside"):
        out += (
            f"\nHistory:       the corrupt history was kept as {live['history_set_aside']}; "
            "a new one was started"
        )
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from dermaguard.store import StoreError, open_readonly
    from dermaguard.ui.report import calendar_figure, check_output, session_figure
    from dermaguard.ui.report_data import ReportError, ReportWriteError

    config = load_config(args.config)
    if (args.session is None) == (args.weeks is None):
        return usage_error("give a SESSION_NO or --weeks N (one of them)")
    if args.weeks is not None and not 1 <= args.weeks <= 52:
        return usage_error("--weeks must be 1 to 52")
    if args.weeks is None and args.by != "sessions":
        return usage_error("--by colours the calendar's days: give it with --weeks N")
    try:
        check_output(args.output)
    except ReportError as exc:
        return usage_error(str(exc))
    path, note = _history_path(config, args.simulation)
    try:
        reader = open_readonly(path)
    except StoreError as exc:
        return environment_error(str(exc))
    try:
        if args.weeks is not None:
            sessions = reader.recent_sessions(10_000)
            out = calendar_figure(sessions, args.weeks, args.output, by=args.by)
        else:
            summary = reader.session(args.session)
            if summary is None:
                last = reader.last_session_no()
                held = f"it holds sessions 1 to {last}" if last else "it holds no session yet"
                return usage_error(f"there is no session {args.session} in {path}: {held}")
            trace = reader.trace(args.session)
            out = session_figure(
                summary, trace, config.pressure.zones, args.output, passes=pass_params(config)
            )
    except ReportWriteError as exc:
        return environment_error(str(exc))
    except ReportError as exc:
        return usage_error(str(exc))
    finally:
        reader.close()
    print(f"{note}wrote {out}")
    return 0


def cmd_new_roller(args: argparse.Namespace) -> int:
    """Record a new roller in an existing history; never creates one as a side effect."""
    import time

    from dermaguard.config.paths import store_path
    from dermaguard.store import Store, StoreError

    config = load_config(args.config)
    path = store_path(config, simulated=args.simulation)
    which = "simulation" if args.simulation else "device"
    if not path.exists():
        other = "" if args.simulation else " (for the simulation's, add --simulation)"
        return usage_error(
            f"no {which} history yet ({path}): nothing to change; the first roller starts at "
            f"0 uses when the daemon first runs{other}"
        )
    try:
        store = Store.open(path, config.device_id)
    except StoreError as exc:
        return environment_error(str(exc))
    try:
        roller_id = store.new_roller(time.time())
    finally:
        store.close()
    print(
        f"roller {roller_id} is in use from now on (0 uses) in the {which} history ({path}); "
        "a running daemon picks this up when it restarts"
    )
    return 0
