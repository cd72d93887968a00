"""Fault schedules: the whole daemon under many seeded random schedules of faults.

Each schedule is drawn from its seed (tests/faults/harness/catalogue.py): the scenario (a UV-C
cycle, two pushes past the alarm limit, a tare, another cycle) and one to three faults from the
catalogue. Most run against the daemon assembled in this process on emulated hardware and the
virtual clock; one in twelve needs real processes (SIGKILL and restart, a second daemon, the
calibration CLI). After each run the invariants (docs/RELIABILITY.md, "Fault schedules") are
judged over the recorded pins, events, reads, watchdog pings and the history.

Prints ``fault_schedules: N``, ``invariant_violations: N``, one ``violations_<invariant>`` line
per invariant, one ``fault_<kind>`` line per fault kind (how often it was drawn), and the time
per schedule; a failing schedule is printed with its seed and the command that replays it. A
seed replays the schedule, not the threads' interleaving: ``--seed S --repeat K`` runs one
seed K times and prints how often it failed the same way. Exit status 1 if any invariant broke.

  .venv/bin/python bench/faults.py --schedules 1000      # about 15-20 min on 2 cores
  .venv/bin/python bench/faults.py --seed 42             # replay one schedule
  .venv/bin/python bench/faults.py --smoke               # a dozen schedules
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from harness.catalogue import KINDS  # noqa: E402
from harness.invariants import NAMES  # noqa: E402
from harness.runner import Tally, run_many  # noqa: E402

from figures import line, pct  # noqa: E402

SMOKE_SCHEDULES = 12


def kinds_from(text: str | None, exclude: str | None) -> tuple[str, ...]:
    chosen = tuple(text.split(",")) if text else KINDS
    dropped = set(exclude.split(",")) if exclude else set()
    unknown = [k for k in (*chosen, *dropped) if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown fault kind(s): {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return tuple(k for k in chosen if k not in dropped)


def report(tally: Tally, kinds: tuple[str, ...], elapsed: float) -> None:
    times = [o.wall_s for o in tally.outcomes]
    print(f"fault_schedules: {len(tally.outcomes)}")
    print(f"invariant_violations: {tally.violations}")
    seeds = tally.by_invariant()
    for name in NAMES:
        listed = seeds[name]
        shown = " ".join(str(s) for s in listed[:12]) + (" ..." if len(listed) > 12 else "")
        print(
            f"violations_{name}: {len(listed)} schedules" + (f" (seeds {shown})" if listed else "")
        )
    drawn = tally.drawn()
    landed: Counter[str] = Counter()
    for o in tally.outcomes:
        landed.update({k for k, n in o.landed.items() if n})
    for kind in kinds:
        print(f"fault_{kind}: {drawn[kind]} drawn, {landed[kind]} fired")
    if times:
        line("schedule_time_mean", sum(times) / len(times), "s")
        line("schedule_time_p99", pct(times, 0.99), "s")
    line("wall_time", elapsed, "s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--schedules", type=int, default=1000, help="how many schedules")
    ap.add_argument("--first", type=int, default=1, help="the first seed (then +1 each)")
    ap.add_argument("--seed", type=int, help="run only this seed (replay)")
    ap.add_argument("--repeat", type=int, default=1, help="with --seed: run it this many times")
    ap.add_argument("--kinds", help="comma-separated fault kinds to draw from (default: all)")
    ap.add_argument("--exclude", help="comma-separated fault kinds never to draw")
    ap.add_argument("--smoke", action="store_true", help=f"{SMOKE_SCHEDULES} schedules")
    ap.add_argument("-v", "--verbose", action="store_true", help="a line per schedule")
    args = ap.parse_args()
    kinds = kinds_from(args.kinds, args.exclude)
    if args.seed is not None:
        seeds = [args.seed] * max(1, args.repeat)
    else:
        n = SMOKE_SCHEDULES if args.smoke else args.schedules
        seeds = list(range(args.first, args.first + n))
    print(f"# {len(seeds)} schedules from seed {seeds[0]}, kinds: {','.join(kinds)}", flush=True)
    start = time.perf_counter()
    tally = run_many(seeds, kinds, log_each=args.verbose or args.seed is not None)
    report(tally, kinds, time.perf_counter() - start)
    if args.seed is not None and args.repeat > 1:
        failed = [sorted({v.invariant for v in o.violations}) for o in tally.outcomes]
        first = next((f for f in failed if f), [])
        same = sum(1 for f in failed if f and f == first)
        print(f"reproduced: {same} of {len(failed)} runs ({','.join(first) or 'none failed'})")
    return 1 if tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())
