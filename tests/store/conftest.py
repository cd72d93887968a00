"""Fixtures for the store tests: a fresh database path and an opened store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from dermaguard.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store.open(db_path, "dg-test")
    yield s
    with suppress(sqlite3.ProgrammingError):  # already closed by the test
        s.close()
