"""``bench/mutation.py --recheck``: rerunning a full run's survivors updates its report honestly.

A recheck reruns only what survived, so it may move a mutant from survived to killed and nothing
else, and only while the mutated modules are those the full run mutated.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_bench", ROOT / "bench" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def row(mutants: int, killed: int, survived: int) -> dict[str, int]:
    return {
        "mutants": mutants,
        "killed": killed,
        "survived": survived,
        "equivalent": 0,
        "killed_by_other_rules": 0,
        "killed_by_module_tests": 0,
    }


def survivor(line: int, rules: list[str], code: str) -> dict[str, Any]:
    return {
        "module": "core/case.py",
        "line": line,
        "operator": "AddNot",
        "function": "CaseMachine._advance",
        "rules": rules,
        "code": code,
        "nth": 1,
        "equivalent": False,
    }


def mutant(s: dict[str, Any], outcome: str) -> Any:
    m = bench.Mutant(
        s["module"], f"core/{s['operator']}", 0, s["line"], s["function"], s["code"],
        s["rules"], [],
    )  # fmt: skip
    m.outcome = outcome
    return m


def test_a_recheck_moves_the_survivors_killed_now_and_nothing_else() -> None:
    a, b, c = survivor(10, ["S4"], "if a:"), survivor(11, [], "if b:"), survivor(12, ["S4"], "x")
    previous = {
        "commit": "abc",
        "complete": True,
        "total": row(10, 7, 3),
        "modules": {"core/case.py": row(10, 7, 3)},
        "rules": {"S4": {**row(6, 4, 2), "tests": 3}},
        "survivors": [a, b, c],
    }
    outcomes = [mutant(a, "killed"), mutant(b, "survived"), mutant(c, "survived")]
    outcomes[0].killed_by_module_tests = True
    for r in [previous["total"], *previous["modules"].values(), *previous["rules"].values()]:
        del r["killed_by_module_tests"]  # a report from before that count was kept
    equivalent = {bench.survivor_key(c): "it changes nothing"}
    out = bench.rechecked(previous, outcomes, equivalent, "def")
    own = {"equivalent": 1, "killed_by_module_tests": 1}
    assert out["total"] == {**row(10, 8, 2), **own}
    assert out["modules"]["core/case.py"] == {**row(10, 8, 2), **own}
    assert out["rules"]["S4"] == {**row(6, 5, 1), **own, "tests": 3}
    assert [s["line"] for s in out["survivors"]] == [11, 12]
    assert [s["equivalent"] for s in out["survivors"]] == [False, True]
    assert out["rechecks"][-1]["commit"] == "def"
    assert out["rechecks"][-1]["survivors_rerun"] == 3 and out["rechecks"][-1]["killed"] == 1
    assert "killed_by_module_tests" not in previous["total"]  # not changed in place


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository holding the mutated modules, committed once, as the bench's root."""
    root = tmp_path / "repo"
    for module in bench.MODULES:
        path = root / bench.PACKAGE / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {module}\n", encoding="utf-8")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "full run")
    monkeypatch.setattr(bench, "ROOT", root)
    return root


def write_report(repo: Path, commit: str, *, complete: bool = True) -> Path:
    report = repo.parent / "report.json"
    report.write_text(json.dumps({"commit": commit, "complete": complete}), encoding="utf-8")
    return report


def test_a_recheck_accepts_a_full_run_of_the_modules_as_they_are(repo: Path) -> None:
    (repo / "tests.py").write_text("# a new test\n", encoding="utf-8")  # tests may grow
    report = write_report(repo, git(repo, "rev-parse", "--short=12", "HEAD"))
    assert bench.load_for_recheck(report)["complete"]


@pytest.mark.parametrize(
    ("commit", "complete", "change", "says"),
    [
        ("HEAD", True, "core/case.py", "changed since the full run at .*: core/case.py"),
        ("HEAD", True, "daemon/sampler.py", "changed since the full run at .*: daemon/sampler"),
        ("HEAD+changes", True, None, "not a full run of committed code"),
        ("HEAD", False, None, "not a full run of committed code"),
        ("no-such-commit", True, None, "cannot compare with the full run's commit"),
    ],
)
def test_a_recheck_refuses_a_report_its_survivors_alone_cannot_update(
    repo: Path, commit: str, complete: bool, change: str | None, says: str
) -> None:
    if change is not None:
        (repo / bench.PACKAGE / change).write_text("# mutated by hand\n", encoding="utf-8")
    commit = commit.replace("HEAD", git(repo, "rev-parse", "--short=12", "HEAD"))
    with pytest.raises(SystemExit, match=says):
        bench.load_for_recheck(write_report(repo, commit, complete=complete))


def test_a_recheck_refuses_a_module_whose_text_is_not_the_one_the_report_mutated(
    repo: Path,
) -> None:
    """The report's digests catch a module the commit does not (a tree copied without git, or
    a report edited by hand): a recheck then refuses, and a recheck writes today's digests."""
    commit = git(repo, "rev-parse", "--short=12", "HEAD")
    report = write_report(repo, commit)
    digests = bench.source_digests()
    assert sorted(digests) == sorted(bench.MODULES)
    data = json.loads(report.read_text(encoding="utf-8"))
    report.write_text(json.dumps({**data, "sources": digests}), encoding="utf-8")
    assert bench.load_for_recheck(report)["sources"] == digests
    report.write_text(
        json.dumps({**data, "sources": {**digests, "core/engine.py": "0" * 64}}), encoding="utf-8"
    )
    with pytest.raises(SystemExit, match=r"changed since the full run at .*: core/engine\.py"):
        bench.load_for_recheck(report)


def test_a_mutants_tests_draw_the_same_examples_and_keep_no_database(tmp_path: Path) -> None:
    """A kill must be reproducible: property tests under the check are derandomized and keep
    no example database, so a failure of one run cannot be replayed against the next mutant."""
    (tmp_path / "src").mkdir()
    seen = tmp_path / "seen.json"
    (tmp_path / "test_property.py").write_text(
        "import json\n"
        "from hypothesis import given, settings, strategies as st\n"
        "draws = []\n"
        "@settings(max_examples=20)\n"
        "@given(st.integers())\n"
        "def test_draws(n):\n"
        "    draws.append(n)\n"
        "def test_zz_report():\n"
        "    s = settings.default\n"
        f"    open({str(seen)!r}, 'a').write(json.dumps([s.database is None, s.derandomize, draws])"
        " + '\\n')\n",
        encoding="utf-8",
    )
    for _ in range(2):
        passed, _seconds = bench.run_tests(tmp_path, ["test_property.py"], 120.0, extra=())
        assert passed
    first, second = (json.loads(line) for line in seen.read_text(encoding="utf-8").splitlines())
    assert first[:2] == [True, True]
    assert first[2] == second[2] and len(first[2]) > 1  # the same draws, run after run
    assert not (tmp_path / ".hypothesis" / "examples").exists()  # the database


def two_module_report(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A full run's report of core/case.py (survivor ``a``) and core/engine.py (``b``), both
    S4, that kept each module's share of the rules' rows."""
    return {
        "commit": "abc",
        "complete": True,
        "sources": bench.source_digests(),
        "total": row(30, 28, 2),
        "modules": {"core/case.py": row(10, 9, 1), "core/engine.py": row(20, 19, 1)},
        "rules": {"S4": {**row(12, 10, 2), "tests": 3}},
        "module_rules": {
            "core/case.py": {"S4": row(4, 3, 1)},
            "core/engine.py": {"S4": row(8, 7, 1)},
        },
        "survivors": [a, b],
    }


def test_a_module_rerun_replaces_that_modules_share_and_keeps_the_others() -> None:
    """``--report --module``: the module's rows, rule shares and survivors are new, the other
    module's are kept, and the rules' and the total's rows are the sums again."""
    a = survivor(10, ["S4"], "if a:")
    b = {**survivor(20, ["S4"], "if b:"), "module": "core/engine.py", "function": "Engine.x"}
    previous = two_module_report(a, b)
    # core/case.py again: 5 mutants of S4 (one survives, a new one) and 2 outside every rule.
    fresh = [
        mutant({**survivor(30 + i, ["S4"], f"n{i}")}, "survived" if i == 0 else "killed")
        for i in range(5)
    ]
    fresh += [mutant(survivor(40 + i, [], f"o{i}"), "killed") for i in range(2)]
    tests_of = {"S4": ["t1", "t2", "t3", "t4"]}
    out = bench.merged(previous, fresh, tests_of, {}, wall=5.0, commit="def")
    assert out["modules"]["core/case.py"] == row(7, 6, 1)
    assert out["modules"]["core/engine.py"] == previous["modules"]["core/engine.py"]
    assert out["module_rules"]["core/case.py"] == {"S4": row(5, 4, 1)}
    assert out["rules"]["S4"] == {**row(13, 11, 2), "tests": 4}
    assert out["total"] == row(27, 25, 2)
    assert [s["line"] for s in out["survivors"]] == [20, 30]
    assert out["commit"] == "def" and out["merges"][0]["modules"] == ["core/case.py"]


def test_a_survivor_killed_by_a_recheck_stays_killed_when_another_module_is_merged() -> None:
    """A recheck moves a killed survivor in its module's share of its rules' rows too: the
    rules' rows of a later ``--module`` merge are sums of the shares, and would otherwise
    count it as surviving again, while the survivors' list no longer has it."""
    a = survivor(10, ["S4"], "if a:")
    b = {**survivor(20, ["S4"], "if b:"), "module": "core/engine.py"}
    previous = two_module_report(a, b)
    out = bench.rechecked(previous, [mutant(a, "killed")], {}, "def")
    assert out["module_rules"]["core/case.py"]["S4"]["survived"] == 0
    assert out["module_rules"]["core/engine.py"] == previous["module_rules"]["core/engine.py"]
    # core/engine.py again, all killed: no survivor is left anywhere, S4's row included.
    fresh = [
        mutant({**survivor(20 + i, ["S4"], f"e{i}"), "module": "core/engine.py"}, "killed")
        for i in range(8)
    ]
    merged = bench.merged(out, fresh, {"S4": ["t1", "t2", "t3"]}, {}, wall=1.0, commit="ghi")
    assert merged["survivors"] == []
    assert merged["rules"]["S4"] == {**row(12, 12, 0), "tests": 3}
    assert merged["total"]["survived"] == 0


def test_a_module_rerun_is_refused_without_shares_or_when_another_module_changed() -> None:
    previous = {
        "commit": "abc",
        "complete": True,
        "sources": bench.source_digests(),
        "total": row(1, 1, 0),
        "modules": {"core/case.py": row(1, 1, 0)},
        "rules": {},
        "survivors": [],
    }
    fresh = [mutant(survivor(1, [], "x"), "killed")]
    with pytest.raises(SystemExit, match="kept each module's share"):
        bench.merged(previous, fresh, {}, {}, wall=1.0, commit="def")
    previous["module_rules"] = {"core/case.py": {}}
    previous["sources"] = {**previous["sources"], "core/engine.py": "0" * 64}
    with pytest.raises(SystemExit, match=r"core/engine\.py"):
        bench.merged(previous, fresh, {}, {}, wall=1.0, commit="def")
