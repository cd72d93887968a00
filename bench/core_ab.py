"""The engine's per-sample cost, A/B: two source trees, run alternately in one sitting.

On a loaded machine two runs made minutes apart differ by more than a small change costs, so
the two trees take turns (A, B, A, B, ...), each round a fresh process running
``bench/pressure.py --core-only``; each figure is the median over the rounds, and the
difference B - A is given with the spread of the rounds. For example, against ``main``::

    mkdir -p /tmp/base && git archive main src | tar -x -C /tmp/base
    nice -n 10 python bench/core_ab.py /tmp/base/src src --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_once(src: str, samples: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    out = subprocess.run(
        [sys.executable, str(HERE / "pressure.py"), "--core-only", str(samples)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {}
    for text in out.splitlines():
        if text.startswith("#") or ":" not in text:
            continue
        name, rest = text.split(":", 1)
        figures[name] = float(rest.split()[0])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="source tree A (the directory holding dermaguard/)")
    parser.add_argument("b", help="source tree B")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=60_000)
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    print(f"# A={args.a} B={args.b}; {args.rounds} rounds of {args.samples} samples, alternating")
    print(f"# load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for _ in range(args.rounds):
        for label, src in (("A", args.a), ("B", args.b)):
            rounds[label].append(run_once(src, args.samples))
    print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name in rounds["A"][0]:
        a = [r[name] for r in rounds["A"]]
        b = [r[name] for r in rounds["B"]]
        diffs = [y - x for x, y in zip(a, b, strict=True)]  # each pair ran back to back
        print(
            f"{name}: A {statistics.median(a):.4g}  B {statistics.median(b):.4g}  "
            f"B-A median {statistics.median(diffs):+.3g} (pairs from {min(diffs):+.3g} "
            f"to {max(diffs):+.3g})"
        )


if __name__ == "__main__":
    main()
