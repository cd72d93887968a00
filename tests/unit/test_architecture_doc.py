"""docs/ARCHITECTURE.md stays the design the code cites, and stays true about the code.

Code and docs cite the repository's own design document, never the founding brief outside it;
every safety rule has a row that names where it is enforced and the tests that prove it; every
test the document names exists; and the core it calls pure imports nothing but itself and the
standard library
(plus the stdlib-only helpers in ``common/``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
TESTS = ROOT / "tests"
CORE = ROOT / "src" / "dermaguard" / "core"
COMMON = ROOT / "src" / "dermaguard" / "common"

#: A citation of the founding brief: its file name, or its name followed by a section sign, the
#: word "section" or a rule id. Built from parts so that this file does not match itself.
BRIEF_CITATION = re.compile("DESIGN" + r"(?:\.md|\s*§|\s+section\b|\s+S\d)")
#: Where citations could hide: code, tests, tools, hardware and firmware notes, docs, packaging.
CITING_PLACES = ("src", "tests", "bench", "hardware", "firmware", "systemd", "docs", "scenarios")
CITING_FILES = ("README.md", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".json", ".yaml", ".yml", ".toml", ".txt", ".sh", ".service", ".csv"}
#: A test name the document mentions (not a test file's name: ``test_x.py``).
TEST_NAME = re.compile(r"\b(test_\w+)\b(?!\.py)")
#: A test cited with its file: ``tests/unit/test_x.py::test_y``.
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
#: A source file the document points at, relative to the repository or to the package.
SOURCE_PATH = re.compile(r"`((?:[\w./-]+/)?\w+\.py)")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def text_files() -> list[Path]:
    files = [ROOT / name for name in CITING_FILES]
    for place in CITING_PLACES:
        for path in sorted((ROOT / place).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if any(p.endswith(".egg-info") or p == "__pycache__" for p in parts):
                continue
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                files.append(path)
    return files


def safety_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| (S\d+) \|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_nothing_cites_the_founding_brief_instead_of_the_architecture_doc() -> None:
    files = text_files()
    assert any(f.name == "case.py" for f in files)  # the walk did reach the code
    cited = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}"
        for path in files
        for number, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
        )
        if BRIEF_CITATION.search(line)
    ]
    assert not cited, f"cite docs/ARCHITECTURE.md (or say what is meant) instead: {cited}"


def test_every_safety_rule_has_a_row_with_where_and_a_test() -> None:
    rows = safety_rows()
    assert sorted(rows, key=lambda r: int(r[1:])) == [f"S{n}" for n in range(1, 12)]
    for rule, row in rows.items():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 4, f"{rule}: rule | what it says | enforced in | proved by"
        _, says, where, proved = cells
        assert says and where, f"{rule} must say what it means and where it is enforced"
        assert TEST_REF.search(proved), f"no test proves {rule}"


def test_every_test_the_doc_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    defined: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        defined |= defined_tests(path)
    names = set(TEST_NAME.findall(text))
    assert len(names) >= 40
    missing = sorted(names - defined)
    assert not missing, f"docs/ARCHITECTURE.md names tests that do not exist: {missing}"
    wrong_file = [
        f"{file}::{name}"
        for file, name in TEST_REF.findall(text)
        if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]
    assert not wrong_file, f"docs/ARCHITECTURE.md puts tests in the wrong file: {wrong_file}"


def test_every_source_file_the_doc_names_exists() -> None:
    package = ROOT / "src" / "dermaguard"
    paths = set(SOURCE_PATH.findall(DOC.read_text(encoding="utf-8")))
    assert len(paths) >= 10
    missing = sorted(p for p in paths if not (ROOT / p).is_file() and not (package / p).is_file())
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"


def test_the_core_imports_only_itself_the_common_helpers_and_the_standard_library() -> None:
    outside: list[str] = []
    for package, allowed in ((CORE, ("dermaguard.core", "dermaguard.common")), (COMMON, ())):
        for path in sorted(package.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:  # relative imports hide where they reach
                        outside.append(f"{path.name}: {'.' * node.level}{node.module or ''}")
                        continue
                    modules = [node.module or ""]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if module.startswith((*allowed, package_name(package))) or top == "__future__":
                        continue
                    if top not in sys.stdlib_module_names:
                        outside.append(f"{package.name}/{path.name}: {module}")
    assert not outside, f"core and common must stay pure (docs/ARCHITECTURE.md): {outside}"


def package_name(package: Path) -> str:
    return f"dermaguard.{package.name}"
