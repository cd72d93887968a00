"""Faults injected many times at random points: the broker under a running daemon, the daemon
itself. The claim under test is the storage and delivery promise (docs/ARCHITECTURE.md, "Data
flow"; docs/MQTT.md): nothing committed is lost and the daemon recovers.

Randomness: one ``random.Random(seed)`` per test draws every delay. The seed is random unless
``DERMAGUARD_FAULT_SEED`` sets it, and every failure message starts with the seed and the
round (``DERMAGUARD_FAULT_ROUNDS``, default 20, sets the number of rounds). The same seed
replays the same delays and fault order; the timing of the daemon's own threads against them
is the real machine's, so a seed reproduces a failure's schedule, not its exact interleaving.

**Broker stopped or killed, 20 times, under one daemon run** (one long session of pushes over
the limit). Odd rounds stop the broker with SIGTERM, even rounds SIGKILL it; after a random
time up and a random time down it starts again on the same port, and the round waits until
the daemon and the subscriber are connected again before the next fault. The assertions:

* The daemon's view, after the clean stop (SIGTERM, exit 0): every event in its log is marked
  delivered, i.e. a broker acknowledged it with a successful PUBACK, including those committed
  while the broker was away (there must be some); seqs run 1..N without gap or duplicate; one
  ``daemon_started`` first, ``daemon_stopping`` last; it connected exactly once per broker
  start and logged each reconnection; nothing logged at ERROR, no traceback; the retained
  availability is its ``offline``.
* The subscriber's view (an independent persistent MQTT 5 session; de-duplicated by ``id`` as
  the contract tells consumers to): every event it got is in the daemon's log with the same
  seq and type, first arrivals come in seq order, and every stored event arrived, **except**
  events that were *exposed to a SIGKILL*: committed before a kill and not yet received when
  the subscriber saw that broker die. Those may legitimately be missing, and no stronger
  claim is honest: Mosquitto acknowledges a QoS 1 PUBLISH before it saves anything, and the
  daemon rightly never re-sends what was acknowledged, so a SIGKILLed broker can lose a
  message it already took (and, saving only at shutdown, its queue for the subscriber).
  Mosquitto 2.0.11 has no per-message durability to configure that away: with
  ``autosave_on_changes true`` and ``autosave_interval 1`` it saves its whole database after
  each change, but only after the PUBACK went out (checked: five QoS 1 messages published to
  an offline persistent session, SIGKILL right after the last PUBACK; four came back). So this
  test uses the ordinary broker (persistence saved at shutdown, as the other MQTT tests do; a
  kill loses everything since the last stop, the harshest case), and the exemption is computed
  per kill, as narrowly as the test can observe it; SIGTERM rounds exempt nothing (a stopping
  broker saves what it acknowledged). The rounds alternate starting with a SIGTERM, so the
  subscriber's session is on disk before the first kill.
  A missing event is still checked on the daemon's side: it must be marked delivered.

**Daemon SIGKILLed, 20 times, in one state directory**, with MQTT on and a broker that is never
touched (so here the subscriber must get everything). Each run plays short sessions (out of
the dock, rolling, a push over the limit, docked) at speed 20. Once its database exists, a run
plays a random 0.3-2.5 s of real time; the test reads the database, then SIGKILLs it. After
each kill, read-only: ``PRAGMA integrity_check`` is ok and ``foreign_key_check`` is empty;
every event read before the kill is there with the same id, seq, type, time and data, and a
delivered mark is never lost; seqs are contiguous from 1 with unique ids; session numbers are
contiguous; every finished (completed or interrupted) session keeps its status and summary
forever after; at most one session is open. Sessions a kill left open are ``interrupted``,
each with exactly one ``session_ended`` saying so, committed before the next run's
``daemon_started`` (a run killed before its ``daemon_started``, which a loaded machine can
cause, may have closed some of them: never wrongly, and the rest are checked at the next
start). Then one clean run (SIGTERM, exit 0, after the restart replayed the backlog): every
event of all 21 runs is marked delivered and the subscriber's de-duplicated events are exactly
the log, in seq order; one ``daemon_started`` per run that got through start-up, one
``daemon_stopping``, no session open, one ``session_ended`` per session, and the interrupted
sessions are exactly those the kills left open.

Waits are for conditions (a log line, a committed event, a connection, a message). The only
sleeps are the random delays between faults, which are the point of the test.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dermaguard.store import StoreError, open_readonly
from support import daemon
from support.broker import (
    Broker,
    BrokerFactory,
    Received,
    Recorder,
    RecorderFactory,
    fetch_retained,
)
from support.daemon import DEVICE

pytestmark = [pytest.mark.faults, pytest.mark.subprocess, pytest.mark.broker]

BASE = f"dermaguard/{DEVICE}"
EVENT = f"{BASE}/event"
AVAILABILITY = f"{BASE}/availability"
CLIENT_ID = f"dermaguard-{DEVICE}"

SEED_ENV = "DERMAGUARD_FAULT_SEED"
ROUNDS_ENV = "DERMAGUARD_FAULT_ROUNDS"
DEFAULT_ROUNDS = 20

#: A push over the limit every this many seconds of scenario: two events each.
PUSH_PERIOD_S = 4
#: Broker rounds: real seconds the broker stays up (after the daemon is back) and down.
BROKER_UP_S = (0.0, 1.2)
BROKER_DOWN_S = (0.05, 1.0)
#: Simulation speed of the long session: a push every 0.4 s, so 5 events a second.
BROKER_SPEED = 10.0
#: Daemon rounds: real seconds a run plays once its database exists, and the simulation speed.
DAEMON_RUN_S = (0.3, 2.5)
DAEMON_SPEED = 20.0
#: Generous bounds for conditions that normally take well under a second.
CONNECT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0

_LOG_PROBLEM = re.compile(r"^\S+ (ERROR|CRITICAL) |Traceback \(most recent call last\)")


def _env_int(name: str, default: int | None) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text, 0)
    except ValueError:
        pytest.fail(f"{name} must be an integer, got {text!r}", pytrace=False)


# -- seed, rounds and failure messages ---------------------------------------------------------


@dataclass
class Faults:
    """The seed and the round being played; every failure message names both."""

    seed: int
    rounds: int
    round: int = 0
    phase: str = "before the first fault"
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def at(self, round_no: int, phase: str) -> None:
        self.round, self.phase = round_no, phase

    def delay(self, bounds: tuple[float, float]) -> float:
        """A random delay between two faults: drawn, slept, returned."""
        seconds = self.rng.uniform(*bounds)
        time.sleep(seconds)
        return seconds

    def where(self) -> str:
        return (
            f"[fault seed {self.seed}, round {self.round}/{self.rounds} ({self.phase}); "
            f"replay: {SEED_ENV}={self.seed} {ROUNDS_ENV}={self.rounds}]"
        )

    @contextmanager
    def located(self) -> Iterator[None]:
        """Re-raise any failure with the seed and the round in front of its message."""
        try:
            yield
        except Exception as exc:
            text = str(exc)
            if text.startswith("[fault seed"):
                raise
            kind = "" if isinstance(exc, AssertionError) else f"{type(exc).__name__}: "
            raise AssertionError(f"{self.where()}\n{kind}{text}") from exc


@pytest.fixture
def faults() -> Faults:
    seed = _env_int(SEED_ENV, None)
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    rounds = _env_int(ROUNDS_ENV, DEFAULT_ROUNDS)
    assert rounds is not None
    if rounds < 1:
        pytest.fail(f"{ROUNDS_ENV} must be at least 1, got {rounds}", pytrace=False)
    print(f"fault seed {seed}, {rounds} rounds ({SEED_ENV}={seed} replays it)")
    return Faults(seed, rounds)


# -- the daemon in a child process, its output in files ----------------------------------------


@dataclass
class Run:
    """One ``dermaguard run --simulate``; stdout and stderr go to files (never a full pipe)."""

    name: str
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = "\n".join(self.stderr().splitlines()[-lines:])
        return f"--- {self.name} stderr (tail) ---\n{text}"

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.name} did not stop within {timeout} s of SIGTERM\n{self.tail()}"
            ) from None

    def problems(self) -> list[str]:
        """Lines logged at ERROR or above, and tracebacks."""
        return [line for line in self.stderr().splitlines() if _LOG_PROBLEM.search(line)]


RunFactory = Callable[..., Run]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[RunFactory]:
    """Start daemons (``spawn(name, state, scenario, port=, speed=)``); killed at teardown."""
    made: list[Run] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, state: Path, scenario: Path, *, port: int | None, speed: float) -> Run:
        mqtt = ("--mqtt", f"127.0.0.1:{port}") if port is not None else ("--no-mqtt",)
        out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dermaguard",
                    "run",
                    "--simulate",
                    str(scenario),
                    "--speed",
                    f"{speed:g}",
                    *mqtt,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=daemon.env_for(state),
            )
        run = Run(name, proc, out_path, err_path)
        made.append(run)
        return run

    try:
        yield start
    finally:
        for run in made:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition that has no notification to wait on (a database, a log file)."""
    daemon.wait_until(predicate, timeout, what)


# -- reading what the daemon stored ------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Events and sessions read in one read transaction."""

    events: list[dict[str, Any]]
    sessions: dict[int, dict[str, Any]]

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0


def read_snapshot(db: Path) -> Snapshot:
    with open_readonly(db) as reader:
        reader.conn.execute("BEGIN")
        try:
            events: list[dict[str, Any]] = []
            while batch := reader.events(events[-1]["seq"] if events else 0, 1000):
                events.extend(batch)
            sessions = {s["session_no"]: s for s in reader.recent_sessions(1_000_000)}
        finally:
            reader.conn.execute("COMMIT")
    return Snapshot(events, sessions)


def try_events(state: Path) -> list[dict[str, Any]]:
    """The event log, or ``[]`` while the database is not there or is being created."""
    try:
        return daemon.stored_events(state)
    except (StoreError, sqlite3.Error):
        return []


def integrity(db: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``PRAGMA integrity_check`` and ``foreign_key_check`` on a read-only connection."""
    with open_readonly(db) as reader:
        check = [str(r[0]) for r in reader.conn.execute("PRAGMA integrity_check")]
        fks = [tuple(r) for r in reader.conn.execute("PRAGMA foreign_key_check")]
    return check, fks


def without_marks(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("delivered", "delivered_at")}


def assert_contiguous(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1)), f"seqs not contiguous from 1: {seqs}"
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids), "an event id appears twice in the log"


# -- what the subscriber got -------------------------------------------------------------------


def first_arrivals(messages: list[Received]) -> list[dict[str, Any]]:
    """Events in arrival order, de-duplicated by id (the contract's rule for consumers)."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.topic != EVENT:
            continue
        body = m.json()
        if body["id"] not in seen:
            seen.add(body["id"])
            out.append(body)
    return out


def received_ids(messages: list[Received]) -> set[str]:
    return {json.loads(m.payload)["id"] for m in messages if m.topic == EVENT}


def assert_consistent_with_log(got: list[dict[str, Any]], stored: list[dict[str, Any]]) -> None:
    """Every event received is in the log as it was stored; first arrivals in seq order."""
    by_id = {e["id"]: e for e in stored}
    for body in got:
        e = by_id.get(body["id"])
        assert e is not None, f"the subscriber got an event that is not in the log: {body}"
        assert (body["seq"], body["type"], body["ts"]) == (e["seq"], e["type"], e["ts"]), (
            f"event {body['id']} differs from the log: got {body}, stored {e}"
        )
    seqs = [b["seq"] for b in got]
    assert seqs == sorted(seqs), f"first arrivals out of seq order: {seqs}"


def daemon_connections(broker: Broker) -> int:
    """How many times the daemon's client connected to this broker (all its starts)."""
    return broker.log_text().count(f" as {CLIENT_ID} (")


def connected_times(broker: Broker, n: int, run: Run) -> Callable[[], bool]:
    """The daemon connected ``n`` times (or exited: the caller checks which)."""
    return lambda: daemon_connections(broker) >= n or run.proc.poll() is not None


def disconnected_since(rec: Recorder, before: int) -> Callable[[], bool]:
    return lambda: rec.disconnects > before


def created(db: Path, run: Run) -> Callable[[], bool]:
    """The database exists (or the daemon exited: the caller checks which)."""
    return lambda: db.exists() or run.proc.poll() is not None


DENSE_PUSHES = """
name: dense_pushes
description: one long session with an over-pressure push every {period} s
duration_s: {duration}
initial: {{lid: open, dock: out}}
force:
{force}
"""


def dense_pushes_scenario(path: Path, duration: int) -> Path:
    """``daemon.pushes_scenario`` with a push every ``PUSH_PERIOD_S``: more events in flight
    when a fault hits. Rolling at 2 N, over the limit at 5.5 N for a second, back to 2 N."""
    points = ["  - {t: 0, n: 0}", "  - {t: 2, n: 2.0}"]
    for start in range(4, duration - 6, PUSH_PERIOD_S):
        points += [
            f"  - {{t: {start}, n: 2.0}}",
            f"  - {{t: {start + 1}, n: 5.5}}",
            f"  - {{t: {start + 2}, n: 5.5}}",
            f"  - {{t: {start + 3}, n: 2.0}}",
        ]
    points += [f"  - {{t: {duration - 2}, n: 0}}", f"  - {{t: {duration}, n: 0}}"]
    text = DENSE_PUSHES.format(duration=duration, period=PUSH_PERIOD_S, force="\n".join(points))
    return daemon.write_scenario(path, text)


# -- 1. the broker stopped and killed under one daemon run -------------------------------------


def test_broker_stopped_or_killed_at_random_points_of_a_session_loses_no_committed_event(
    broker_factory: BrokerFactory,
    recorder_factory: RecorderFactory,
    spawn: RunFactory,
    faults: Faults,
    tmp_path: Path,
) -> None:
    f = faults
    with f.located():
        broker = broker_factory()
        rec: Recorder = recorder_factory(broker, [EVENT, AVAILABILITY])
        state = tmp_path / "state"
        # Long enough that the scenario outlasts the rounds (about 2 s each) many times over.
        scenario = dense_pushes_scenario(tmp_path / "pushes.yaml", duration=120 * f.rounds)
        run = spawn("daemon", state, scenario, port=broker.port, speed=BROKER_SPEED)
        wait(connected_times(broker, 1, run), CONNECT_TIMEOUT_S, "the daemon's first connection")
        assert run.proc.poll() is None, f"the daemon exited at start-up\n{run.tail()}"

        exposed: dict[str, int] = {}  # event id -> the kill round it was exposed to
        committed_by_round: list[int] = []  # last seq committed when each round's fault hit
        while_away = 0  # events committed between a fault and the daemon's reconnection
        for r in range(1, f.rounds + 1):
            kill = r % 2 == 0
            how = "SIGKILL" if kill else "SIGTERM"
            f.at(r, f"broker up, {how} next")
            f.delay(BROKER_UP_S)
            assert run.proc.poll() is None, f"the daemon exited during the rounds\n{run.tail()}"
            disconnects, connects = rec.disconnects, rec.connects
            f.at(r, f"broker {how}")
            if kill:
                broker.kill()
                stored_now = try_events(state)  # a superset of what the broker can have taken
                wait(
                    disconnected_since(rec, disconnects),
                    CONNECT_TIMEOUT_S,
                    "the subscriber to see the broker gone",
                )
                had = received_ids(rec.messages())
                for e in stored_now:
                    if e["id"] not in had:
                        exposed.setdefault(e["id"], r)
            else:
                broker.stop()
                stored_now = try_events(state)
            committed_by_round.append(stored_now[-1]["seq"] if stored_now else 0)
            f.at(r, f"broker down after {how}")
            f.delay(BROKER_DOWN_S)
            broker.start()
            f.at(r, "broker restarted, waiting for the daemon and the subscriber")
            rec.wait_connected(CONNECT_TIMEOUT_S, count=connects + 1)
            wait(
                connected_times(broker, r + 1, run),
                CONNECT_TIMEOUT_S,
                f"the daemon's connection #{r + 1}",
            )
            assert run.proc.poll() is None, f"the daemon exited during the rounds\n{run.tail()}"
            back = try_events(state)
            while_away += (back[-1]["seq"] if back else 0) - committed_by_round[-1]

        f.at(f.rounds, "after the last round: daemon stopped with SIGTERM")
        assert run.proc.poll() is None, f"the daemon exited during the rounds\n{run.tail()}"
        rc = run.stop()
        assert rc == 0, f"exit code {rc}\n{run.tail()}"
        assert not run.problems(), f"errors in the daemon's log: {run.problems()}\n{run.tail()}"

        # The daemon's view: everything it committed was acknowledged by a broker.
        stored = daemon.stored_events(state)
        assert_contiguous(stored)
        types = [e["type"] for e in stored]
        assert types[0] == "daemon_started" and types[-1] == "daemon_stopping", types
        assert types.count("daemon_started") == 1, types
        assert types.count("over_pressure") >= f.rounds // 2, "the session went on meanwhile"
        undelivered = [e["seq"] for e in stored if not e["delivered"]]
        assert not undelivered, f"stored but never acknowledged by a broker: seqs {undelivered}"
        assert daemon_connections(broker) == f.rounds + 1, (
            f"the daemon connected {daemon_connections(broker)} times to "
            f"{f.rounds + 1} broker starts"
        )
        again = run.stderr().count(f"MQTT: connected to 127.0.0.1:{broker.port} again")
        assert again == f.rounds, f"the daemon reported {again} reconnections\n{run.tail()}"
        # The outbox had to replay from the database, not only publish live events.
        assert while_away >= 1, "no event was committed while the broker was away"

        # The subscriber's view: all but what a SIGKILLed broker may have taken and lost.
        needed = {e["id"] for e in stored} - exposed.keys()
        rec.wait_for(
            lambda m: needed <= received_ids(m),
            CONNECT_TIMEOUT_S,
            what=f"{len(needed)} events not exposed to a broker SIGKILL",
        )
        got = first_arrivals(rec.messages())
        assert_consistent_with_log(got, stored)
        got_ids = {b["id"] for b in got}
        lost = {e["seq"]: exposed.get(e["id"]) for e in stored if e["id"] not in got_ids}
        assert all(r is not None for r in lost.values()), (
            f"missing at the subscriber without a broker SIGKILL to blame: {lost}"
        )
        # The clean stop said goodbye: the retained availability is the daemon's "offline".
        retained = fetch_retained(broker, AVAILABILITY)
        assert [m.payload for m in retained] == [b"offline"], retained
        print(
            f"{len(stored)} events over {f.rounds} broker faults, {while_away} committed while "
            f"the broker was away; {len(exposed)} exposed to a SIGKILL, of which the broker "
            f"lost {len(lost)} (seq: kill round) {lost}; last seq at each fault: "
            f"{committed_by_round}"
        )


# -- 2. the daemon SIGKILLed again and again in one state directory ----------------------------

SESSIONS = """
name: short_sessions
description: short sessions one after the other, each with a push over the limit
duration_s: {duration}
initial: {{lid: open, dock: in}}
case:
{case}
force:
{force}
"""


def sessions_scenario(path: Path, duration: int = 400, period: int = 8) -> Path:
    """Out of the dock, rolling at 2 N, a push at 5.5 N, back in the dock; every ``period``."""
    case: list[str] = []
    force = ["  - {t: 0, n: 0}"]
    for start in range(0, duration - period, period):
        case += [f"  - {{t: {start + 1}, dock: out}}", f"  - {{t: {start + 7}, dock: in}}"]
        for dt, n in ((1.5, 0), (2, 2.0), (3, 2.0), (3.5, 5.5), (4.5, 5.5), (5, 2.0), (5.5, 0)):
            force.append(f"  - {{t: {start + dt:g}, n: {n}}}")
    force.append(f"  - {{t: {duration}, n: 0}}")
    text = SESSIONS.format(duration=duration, case="\n".join(case), force="\n".join(force))
    return daemon.write_scenario(path, text)


def wait_started(run: Run, state: Path, after_seq: int) -> dict[str, Any]:
    """Wait until this run committed its ``daemon_started`` (start-up recovery is done)."""
    found: list[dict[str, Any]] = []

    def started() -> bool:
        if run.proc.poll() is not None:
            return True
        found[:] = [
            e for e in try_events(state) if e["seq"] > after_seq and e["type"] == "daemon_started"
        ]
        return bool(found)

    wait(started, START_TIMEOUT_S, f"{run.name}'s daemon_started")
    assert run.proc.poll() is None, f"{run.name} exited at start-up\n{run.tail()}"
    assert len(found) == 1, f"{run.name}: {len(found)} daemon_started events"
    return found[0]


def session_ends(snap: Snapshot, no: int) -> list[dict[str, Any]]:
    return [
        e for e in snap.events if e["type"] == "session_ended" and e["data"].get("session_no") == no
    ]


def assert_closed_as_interrupted(
    left_open: set[int], snap: Snapshot, started: dict[str, Any], run: Run
) -> None:
    """Sessions a kill left open were closed as interrupted before the next run started."""
    for no in sorted(left_open):
        s = snap.sessions[no]
        assert (s["status"], s["end_reason"]) == ("interrupted", "interrupted"), (
            f"session {no}, left open by a kill, is {s['status']} after {run.name} started"
        )
        ends = session_ends(snap, no)
        assert len(ends) == 1, f"session {no}: {len(ends)} session_ended events: {ends}"
        assert ends[0]["data"]["end_reason"] == "interrupted", ends[0]
        assert ends[0]["seq"] < started["seq"], f"session {no} closed after the daemon started"
    if left_open:
        assert "closed as interrupted" in run.stderr(), run.tail()


def test_daemon_sigkilled_at_random_points_keeps_every_commit_and_delivers_it(
    broker: Broker,
    recorder_factory: RecorderFactory,
    spawn: RunFactory,
    faults: Faults,
    tmp_path: Path,
) -> None:
    f = faults
    with f.located():
        rec: Recorder = recorder_factory(broker, EVENT)
        state = tmp_path / "state"
        db = daemon.db_path(state)
        scenario = sessions_scenario(tmp_path / "sessions.yaml")

        finished: dict[int, dict[str, Any]] = {}  # completed or interrupted: never changes
        left_open: set[int] = set()  # sessions a kill left open and no start closed yet
        ever_left_open: set[int] = set()
        runs_started = 0
        last_seq = 0
        for r in range(1, f.rounds + 1):
            f.at(r, "daemon starting")
            run = spawn(f"run{r:02d}", state, scenario, port=broker.port, speed=DAEMON_SPEED)
            wait(created(db, run), START_TIMEOUT_S, f"{run.name} to create its database")
            assert run.proc.poll() is None, f"{run.name} exited at start-up\n{run.tail()}"
            f.at(r, "running until its SIGKILL")
            f.delay(DAEMON_RUN_S)
            try:  # what was committed right before the kill
                before = read_snapshot(db)
            except StoreError:  # the very first run is still creating the schema
                before = Snapshot([], {})
            run.sigkill()
            f.at(r, "after SIGKILL")
            assert not run.problems(), f"errors in the log: {run.problems()}\n{run.tail()}"

            check, fks = integrity(db)
            assert check == ["ok"], f"integrity_check after the kill: {check}"
            assert not fks, f"foreign_key_check after the kill: {fks}"
            after = read_snapshot(db)
            assert_contiguous(after.events)
            assert len(after.events) >= len(before.events), "committed events disappeared"
            for old, new in zip(before.events, after.events, strict=False):
                assert without_marks(new) == without_marks(old), (
                    f"committed event changed by the kill:\nbefore {old}\nafter  {new}"
                )
                assert new["delivered"] or not old["delivered"], f"delivery mark lost: {old}"
            for snapshot in (before, after):
                for no, s in snapshot.sessions.items():
                    if s["status"] != "open":
                        finished.setdefault(no, s)
            for no, s in finished.items():
                assert after.sessions.get(no) == s, (
                    f"finished session {no} changed:\nwas {s}\nnow {after.sessions.get(no)}"
                )
            numbers = sorted(after.sessions)
            assert numbers == list(range(1, len(numbers) + 1)), f"session numbers {numbers}"
            now_open = {no for no, s in after.sessions.items() if s["status"] == "open"}
            assert len(now_open) <= 1, f"sessions open at once: {sorted(now_open)}"

            # Did this run get through its start-up (recovery, then daemon_started)?
            starts = [
                e for e in after.events if e["seq"] > last_seq and e["type"] == "daemon_started"
            ]
            assert len(starts) <= 1, f"{len(starts)} daemon_started events in one run"
            if starts:
                runs_started += 1
                assert_closed_as_interrupted(left_open, after, starts[0], run)
            else:  # killed during its start-up: recovery may be half done, never wrong
                assert now_open <= left_open, f"a session opened without a start: {now_open}"
                for no in left_open - now_open:
                    ends = session_ends(after, no)
                    assert after.sessions[no]["status"] == "interrupted", after.sessions[no]
                    assert len(ends) == 1, f"session {no}: session_ended events {ends}"
            left_open = now_open
            ever_left_open |= now_open
            last_seq = after.last_seq

        f.at(f.rounds + 1, "final clean run: starting")
        run = spawn("final", state, scenario, port=broker.port, speed=DAEMON_SPEED)
        started = wait_started(run, state, last_seq)
        runs_started += 1
        f.at(f.rounds + 1, "final clean run: started")
        snap = read_snapshot(db)
        assert_closed_as_interrupted(left_open, snap, started, run)
        # Play a while, let the restart replay what the killed runs left, then stop cleanly.
        f.delay(DAEMON_RUN_S)
        backlog = {e["id"] for e in snap.events}
        rec.wait_for(
            lambda m: backlog <= received_ids(m),
            CONNECT_TIMEOUT_S,
            what=f"the {len(backlog)} events stored before the last start",
        )
        f.at(f.rounds + 1, "final clean run: stopped with SIGTERM")
        rc = run.stop()
        assert rc == 0, f"exit code {rc}\n{run.tail()}"
        assert not run.problems(), f"errors in the log: {run.problems()}\n{run.tail()}"

        check, fks = integrity(db)
        assert check == ["ok"] and not fks, (check, fks)
        final = read_snapshot(db)
        stored = final.events
        assert_contiguous(stored)
        undelivered = [e["seq"] for e in stored if not e["delivered"]]
        assert not undelivered, f"never marked delivered: seqs {undelivered}"
        types = [e["type"] for e in stored]
        assert types.count("daemon_started") == runs_started, types
        assert types.count("daemon_stopping") == 1 and types[-1] == "daemon_stopping", types
        for no, s in finished.items():
            assert final.sessions.get(no) == s, f"finished session {no} changed"
        still_open = [no for no, s in final.sessions.items() if s["status"] == "open"]
        assert not still_open, f"sessions open after a clean stop: {still_open}"
        interrupted = {no for no, s in final.sessions.items() if s["status"] == "interrupted"}
        assert interrupted == ever_left_open, (
            f"interrupted sessions {sorted(interrupted)}, "
            f"left open by the kills {sorted(ever_left_open)}"
        )
        for no in final.sessions:
            assert len(session_ends(final, no)) == 1, f"session {no}: {session_ends(final, no)}"

        # The broker was never touched: the subscriber has every event, once, in order.
        ids = {e["id"] for e in stored}
        rec.wait_for(lambda m: ids <= received_ids(m), CONNECT_TIMEOUT_S, what="every event")
        got = first_arrivals(rec.messages())
        assert_consistent_with_log(got, stored)
        assert [b["id"] for b in got] == [e["id"] for e in stored], "not every event, in order"
        print(
            f"{len(stored)} events over {f.rounds + 1} runs ({runs_started} got through "
            f"start-up), {len(final.sessions)} sessions, {len(interrupted)} interrupted"
        )
