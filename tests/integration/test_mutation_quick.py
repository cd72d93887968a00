"""The mutation check, small: ``bench/mutation.py --quick`` as CI runs it, and what it leaves out.

``--quick`` breaks the safety rules in the ways that once left every test green (UV not switched
off at start-up or shutdown, the on-time cap checked with ``>``, ``Runtime.stop`` not locking UV
out, the lid callback not writing the pin low) and runs the tests the docs name for each rule;
every one of those mutants must be killed. It runs in a child process exactly as a person runs it,
on a scratch copy of the tree, so the working tree never holds a mutant while other tests run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[2]
MUTATION = ROOT / "bench" / "mutation.py"
FIGURE = re.compile(r"^(?P<name>[a-z_]+): (?P<value>\d+)", re.MULTILINE)


def figures(stdout: str) -> dict[str, int]:
    return {m["name"]: int(m["value"]) for m in FIGURE.finditer(stdout)}


def test_the_quick_mutation_check_kills_every_mutant_of_the_rules_it_breaks() -> None:
    done = subprocess.run(
        [sys.executable, str(MUTATION), "--quick", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        check=False,
    )
    out = figures(done.stdout)
    assert out["mutants"] == 5, done.stdout + done.stderr
    survivors = [line for line in done.stdout.splitlines() if line.startswith("survivor:")]
    assert out["survived"] == out["equivalent"] == 0, "\n".join(survivors)
    assert out["killed"] == 5
    assert done.returncode == 0, done.stderr


def test_no_mutant_touches_log_text_docstrings_annotations_or_a_no_mutate_line() -> None:
    done = subprocess.run(
        [sys.executable, str(MUTATION), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    listed = [line for line in done.stdout.splitlines() if not line.startswith("mutants:")]
    assert len(listed) > 500  # the six modules are all there
    assert figures(done.stdout)["mutants"] == len(listed)
    offending = []
    for line in listed:
        where = line.split()[0]
        module, number = where.rsplit(":", 1)
        text = (ROOT / "src" / "dermaguard" / module).read_text(encoding="utf-8").splitlines()
        code = text[int(number) - 1].strip()
        if code.startswith(("log.", '"""', "#")) or "pragma: no mutate" in code:
            offending.append(f"{where}: {code}")
    assert not offending, offending
    modules = {line.split(":")[0] for line in listed}
    assert modules == {
        "core/case.py",
        "core/pressure.py",
        "core/engine.py",
        "hw/case_io.py",
        "daemon/runtime.py",
        "daemon/sampler.py",
    }
