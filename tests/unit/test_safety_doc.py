"""docs/SAFETY.md: every control names tests that exist, and every safety rule is covered.

The last full mutation run (docs/mutation-report.json, written by ``bench/mutation.py --report``)
is checked too: every rule has a row, and every mutant the named tests did not kill is listed in
docs/SAFETY.md as equivalent, with why.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAFETY = ROOT / "docs" / "SAFETY.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_test_the_hazard_table_names_exists() -> None:
    refs = REF.findall(SAFETY.read_text(encoding="utf-8"))
    assert len(refs) >= 30
    missing = [
        f"{file}::{name}"
        for file, name in refs
        if not (ROOT / file).is_file() or name not in functions_in(ROOT / file)
    ]
    assert not missing, f"docs/SAFETY.md names tests that do not exist: {missing}"


def test_every_row_has_a_control_verified_by_a_test() -> None:
    rows = [r for r in SAFETY.read_text(encoding="utf-8").splitlines() if r.startswith("| H")]
    assert len(rows) >= 7
    for row in rows:
        assert REF.search(row.split("|")[-2]), f"no test verifies: {row[:60]}"


def test_the_issue_hazards_are_all_there() -> None:
    text = SAFETY.read_text(encoding="utf-8").lower()
    for hazard in (
        "over-pressure",
        "roller that is not disinfected",
        "uv-c exposure",
        "silent sensor failure",
        "network",
        "lost session record",
        "unauthorized",
    ):
        assert hazard in text, hazard


# --- the mutation check (bench/mutation.py; README, "Mutation check") -------------------------

REPORT = ROOT / "docs" / "mutation-report.json"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
#: The safety-critical modules bench/mutation.py mutates.
MUTATED = (
    "core/case.py",
    "core/pressure.py",
    "core/engine.py",
    "hw/case_io.py",
    "daemon/runtime.py",
    "daemon/sampler.py",
)
EQUIVALENT = re.compile(r"^- `([^`]+)` `([^`]+)` `([^`]+)` `(.+?)`(?: #(\d+))?: (.+)$")


def rules_of_the_architecture_doc() -> list[str]:
    """The rules of docs/ARCHITECTURE.md's safety table, read as test_architecture_doc.py does."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"^\| (S\d+) \|", text, re.MULTILINE)]


def documented_equivalents() -> dict[str, str]:
    """docs/SAFETY.md, "Equivalent mutants": "module function operator code" → why."""
    _, _, section = SAFETY.read_text(encoding="utf-8").partition("## Equivalent mutants")
    section = section.split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        match = EQUIVALENT.match(line)
        if match:
            module, function, operator, code, nth, why = match.groups()
            key = f"{module} {function} {operator} {code}"
            out[key if nth in {None, "1"} else f"{key} #{nth}"] = why
    return out


def key_of(survivor: dict[str, Any]) -> str:
    """How docs/SAFETY.md names a mutant (as bench/mutation.py's ``Mutant.key``)."""
    s = survivor
    key = f"{s['module']} {s['function'] or '-'} {s['operator']} {s['code']}"
    return key if s["nth"] == 1 else f"{key} #{s['nth']}"


def mutation_report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REPORT.read_text(encoding="utf-8"))
    return data


def test_the_mutation_report_is_a_full_run_of_the_safety_modules() -> None:
    report = mutation_report()
    assert report["date"] and report["commit"] and report["tool"].startswith("cosmic-ray")
    assert report["complete"], f"a run cut short: {report['total']} of {report['planned']}"
    assert sorted(report["modules"]) == sorted(MUTATED)
    for module, row in report["modules"].items():
        assert row["mutants"] > 0, f"no mutant of {module} ran"
        assert row["killed"] + row["survived"] == row["mutants"], module
    assert sum(r["mutants"] for r in report["modules"].values()) == report["total"]["mutants"]


def test_the_mutation_report_speaks_for_the_safety_modules_as_they_are() -> None:
    """A change to a safety module needs the check run again (README, "Mutation check"): the
    report's figures and its list of survivors are those of the code it mutated."""
    recorded = mutation_report()["sources"]
    assert sorted(recorded) == sorted(MUTATED)
    changed = [
        module
        for module in MUTATED
        if hashlib.sha256((ROOT / "src" / "dermaguard" / module).read_bytes()).hexdigest()
        != recorded[module]
    ]
    assert not changed, (
        f"changed since the mutation run at {mutation_report()['commit']}: {changed}; run "
        "`bench/mutation.py --report` (or `--recheck` after adding tests) and commit the report"
    )


def test_every_safety_rule_has_a_row_in_the_mutation_report() -> None:
    rules = rules_of_the_architecture_doc()
    assert rules == [f"S{n}" for n in range(1, 12)]
    assert sorted(mutation_report()["rules"]) == sorted(rules)


def test_every_surviving_mutant_is_documented_as_equivalent() -> None:
    """The tests named for each rule kill its mutants: what survived changes nothing, and
    docs/SAFETY.md says why, one line each."""
    report = mutation_report()
    documented = documented_equivalents()
    assert all(why.strip() for why in documented.values())
    undocumented = [
        f"{s['module']}:{s['line']} {s['operator']} {'/'.join(s['rules']) or '-'}: {s['code']}"
        for s in report["survivors"]
        if key_of(s) not in documented
    ]
    assert not undocumented, f"mutants no test kills (run bench/mutation.py): {undocumented}"
    # ... and the survivor list is the whole of what survived, per module and per rule.
    for module, row in report["modules"].items():
        listed = [s for s in report["survivors"] if s["module"] == module]
        assert row["survived"] == len(listed), f"{module}: {row}"
    for rule, row in report["rules"].items():
        listed = [s for s in report["survivors"] if rule in s["rules"]]
        assert row["survived"] == len(listed), f"{rule}: {row}"
