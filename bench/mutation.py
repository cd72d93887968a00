"""Mutation check of the safety modules: do the tests that prove a rule fail when it breaks?

Prints ``mutants: N``, ``killed: N``, ``survived: N``, ``equivalent: N``, ``wall_time: S s``,
then one ``survivor: module:line operator`` line per mutant that no test killed (with the rule
and the function it sits in, and ``(equivalent)`` when docs/SAFETY.md lists it as such).
Exits 1 when a survivor is not documented as equivalent.

- The mutants come from cosmic-ray (its operators, the places it finds for them, and its
  ``use_mutation``, which writes the mutant into the file and puts the original back), plus one
  operator of ours that cosmic-ray lacks: a call used as a statement is removed
  (``self.case.lock_out()`` → ``None``), the break that hides an unchecked UV-off path.
- cosmic-ray edits files in place, so a test that starts ``python -m dermaguard`` in a child
  process runs the mutant too. The files it edits are those of a scratch copy of the tree,
  imported first through ``PYTHONPATH``: the working tree never holds a mutant, even when the run
  is stopped, and a test suite running beside this check sees the real code.
- Which tests run: a mutant inside a function that docs/ARCHITECTURE.md names as enforcing a
  safety rule ("Safety rules": the "enforced in" column) runs only the tests the docs name as
  proof of that rule (the "proved by" column, and the rows of docs/SAFETY.md that cite the rule);
  those tests, between them, must kill it. If they do not, the fast tests named for the
  module's other rules run (``killed_by_other_rules``), then the module's own test files: a
  function named for a rule also does work no rule is about, and a mutant the module's tests
  alone kill is counted apart (``killed_by_module_tests``), so the report shows how much of a
  rule's functions only those tests guard. Any other mutant runs the module's own test files.
  Tests run fastest first and stop at the first failure.
- Left out: mutants of log and message text. cosmic-ray has no string operator, so a message's
  wording is never mutated; a mutant anywhere inside a ``log.*(...)`` call, a docstring or a type
  annotation (which ``from __future__ import annotations`` never evaluates) is dropped by the
  filter here, and so is any line marked ``# pragma: no mutate``.
- The full run writes its figures per module and per rule to docs/mutation-report.json, which
  ``tests/unit/test_safety_doc.py`` checks. It keeps each module's share of each rule's row, so
  ``--report --module M`` can run every mutant of the changed module M again and replace its
  rows, shares and survivors, keeping the others' (only while those modules are byte for byte
  the ones the report mutated). ``--recheck`` runs again only the survivors of that
  report (but those docs/SAFETY.md documents as equivalent), after tests were added to kill
  them, and updates it: valid only while the mutated
  modules are as the full run found them (it checks, with git, against the report's commit)
  and the tests only grow, so a mutant killed then is killed now. ``--quick`` runs a fixed
  subset (the breaks that once passed every test) in about a minute;
  ``tests/unit/test_mutation_quick.py`` runs it.

Why a driver on cosmic-ray's parts rather than ``cosmic-ray exec``: its configuration holds one
test command for all mutants, but each rule's mutants must be judged by that rule's tests; and it
starts a fresh interpreter per mutant, which costs about 3 s of imports here. This driver forks
each test run from a process that has imported pytest and the test tools (never dermaguard).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path("src") / "dermaguard"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
SAFETY = ROOT / "docs" / "SAFETY.md"
REPORT = ROOT / "docs" / "mutation-report.json"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
#: A line of docs/SAFETY.md, "Equivalent mutants": module, function, operator, the line's code
#: (and which of its repeats in the function, ``#2``), then why it changes nothing.
EQUIVALENT = re.compile(r"^- `([^`]+)` `([^`]+)` `([^`]+)` `(.+?)`(?: #(\d+))?: (.+)$")

#: The safety-critical modules and their own test files (run for a mutant that is not inside a
#: function a safety rule names), in-process tests first.
MODULES: dict[str, list[str]] = {
    "core/case.py": [
        "tests/unit/test_case.py",
        "tests/unit/test_engine_case.py",
        "tests/hw/test_case_sim.py",
    ],
    "core/pressure.py": [
        "tests/unit/test_pressure.py",
        "tests/unit/test_negative_force.py",
    ],
    "core/engine.py": [
        "tests/unit/test_engine_case.py",
        "tests/unit/test_engine_commands.py",
        "tests/unit/test_engine_snapshots.py",
        "tests/unit/test_sessions.py",
        "tests/unit/test_pressure.py",
        "tests/hw/test_alarm_path.py",
    ],
    "hw/case_io.py": [
        "tests/hw/test_case_io.py",
        "tests/hw/test_daemon_uv_off.py",
        "tests/hw/test_case_sim.py",
    ],
    "daemon/runtime.py": [
        "tests/hw/test_daemon_uv_off.py",
        "tests/hw/test_alarm_path.py",
        "tests/hw/test_sampler.py",
    ],
    # The sampler was part of daemon/runtime.py when the five modules were chosen.
    "daemon/sampler.py": [
        "tests/hw/test_sampler.py",
        "tests/hw/test_spi_bus_errors.py",
        "tests/hw/test_alarm_path.py",
    ],
}

#: cosmic-ray's operators used here: every operator on booleans, numbers, logic, loops and
#: exceptions, and for arithmetic and comparisons the replacements that make a different
#: program in practice (the boundary, the negation and the opposite); the rest (``+`` → ``<<``,
#: ``<`` → ``is``) are killed whenever these are and would triple the run.
OPERATORS = (
    "core/ReplaceBinaryOperator_Add_Sub",
    "core/ReplaceBinaryOperator_Sub_Add",
    "core/ReplaceBinaryOperator_Mul_Div",
    "core/ReplaceBinaryOperator_Div_Mul",
    "core/ReplaceBinaryOperator_Mod_Mul",
    "core/ReplaceBinaryOperator_FloorDiv_Mul",
    "core/ReplaceComparisonOperator_Eq_NotEq",
    "core/ReplaceComparisonOperator_NotEq_Eq",
    "core/ReplaceComparisonOperator_Lt_LtE",
    "core/ReplaceComparisonOperator_Lt_GtE",
    "core/ReplaceComparisonOperator_LtE_Lt",
    "core/ReplaceComparisonOperator_LtE_Gt",
    "core/ReplaceComparisonOperator_Gt_GtE",
    "core/ReplaceComparisonOperator_Gt_LtE",
    "core/ReplaceComparisonOperator_GtE_Gt",
    "core/ReplaceComparisonOperator_GtE_Lt",
    "core/ReplaceComparisonOperator_Is_IsNot",
    "core/ReplaceComparisonOperator_IsNot_Is",
    "core/ReplaceUnaryOperator_USub_UAdd",
    "core/ReplaceUnaryOperator_Delete_Not",
    "core/AddNot",
    "core/ReplaceTrueWithFalse",
    "core/ReplaceFalseWithTrue",
    "core/ReplaceAndWithOr",
    "core/ReplaceOrWithAnd",
    "core/ReplaceBreakWithContinue",
    "core/ReplaceContinueWithBreak",
    "core/ExceptionReplacer",
    "core/NumberReplacer",
    "core/ZeroIterationForLoop",
    "RemoveCall",
)

#: ``--quick``: breaks that once left every test green, each named by module, function, operator
#: and the text of its line: about a minute on two cores when the tests kill them.
QUICK: tuple[tuple[str, str, str, str], ...] = (
    ("core/engine.py", "Engine.shutdown", "core/ReplaceFalseWithTrue", "[SetUv(False)]"),
    ("core/engine.py", "Engine.startup_effects", "core/ReplaceFalseWithTrue", "[SetUv(False),"),
    ("core/case.py", "CaseMachine._advance", "core/ReplaceComparisonOperator_GtE_Gt", "cap_s"),
    ("daemon/runtime.py", "Runtime.stop", "RemoveCall", "lock_out()"),
    ("hw/case_io.py", "CaseIO._on_lid_opened", "RemoveCall", "self._uv.off()"),
)

#: The fallback runs only these (in-process) tests: the daemon in a child process takes seconds
#: per test, and a rule's own tests already include those the docs name for it.
FAST_TESTS = ("tests/unit/", "tests/hw/")
TEST_DIR_ORDER = ("tests/unit/", "tests/hw/", "tests/store/", "tests/integration/", "tests/faults/")


# --- docs --------------------------------------------------------------------------------


def rule_rows() -> dict[str, tuple[str, list[str]]]:
    """docs/ARCHITECTURE.md's safety table, read as test_architecture_doc.py reads it: per rule,
    the "enforced in" cell and the tests of its "proved by" cell."""
    rows: dict[str, tuple[str, list[str]]] = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| (S\d+) \|", line)
        if match:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            tests = [f"{f}::{n}" for f, n in TEST_REF.findall(cells[3])]
            rows[match.group(1)] = (cells[2], tests)
    return rows


def safety_tests() -> dict[str, list[str]]:
    """docs/SAFETY.md's hazard rows, read as test_safety_doc.py reads them: the tests of every
    row whose control cites a rule ("(S7)", "(S11, above)")."""
    out: dict[str, list[str]] = {}
    for row in SAFETY.read_text(encoding="utf-8").splitlines():
        if not row.startswith("| H"):
            continue
        cells = row.split("|")
        tests = [f"{f}::{n}" for f, n in TEST_REF.findall(cells[-2])]
        for rule in re.findall(r"\((S\d+)[,)]", cells[-3]):
            out.setdefault(rule, []).extend(tests)
    return out


def source_digests() -> dict[str, str]:
    """Each mutated module's SHA-256, as the report records it: a report speaks only for the
    code it mutated, and ``tests/unit/test_safety_doc.py`` checks the modules are still that."""
    return {
        module: hashlib.sha256((ROOT / PACKAGE / module).read_bytes()).hexdigest()
        for module in MODULES
    }


def equivalent_mutants() -> dict[str, str]:
    """docs/SAFETY.md, "Equivalent mutants": key → why it changes nothing."""
    text = SAFETY.read_text(encoding="utf-8")
    _, _, section = text.partition("## Equivalent mutants")
    out: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("## "):
            break
        match = EQUIVALENT.match(line)
        if match:
            module, function, operator, code, nth, why = match.groups()
            key = f"{module} {function} {operator} {code}"
            out[key if nth in {None, "1"} else f"{key} #{nth}"] = why
    return out


# --- where a mutant sits ---------------------------------------------------------------------


@dataclass
class Source:
    """One module's functions (qualified name → line span) and the spans no mutant may touch."""

    path: str
    lines: list[str]
    functions: dict[str, tuple[int, int]] = field(default_factory=dict)
    excluded: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)

    @classmethod
    def read(cls, root: Path, path: str) -> Source:
        text = (root / PACKAGE / path).read_text(encoding="utf-8")
        src = cls(path, text.splitlines())
        tree = ast.parse(text)

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        src.functions[name] = (child.lineno, child.end_lineno or child.lineno)
                    visit(child, f"{name}.")
                else:
                    visit(child, prefix)

        visit(tree, "")
        for node in ast.walk(tree):
            spans: list[ast.AST] = []
            if isinstance(node, ast.Call) and _is_log_call(node.func):
                spans.append(node)
            elif isinstance(node, ast.AnnAssign | ast.arg) and node.annotation is not None:
                spans.append(node.annotation)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
                spans.append(node.returns)
            if isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            ) and ast.get_docstring(node, clean=False):
                spans.append(node.body[0])
            for span in spans:
                src.excluded.append(
                    (
                        (span.lineno, span.col_offset),
                        (span.end_lineno or span.lineno, span.end_col_offset or 0),
                    )
                )
        return src

    def function_at(self, line: int) -> str:
        """The innermost named function holding ``line`` ("" at module level)."""
        best, size = "", 1 << 30
        for name, (start, end) in self.functions.items():
            if start <= line <= end and end - start < size:
                best, size = name, end - start
        return best

    def left_out(self, start: tuple[int, int]) -> bool:
        if "pragma: no mutate" in self.lines[start[0] - 1]:
            return True
        # parso counts columns in characters as ast does for the ASCII-only code here.
        return any(lo <= start < hi for lo, hi in self.excluded)


def _is_log_call(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in {"log", "logger", "_log"}
    )


def rule_functions(sources: dict[str, Source]) -> dict[str, set[tuple[str, str]]]:
    """Per rule, the (module, function) pairs its "enforced in" cell names among our modules.

    ``core/case.py`` (or ``hw/case_io.install_uv_failsafe``) sets the module the following bare
    names belong to; ``Class.method`` is looked up in every module."""
    out: dict[str, set[tuple[str, str]]] = {}
    for rule, (where, _) in rule_rows().items():
        found: set[tuple[str, str]] = set()
        current: str | None = None
        for quoted in re.findall(r"`([^`]+)`", where):
            token = quoted.strip().rstrip("()")
            module_hint = None
            if token.endswith(".py"):
                current = token if token in sources else None
                continue
            if "/" in token:
                module_part, _, token = token.rpartition(".")
                module_hint = f"{module_part}.py"
                if module_hint not in sources:
                    continue
                current = module_hint
            if not re.fullmatch(r"[A-Za-z_][\w.]*", token):
                continue
            places = [module_hint] if module_hint else ([current] if current else [])
            places += [m for m in sources if m not in places]
            for module in places:
                names = [
                    name
                    for name in sources[module].functions
                    if name == token or name.endswith(f".{token}")
                ]
                if names:
                    found.update((module, name) for name in names)
                    break
        out[rule] = found
    return out


def rule_tests() -> dict[str, list[str]]:
    extra = safety_tests()
    out: dict[str, list[str]] = {}
    for rule, (_, tests) in rule_rows().items():
        out[rule] = ordered(dict.fromkeys([*tests, *extra.get(rule, [])]))
    return out


def ordered(tests: Any) -> list[str]:
    """Unit tests first, then hardware, store, integration and fault tests (slowest last)."""

    def key(test: str) -> int:
        return next((i for i, d in enumerate(TEST_DIR_ORDER) if test.startswith(d)), 99)

    return sorted(dict.fromkeys(tests), key=key)


# --- mutants ---------------------------------------------------------------------------------


def _remove_call_operator() -> Any:
    import parso
    from cosmic_ray.operators.operator import Example, Operator
    from parso.python.tree import ExprStmt, PythonNode

    class RemoveCall(Operator):
        """A call used as a statement (``x.lock_out()``) becomes ``None``."""

        def mutation_positions(self, node: Any) -> Iterator[tuple[Any, Any]]:
            if (
                isinstance(node, PythonNode)
                and node.type == "atom_expr"
                and node.parent is not None
                and node.parent.type == "simple_stmt"
                and not isinstance(node.parent, ExprStmt)
                and node.children[-1].type == "trailer"
                and node.children[-1].children[0].value == "("
            ):
                yield (node.start_pos, node.end_pos)

        def mutate(self, node: Any, index: int) -> Any:
            replacement = parso.parse("None").children[0]
            replacement.prefix = node.get_first_leaf().prefix
            return replacement

        @classmethod
        def examples(cls) -> tuple[Any, ...]:
            return (Example("f(x)\n", "None\n"),)

    return RemoveCall()


def operator_instance(name: str) -> Any:
    if name == "RemoveCall":
        return _remove_call_operator()
    import cosmic_ray.plugins

    return cosmic_ray.plugins.get_operator(name)()


@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    function: str
    code: str
    rules: list[str]
    tests: list[str]
    #: For a rule's mutant: the unit and hw tests named for the module's other rules, run if
    #: ``tests`` let it live (a line in a function named for one rule may hold up another, as
    #: the undocking in ``CaseMachine._on_dock`` starts S8's expiry).
    fallback: list[str] = field(default_factory=list)
    #: For a rule's mutant that ``tests`` and ``fallback`` let live: the module's own test
    #: files. A function named for a rule also does work no rule is about (``Engine._effects``
    #: orders UV first, and also passes a tare on to be saved): a mutant of that work breaks
    #: no rule, and the module's tests are what must notice it. Counted apart.
    own: list[str] = field(default_factory=list)
    outcome: str = ""
    killed_by_other_rules: bool = False
    killed_by_module_tests: bool = False
    #: Which of the same operator on the same code in the same function (1, 2, ...): an
    #: equivalent mutant is named by its key, and a function may repeat a line.
    nth: int = 1

    @property
    def key(self) -> str:
        key = f"{self.module} {self.function or '-'} {self.short_operator} {self.code}"
        return key if self.nth == 1 else f"{key} #{self.nth}"

    @property
    def short_operator(self) -> str:
        return self.operator.removeprefix("core/")


def mutants(root: Path) -> tuple[list[Mutant], dict[str, Source], dict[str, list[str]]]:
    from cosmic_ray.ast import ast_nodes, get_ast_from_path

    sources = {m: Source.read(root, m) for m in MODULES}
    by_rule_fn = rule_functions(sources)
    tests_of = rule_tests()
    found: list[Mutant] = []
    for module, source in sources.items():
        tree = get_ast_from_path(root / PACKAGE / module)
        for name in OPERATORS:
            op = operator_instance(name)
            positions = (pos for node in ast_nodes(tree) for pos in op.mutation_positions(node))
            for occurrence, (start, _end) in enumerate(positions):
                if source.left_out(start):
                    continue
                function = source.function_at(start[0])
                rules = sorted(
                    (
                        r
                        for r, fns in by_rule_fn.items()
                        if any(
                            m == module and (function == f or function.startswith(f"{f}."))
                            for m, f in fns
                        )
                    ),
                    key=lambda r: int(r[1:]),
                )
                tests = ordered(t for r in rules for t in tests_of[r]) if rules else MODULES[module]
                others = [
                    r
                    for r, fns in by_rule_fn.items()
                    if rules and r not in rules and any(m == module for m, _ in fns)
                ]
                fallback = [
                    t
                    for t in ordered(t for r in others for t in tests_of[r])
                    if t not in tests and t.startswith(FAST_TESTS)
                ]
                own = [t for t in MODULES[module] if rules and t not in tests]
                found.append(
                    Mutant(
                        module,
                        name,
                        occurrence,
                        start[0],
                        function,
                        source.lines[start[0] - 1].strip(),
                        rules,
                        tests,
                        fallback,
                        own,
                    )
                )
    seen: dict[str, int] = {}
    for m in sorted(found, key=lambda m: (m.module, m.line)):
        first = m.key  # nth is still 1 here
        m.nth = seen[first] = seen.get(first, 0) + 1
    return found, sources, tests_of


# --- running ----------------------------------------------------------------------------------


def scratch_copy() -> Path:
    """The tree to mutate: the working tree's files, without the venv, git and caches."""
    dest = Path(tempfile.mkdtemp(prefix="dermaguard-mutation-"))
    skip = shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache",
        ".ruff_cache", ".hypothesis", "state",
    )  # fmt: skip
    for item in ROOT.iterdir():
        if item.name in {".venv", ".git", ".hypothesis", "state"} or item.name.endswith("cache"):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name, ignore=skip, symlinks=True)
        else:
            shutil.copy2(item, dest / item.name)
    return dest


def preload() -> None:
    """Import the test tools once, in the parent, so that each forked run starts warm."""
    sys.dont_write_bytecode = True
    for name in ("pytest", "hypothesis", "pytest_mock", "gpiozero", "paho.mqtt.client", "yaml"):
        with contextlib.suppress(ImportError):
            __import__(name)
    for name in ("jsonschema", "sqlite3", "rich", "aiohttp"):
        with contextlib.suppress(ImportError):
            __import__(name)
    assert not any(m == "dermaguard" or m.startswith("dermaguard.") for m in sys.modules)


def deterministic_properties() -> None:
    """Hypothesis draws the same examples in every run and keeps no example database.

    A kill must be the mutant's doing. With random draws, a property test that can fail on
    the real code (it happened: a rounding slip in a test) kills mutants by chance; and with the
    database (``.hypothesis/`` in the scratch tree, shared by the runs of a shard), the first
    such failure would be replayed against every later mutant, killing them all.
    """
    from hypothesis import settings

    settings.register_profile("mutation", database=None, derandomize=True)
    settings.load_profile("mutation")


def run_tests(
    tree: Path, tests: list[str], timeout: float, extra: tuple[str, ...] = ("-x",)
) -> tuple[bool, float]:
    """Run ``tests`` against ``tree`` in a forked child; (all passed, seconds)."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout stops what it started
        code = 3
        try:
            os.setsid()
            os.chdir(tree)
            sys.path.insert(0, str(tree / "src"))
            os.environ["PYTHONPATH"] = str(tree / "src")
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            deterministic_properties()
            args = [*extra, "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "--no-header"]
            code = int(pytest.main([*args, "-o", "addopts=", *tests]))
        finally:
            os._exit(code)
    deadline = start + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                return os.waitstatus_to_exitcode(status) == 0, time.monotonic() - start
            if time.monotonic() > deadline:
                return False, time.monotonic() - start  # a timeout kills the mutant
            time.sleep(0.05)
    finally:
        if pid:  # timed out, or this run is being stopped: stop the tests and all they started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def check_copy_is_imported(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    where = subprocess.run(
        [sys.executable, "-c", "import dermaguard.core.case as m; print(m.__file__)"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    if not where.startswith(str(tree)):
        sys.exit(f"the scratch copy is not what a child process imports: {where}")


def git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


class Durations:
    """How long each test takes unmutated, from one run of every test the mutants will use
    (which must pass): a set's time, three times over, is its mutants' timeout."""

    def __init__(self, tree: Path, tests: list[str], saved: Path | None = None) -> None:
        self.seconds: dict[str, float] = {}
        if saved is not None and saved.exists():  # --baseline: a run of the same tree, resumed
            self.seconds = json.loads(saved.read_text(encoding="utf-8"))
            return
        junit = tree / "mutation-baseline.xml"
        ok, _ = run_tests(tree, tests, timeout=3600, extra=(f"--junitxml={junit}",))
        cases = ET.parse(junit).getroot().iter("testcase") if junit.exists() else iter(())
        failed = []
        for case in cases:
            module = case.get("classname", "").replace(".", "/")
            node = f"{module}.py::{case.get('name', '')}"
            self.seconds[node] = float(case.get("time", "0"))
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(node)
        if not ok:
            sys.exit(f"the tests fail without a mutant: {failed or 'see pytest'}")
        if saved is not None:
            saved.write_text(json.dumps(self.seconds), encoding="utf-8")

    def of(self, tests: list[str]) -> float:
        total = 0.0
        for node, took in self.seconds.items():
            name = node.split("[", 1)[0]
            if any(name == t or name.startswith(f"{t}::") for t in tests):
                total += took
        return total

    def timeout(self, tests: list[str]) -> float:
        return max(60.0, 3 * self.of(tests) + 30)


def run(
    selected: list[Mutant], tree: Path, log: io.TextIOBase | None, durations: Durations | None
) -> None:
    """Each mutant in turn: written into ``tree``, its tests run, the original put back.

    Without ``durations`` (``--quick``: the suite that runs it runs those tests anyway) the
    timeout is 10 minutes."""
    from cosmic_ray.mutating import use_mutation

    def timeout(tests: list[str]) -> float:
        return durations.timeout(tests) if durations else 600.0

    started = time.monotonic()
    for i, mutant in enumerate(selected, 1):
        path = tree / PACKAGE / mutant.module
        op = operator_instance(mutant.operator)
        with use_mutation(path, op, mutant.occurrence) as (_, mutated):
            if mutated is None:
                mutant.outcome = "no-mutation"
                continue
            passed, took = run_tests(tree, mutant.tests, timeout=timeout(mutant.tests))
            if passed and mutant.fallback:
                passed, more = run_tests(tree, mutant.fallback, timeout(mutant.fallback))
                took += more
                mutant.killed_by_other_rules = not passed
            if passed and mutant.own:
                passed, more = run_tests(tree, mutant.own, timeout(mutant.own))
                took += more
                mutant.killed_by_module_tests = not passed
        mutant.outcome = "survived" if passed else "killed"
        if log is not None:
            other = " (by another rule's tests)" if mutant.killed_by_other_rules else ""
            other += " (by the module's tests)" if mutant.killed_by_module_tests else ""
            print(
                f"[{i}/{len(selected)} {time.monotonic() - started:.0f}s] {mutant.outcome} "
                f"{mutant.module}:{mutant.line} {mutant.short_operator} {mutant.function} "
                f"{'/'.join(mutant.rules)}{other} ({took:.1f}s)",
                file=log,
                flush=True,
            )


def run_sharded(
    selected: list[Mutant],
    jobs: int,
    log: io.TextIOBase | None,
    *,
    baseline: bool,
    saved: Path | None = None,
) -> None:
    """``jobs`` processes, each with its own scratch copy, share the mutants round-robin."""
    durations = None
    if baseline:
        tree = scratch_copy()
        try:
            every = ordered(t for m in selected for t in [*m.tests, *m.fallback, *m.own])
            every = [t for t in every if "::" not in t or t.split("::")[0] not in every]
            durations = Durations(tree, every, saved)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        if log is not None:
            print(f"baseline: {len(durations.seconds)} tests pass unmutated", file=log)
    shards: dict[int, Path] = {}
    for k in range(jobs):
        out = Path(tempfile.mkstemp(prefix="dermaguard-mutation-", suffix=".json")[1])
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                tree = scratch_copy()
                try:
                    mine = selected[k::jobs]
                    run(mine, tree, log, durations)
                    results = [
                        (m.outcome, m.killed_by_other_rules, m.killed_by_module_tests) for m in mine
                    ]
                    out.write_text(json.dumps(results), encoding="utf-8")
                    code = 0
                finally:
                    shutil.rmtree(tree, ignore_errors=True)
            finally:
                os._exit(code)
        shards[pid] = out
    try:
        for k, (pid, out) in enumerate(shards.items()):
            _, status = os.waitpid(pid, 0)
            shards[pid] = Path()
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit(f"mutation worker {k} failed")
            results = json.loads(out.read_text(encoding="utf-8"))
            out.unlink()
            for mutant, (outcome, other, own) in zip(selected[k::jobs], results, strict=True):
                mutant.outcome, mutant.killed_by_other_rules = outcome, other
                mutant.killed_by_module_tests = own
    finally:  # stopped (SIGTERM, Ctrl-C, a failed worker): stop the workers, which clean up
        for pid, out in shards.items():
            if out != Path():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
                out.unlink(missing_ok=True)


def tally(ms: list[Mutant], equivalent: dict[str, str]) -> dict[str, int]:
    done = [m for m in ms if m.outcome in {"killed", "survived"}]
    survived = [m for m in done if m.outcome == "survived"]
    return {
        "mutants": len(done),
        "killed": len(done) - len(survived),
        "survived": len(survived),
        "equivalent": sum(1 for m in survived if m.key in equivalent),
        "killed_by_other_rules": sum(1 for m in done if m.killed_by_other_rules),
        "killed_by_module_tests": sum(1 for m in done if m.killed_by_module_tests),
    }


def report(
    ms: list[Mutant],
    tests_of: dict[str, list[str]],
    equivalent: dict[str, str],
    wall: float,
    commit: str,
) -> dict[str, Any]:
    from importlib.metadata import version

    shares = module_rules(ms, tests_of, equivalent)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "tool": f"cosmic-ray {version('cosmic-ray')}",
        "sources": source_digests(),
        "planned": len(ms),
        "complete": all(m.outcome for m in ms),
        "wall_time_s": round(wall),
        "total": tally(ms, equivalent),
        "modules": {m: tally([x for x in ms if x.module == m], equivalent) for m in MODULES},
        "rules": rule_figures(shares, tests_of),
        "module_rules": shares,
        "survivors": [
            {**_survivor(m), "equivalent": m.key in equivalent}
            for m in ms
            if m.outcome == "survived"
        ],
    }


def module_rules(
    ms: list[Mutant], tests_of: dict[str, list[str]], equivalent: dict[str, str]
) -> dict[str, dict[str, dict[str, int]]]:
    """Each module's share of each rule's row: what lets a rerun of one module replace its
    share (``merged``) instead of running every module again."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for module in MODULES:
        mine = [m for m in ms if m.module == module]
        out[module] = {
            rule: tally([m for m in mine if rule in m.rules], equivalent)
            for rule in sorted(tests_of, key=lambda r: int(r[1:]))
            if any(rule in m.rules for m in mine)
        }
    return out


def _summed(rows: list[dict[str, int]]) -> dict[str, int]:
    fields = list(tally([], {}))
    return {f: sum(r.get(f, 0) for r in rows) for f in fields}


def rule_figures(
    shares: dict[str, dict[str, dict[str, int]]], tests_of: dict[str, list[str]]
) -> dict[str, dict[str, int]]:
    """Each rule's row: its modules' shares summed (a mutant is of one module), and how many
    tests the rule names."""
    return {
        rule: {
            **_summed([share[rule] for share in shares.values() if rule in share]),
            "tests": len(tests_of[rule]),
        }
        for rule in sorted(tests_of, key=lambda r: int(r[1:]))
    }


def merged(
    previous: dict[str, Any],
    ms: list[Mutant],
    tests_of: dict[str, list[str]],
    equivalent: dict[str, str],
    *,
    wall: float,
    commit: str,
) -> dict[str, Any]:
    """``previous`` with every mutant of the modules in ``ms`` run again: their rows, their
    shares of the rules' rows and their survivors replaced, the other modules' kept. Refused
    unless ``previous`` is a full run that kept each module's share, and the modules not run
    again are byte for byte those it mutated."""
    rerun = sorted({m.module for m in ms})
    now = check_mergeable(previous, rerun)
    out: dict[str, Any] = json.loads(json.dumps(previous))
    fresh = module_rules(ms, tests_of, equivalent)
    for module in rerun:
        out["modules"][module] = tally([m for m in ms if m.module == module], equivalent)
        out["module_rules"][module] = fresh[module]
    out["survivors"] = [s for s in out["survivors"] if s["module"] not in rerun] + [
        _survivor(m) for m in ms if m.outcome == "survived"
    ]
    out["rules"] = rule_figures(out["module_rules"], tests_of)
    out["total"] = _summed(list(out["modules"].values()))
    _mark_equivalent(out, equivalent)
    out["sources"] = now
    out["commit"] = commit
    out["planned"] = out["total"]["mutants"]
    out["complete"] = all(m.outcome for m in ms)
    out.setdefault("merges", []).append(
        {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit,
            "modules": rerun,
            "mutants": len(ms),
            "wall_time_s": round(wall),
        }
    )
    return out


def _mark_equivalent(out: dict[str, Any], equivalent: dict[str, str]) -> None:
    """Mark each survivor of ``out`` equivalent or not, and count the equivalent ones again in
    the total's, each module's and each rule's row."""
    for s in out["survivors"]:
        s["equivalent"] = survivor_key(s) in equivalent
    for name, row in [("total", out["total"]), *out["modules"].items(), *out["rules"].items()]:
        row["equivalent"] = sum(
            1
            for s in out["survivors"]
            if s["equivalent"] and (name == "total" or s["module"] == name or name in s["rules"])
        )


def check_mergeable(previous: dict[str, Any], rerun: list[str]) -> dict[str, str]:
    """Exit, saying why, unless ``previous`` can take a rerun of the modules ``rerun`` alone;
    the modules' digests as they are now."""
    if not previous.get("complete") or "module_rules" not in previous:
        sys.exit("the report is not a full run that kept each module's share: run the full check")
    now = source_digests()
    changed = [m for m in MODULES if m not in rerun and previous["sources"].get(m) != now[m]]
    if changed:
        sys.exit(f"changed since the full run but not run again: {', '.join(changed)}")
    return now


def _survivor(m: Mutant) -> dict[str, Any]:
    return {
        "module": m.module,
        "line": m.line,
        "operator": m.short_operator,
        "function": m.function,
        "rules": m.rules,
        "code": m.code,
        "nth": m.nth,
        "equivalent": False,
    }


def survivor_key(s: dict[str, Any]) -> str:
    """A report's survivor named as :attr:`Mutant.key` names it."""
    key = f"{s['module']} {s['function'] or '-'} {s['operator']} {s['code']}"
    return key if s["nth"] == 1 else f"{key} #{s['nth']}"


def load_for_recheck(path: Path) -> dict[str, Any]:
    """The last full run's report, refused when a rerun of its survivors alone would not say
    what a full run would: a partial run, or a mutated module changed since."""
    previous: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    commit = previous["commit"]
    if not previous["complete"] or commit.endswith("+changes"):
        sys.exit(f"{path} is not a full run of committed code ({commit}): run the full check")
    changed = []
    for module in MODULES:
        diff = subprocess.run(
            ["git", "-C", str(ROOT), "diff", "--quiet", commit, "--", str(PACKAGE / module)],
            capture_output=True,
            check=False,
        )
        if diff.returncode > 1:
            sys.exit(f"cannot compare with the full run's commit {commit}: {diff.stderr.decode()}")
        if diff.returncode:
            changed.append(module)
    recorded = previous.get("sources")
    if recorded is not None:
        now = source_digests()
        changed += [m for m in MODULES if recorded.get(m) != now[m] and m not in changed]
    if changed:
        sys.exit(
            f"changed since the full run at {commit}: {', '.join(changed)}; "
            "its mutants are not those of the report: run the full check"
        )
    return previous


def rechecked(
    previous: dict[str, Any], ms: list[Mutant], equivalent: dict[str, str], commit: str
) -> dict[str, Any]:
    """``previous`` with the rerun survivors' outcomes: those killed now move from survived to
    killed in their module's, their rules', their module's shares of those and the total's
    rows."""
    out: dict[str, Any] = json.loads(json.dumps(previous))
    out["sources"] = source_digests()  # unchanged since the full run (load_for_recheck)
    for row in [out["total"], *out["modules"].values(), *out["rules"].values()]:
        row.setdefault("killed_by_module_tests", 0)
    killed = [m for m in ms if m.outcome == "killed"]
    shares = out.get("module_rules", {})
    for m in killed:
        # Each module's share of its rules' rows too: a later --module merge sums the rules'
        # rows from the shares, and must not bring back a survivor killed here.
        mine = shares.get(m.module, {})
        rows = [
            out["total"],
            out["modules"][m.module],
            *(out["rules"][r] for r in m.rules),
            *(mine[r] for r in m.rules if r in mine),
        ]
        for row in rows:
            row["killed"] += 1
            row["survived"] -= 1
            row["killed_by_other_rules"] += int(m.killed_by_other_rules)
            row["killed_by_module_tests"] += int(m.killed_by_module_tests)
    gone = {m.key for m in killed}
    out["survivors"] = [s for s in out["survivors"] if survivor_key(s) not in gone]
    _mark_equivalent(out, equivalent)
    out.setdefault("rechecks", []).append(
        {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit,
            "survivors_rerun": len(ms),
            "killed": len(killed),
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the fixed subset CI runs")
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="only these")
    parser.add_argument(
        "--rule",
        action="append",
        help="only the mutants of these rules (S4; - for those outside every rule)",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="test runs at a time (default 1)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="keep the unmutated run's test times in this file, or read them if it exists "
        "(to resume a run of the same tree without running every test again)",
    )
    parser.add_argument("--progress", action="store_true", help="a line per mutant on stderr")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="run only the survivors of the report's full run again (those of --module or "
        "--rule, when given), and update the report",
    )
    parser.add_argument(
        "--report",
        type=Path,
        nargs="?",
        const=REPORT,
        help=f"write the figures (default {REPORT.relative_to(ROOT)}); a full run only",
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every scratch copy is removed and no test is left.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    preload()
    commit = git_commit()  # what is mutated: the working tree as it is now
    tree = scratch_copy()
    try:
        check_copy_is_imported(tree)
        found, _, tests_of = mutants(tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    selected = found
    previous: dict[str, Any] | None = None
    if args.recheck:
        if args.quick:
            sys.exit("--recheck reruns the report's survivors (--module and --rule narrow them)")
        previous = load_for_recheck(args.report or REPORT)
        keys = {survivor_key(s) for s in previous["survivors"]}
        selected = [m for m in found if m.key in keys]
        if len(selected) != len(keys):
            missing = keys - {m.key for m in selected}
            sys.exit(f"survivors of the report not found among the mutants: {sorted(missing)}")
        # One documented as equivalent survives every test by its reason: rerunning it would
        # run every test it could meet (minutes each) to learn nothing.
        documented = equivalent_mutants()
        selected = [m for m in selected if m.key not in documented]
    if args.quick:
        selected = [
            m
            for m in found
            if any(
                (m.module, m.function, m.operator) == (mod, fn, op) and code in m.code
                for mod, fn, op, code in QUICK
            )
        ]
    if args.module:
        selected = [m for m in selected if m.module in args.module]
    if args.rule:
        selected = [
            m
            for m in selected
            if set(m.rules) & set(args.rule) or ("-" in args.rule and not m.rules)
        ]
    if args.list:
        for m in selected:
            print(f"{m.module}:{m.line} {m.short_operator} {m.function} {'/'.join(m.rules)}")
        print(f"mutants: {len(selected)}")
        return 0
    if args.report is not None and previous is None:  # refuse before the run, not after it
        if args.quick or args.rule:
            sys.exit("--report records a full run, or every mutant of the --module given")
        if args.module:
            if not args.report.is_file():
                sys.exit(f"no report at {args.report} to merge --module into: run the full check")
            check_mergeable(json.loads(args.report.read_text(encoding="utf-8")), args.module)
    selected.sort(key=lambda m: not m.rules)  # a rule's mutants first: they matter most
    started = time.monotonic()
    run_sharded(selected, max(1, args.jobs), sys.stderr if args.progress else None,
                baseline=not args.quick, saved=args.baseline)  # fmt: skip
    wall = time.monotonic() - started
    equivalent = equivalent_mutants()
    figures = tally(selected, equivalent)
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(f"wall_time: {wall:.0f} s")
    for m in sorted(selected, key=lambda m: (list(MODULES).index(m.module), m.line)):
        if m.outcome == "survived":
            note = " (equivalent)" if m.key in equivalent else ""
            rules = "/".join(m.rules) or "-"
            print(
                f"survivor: {m.module}:{m.line} {m.short_operator} {rules} "
                f"{m.function or '-'}{note}: {m.code}"
            )
    if previous is not None:
        path = args.report or REPORT
        path.write_text(
            json.dumps(rechecked(previous, selected, equivalent, commit), indent=2) + "\n",
            encoding="utf-8",
        )
    elif args.report is not None:
        if args.module:
            before = json.loads(args.report.read_text(encoding="utf-8"))
            figures_out = merged(before, selected, tests_of, equivalent, wall=wall, commit=commit)
        else:
            figures_out = report(selected, tests_of, equivalent, wall, commit)
        args.report.write_text(json.dumps(figures_out, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["survived"] == figures["equivalent"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the scratch copies and the tests are gone by now (finally)
        sys.exit("stopped: no report written, the last one is as it was")
