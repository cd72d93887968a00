"""Fixtures shared by all test directories: a real Mosquitto broker the test owns.

``broker`` is a started broker in the test's tmp_path; ``broker_factory`` makes more (with
users, an ACL, without persistence, ...). ``recorder_factory`` makes Recorders that are
closed at teardown. All brokers are stopped at teardown, pass or fail, and when a test fails
the tail of each broker's log is attached to the report. A missing mosquitto binary fails
the test (it is a required tool, not an optional one).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.broker import (
    Broker,
    BrokerFactory,
    Endpoint,
    MosquittoNotFound,
    Recorder,
    RecorderFactory,
    find_mosquitto,
)

_BROKERS = pytest.StashKey[list[Broker]]()


def _mosquitto_or_fail() -> str:
    try:
        return find_mosquitto()
    except MosquittoNotFound as e:
        missing = str(e)
    pytest.fail(missing, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture
def broker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerFactory]:
    """Make brokers (each in its own directory under tmp_path); all stopped at teardown."""
    binary = _mosquitto_or_fail()
    made: list[Broker] = request.node.stash.setdefault(_BROKERS, [])

    def make(
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = True,
        start: bool = True,
        **kwargs: Any,
    ) -> Broker:
        workdir = tmp_path / f"broker{len(made)}"
        b = Broker(workdir, users=users, acl=acl, persistence=persistence, binary=binary, **kwargs)
        made.append(b)
        if start:
            b.start()
        return b

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for b in made:
            try:
                b.close()
            except BaseException as e:  # close every broker before reporting
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> Broker:
    """A started anonymous broker with persistence, on a free loopback port."""
    return broker_factory()


@pytest.fixture
def recorder_factory() -> Iterator[RecorderFactory]:
    """Make Recorders (``Recorder(broker, topics, **kwargs)``); all closed at teardown."""
    made: list[Recorder] = []

    def make(broker: Endpoint, topics: str | Sequence[str], **kwargs: Any) -> Recorder:
        rec = Recorder(broker, topics, **kwargs)
        made.append(rec)
        return rec

    try:
        yield make
    finally:
        for rec in made:
            rec.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    brokers = item.stash.get(_BROKERS, None)
    if brokers and report.failed and report.when in ("setup", "call"):
        for b in brokers:
            report.sections.append((f"mosquitto log, port {b.port} ({b.log_path})", b.log_tail(60)))
    return report
