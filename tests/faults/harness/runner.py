"""Many schedules in one process: the shared broker and notify socket, the tally, replays."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalogue import KINDS, Schedule, make_schedule
from .inproc import RunResult, run_schedule
from .invariants import NAMES, Violation, check
from .record import WatchdogListener


@dataclass
class Outcome:
    schedule: Schedule
    violations: list[Violation]
    wall_s: float
    landed: dict[str, int]
    kinds: tuple[str, ...] = KINDS  # what the schedule was drawn from (for its replay)


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(len(o.violations) for o in self.outcomes)

    def failing(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.violations]

    def drawn(self) -> Counter[str]:
        return Counter(k for o in self.outcomes for k in o.schedule.kinds)

    def by_invariant(self) -> dict[str, list[int]]:
        seeds: dict[str, list[int]] = {n: [] for n in NAMES}
        for o in self.outcomes:
            for v in o.violations:
                if o.schedule.seed not in seeds[v.invariant]:
                    seeds[v.invariant].append(o.schedule.seed)
        return seeds


def replay_command(seed: int, kinds: Iterable[str] | None = None) -> str:
    only = "" if kinds is None or tuple(kinds) == KINDS else f" --kinds {','.join(kinds)}"
    return f".venv/bin/python bench/faults.py --seed {seed}{only}"


@contextmanager
def harness(workdir: Path | None = None, *, broker: bool = True) -> Iterator[Any]:
    """The shared parts of a batch: a work directory, the notify socket, a broker if asked."""
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="dg-faults-")) if workdir is None else workdir
    watchdog = WatchdogListener()
    b = None
    try:
        if broker:
            from support.broker import Broker

            b = Broker(base / "broker")
            b.start()
        yield base, watchdog, b
    finally:
        watchdog.close()
        if b is not None:
            b.close()
        if own:
            shutil.rmtree(base, ignore_errors=True)


def run_one(schedule: Schedule, base: Path, watchdog: WatchdogListener, broker: Any) -> Outcome:
    from .procs import run_proc_schedule

    start = time.perf_counter()
    if schedule.in_process:
        result: RunResult = run_schedule(
            schedule, base, broker if schedule.needs_broker else None, watchdog
        )
        violations = check(result)
        landed = result.landed
    else:
        violations, landed = run_proc_schedule(schedule, base, broker)
    shutil.rmtree(base / f"seed-{schedule.seed}", ignore_errors=True)
    return Outcome(schedule, violations, time.perf_counter() - start, landed)


def run_many(
    seeds: Iterable[int], kinds: tuple[str, ...] = KINDS, *, log_each: bool = False
) -> Tally:
    """The schedules of ``seeds``, each drawn from ``kinds``."""
    return run_drawn(((seed, kinds) for seed in seeds), log_each=log_each)


def run_drawn(drawn: Iterable[tuple[int, tuple[str, ...]]], *, log_each: bool = False) -> Tally:
    """The schedule of each (seed, kinds drawn from), in one process."""
    tally = Tally()
    logger = logging.getLogger("dermaguard")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # the faults are meant: their logs are noise here
    try:
        with harness() as (base, watchdog, broker):
            for seed, kinds in drawn:
                outcome = run_one(make_schedule(seed, kinds), base, watchdog, broker)
                outcome.kinds = kinds
                tally.outcomes.append(outcome)
                if log_each or outcome.violations:
                    print(describe(outcome), flush=True)
    finally:
        logger.setLevel(level)
    return tally


def describe(o: Outcome) -> str:
    s = o.schedule
    faults = ", ".join(f"{f.kind}@{f.t:.2f}" for f in s.faults)
    head = f"seed {s.seed} [{faults}] {o.wall_s:.2f} s"
    if not o.violations:
        return head + " ok"
    lines = [head + f" VIOLATED; replay: {replay_command(s.seed, o.kinds)}"]
    lines += [f"  {v.invariant}: {v.detail}" for v in o.violations]
    return "\n".join(lines)
