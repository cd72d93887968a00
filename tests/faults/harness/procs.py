"""The kinds that need real processes: a daemon SIGKILLed and restarted, a second daemon on the
same state directory, and the calibration CLI given its reference the wrong way round.

They run ``python -m dermaguard`` as a person does (tests/support/daemon.py) against the batch's
broker, and are judged on what outlives a process: the history, the calibration file, what a
subscriber received, and exit codes. Pins die with the child, so the pin invariants are the
in-process runs' job.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from support import daemon as dd
from support.broker import Recorder, publish

from .catalogue import Schedule
from .inproc import stored_scale
from .invariants import Violation, received_are_stored_in, sessions_unique

#: Scenario seconds of the pushes scenario, played at this speed (about 2 s of real time).
DURATION = 20
SPEED = 10.0


def _events_topic() -> str:
    return f"dermaguard/{dd.DEVICE}/event"


def _acted_twice(events: list[dict[str, Any]]) -> list[Violation]:
    acted: dict[str, int] = {}
    for e in events:
        d = e.get("data") or {}
        if e["type"] == "command_result" and d.get("ok") and d.get("request_id"):
            acted[d["request_id"]] = acted.get(d["request_id"], 0) + 1
    return [
        Violation("command_once", f"command {rid} acted on {n} times")
        for rid, n in acted.items()
        if n > 1
    ]


def _sigkill_restart(s: Schedule, state: Path, broker: Any, rng: random.Random) -> list[Violation]:
    scenario = dd.pushes_scenario(state / "pushes.yaml", DURATION)
    out: list[Violation] = []
    with Recorder(broker, _events_topic()) as rec:
        proc = dd.start(state, scenario, port=broker.port, speed=SPEED)
        dd.wait_until(lambda: len(dd.stored_events(state)) >= 1, 30, "the first event")
        time.sleep(rng.uniform(0.0, 1.5))
        dd.kill(proc)
        code, _out, err = dd.finish(dd.start(state, scenario, port=broker.port, speed=SPEED))
        if code != 0:
            out.append(Violation("exits", f"restart after SIGKILL exited {code}: {err[-300:]}"))
        time.sleep(0.3)
        received = [m.json() for m in rec.messages()]
    stored = dd.stored_events(state)
    out += received_are_stored_in(received, stored)
    return out + _acted_twice(stored)


def _second_daemon(s: Schedule, state: Path, broker: Any, rng: random.Random) -> list[Violation]:
    scenario = dd.pushes_scenario(state / "pushes.yaml", DURATION)
    out: list[Violation] = []
    first = dd.start(state, scenario, port=broker.port, speed=SPEED)
    try:
        dd.wait_until(lambda: len(dd.stored_events(state)) >= 1, 30, "the first event")
        second = dd.start(state, scenario, port=broker.port, speed=SPEED)
        time.sleep(rng.uniform(0.5, 1.0))
        rid = f"h{s.seed}-twin"
        publish(broker, f"dermaguard/{dd.DEVICE}/cmd/ping", {"request_id": rid})
        dd.finish(second)
    finally:
        code, _out, err = dd.finish(first)
    if code != 0:
        out.append(Violation("exits", f"the first daemon exited {code}: {err[-300:]}"))
    stored = dd.stored_events(state)
    return out + _acted_twice(stored) + sessions_unique(stored)


def _reversed_reference(
    s: Schedule, state: Path, broker: Any, rng: random.Random
) -> list[Violation]:
    load = rng.choice(("100g", "200g", "500g"))
    dd.run_cli("calibrate", "--simulate", "--tare", "--sim-load", load, state=state)
    dd.run_cli("calibrate", "--simulate", "--reference", load, state=state)
    out = []
    for path in state.rglob("calibration.json"):
        scale = stored_scale(json.loads(path.read_text()))
        if scale is not None and scale <= 0:
            out.append(Violation("no_bad_scale", f"stored scale {scale} ≤ 0 in {path.name}"))
    return out


RUNNERS = {
    "sigkill_restart": _sigkill_restart,
    "second_daemon": _second_daemon,
    "reversed_reference": _reversed_reference,
}


def run_proc_schedule(
    schedule: Schedule, base: Path, broker: Any
) -> tuple[list[Violation], dict[str, int]]:
    state = base / f"seed-{schedule.seed}"
    state.mkdir(parents=True, exist_ok=True)
    rng = random.Random(schedule.seed * 7919)
    violations: list[Violation] = []
    landed: dict[str, int] = {}
    for f in schedule.faults:
        violations += RUNNERS[f.kind](schedule, state, broker, rng)
        landed[f.kind] = landed.get(f.kind, 0) + 1
    return violations, landed
