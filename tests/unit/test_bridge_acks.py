"""The publisher takes PUBACKs in batches while the client has plenty in flight, and never
leaves one unrecorded: a batch, a disconnect or the hold time lets them through.

A wake-up per PUBACK, contending with paho's network thread for the client's lock, held a
backlog's drain under half of raw paho's rate (docs/RELIABILITY.md, "MQTT"). The acks here come
from the test thread through the client's ``on_publish``, as paho's thread would send them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from dermaguard.core.events import Event
from dermaguard.mqtt.bridge import MqttBridge
from dermaguard.mqtt.outbox import WINDOW
from dermaguard.store import Store
from support.fake_paho import FakeClient, fake_bridge

BACKLOG = WINDOW + 100
BOUND_S = 10.0  # a bound against a hang, not a measure of speed


class _Marks:
    """What the bridge passed to ``mark_delivered``, call by call."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.calls: list[list[int]] = []

    def __call__(self, seqs: Iterable[int]) -> None:
        with self.cond:
            self.calls.append(list(seqs))
            self.cond.notify_all()

    @property
    def seqs(self) -> list[int]:
        return [s for call in self.calls for s in call]

    def wait_for(self, n: int) -> list[int]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.seqs) >= n, BOUND_S), (
                f"{len(self.seqs)} of {n} acknowledged events marked delivered"
            )
            return self.seqs


def wait_until(what: Callable[[], bool], message: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not what():
        assert time.monotonic() < deadline, message
        time.sleep(0.001)


def backlog_bridge(tmp_path: Path, ack_hold_s: float) -> tuple[MqttBridge, FakeClient, _Marks]:
    """A connected bridge over a history of ``BACKLOG`` undelivered events, its publisher
    running."""
    db = tmp_path / "dg.db"
    store = Store.open(db, "dev")
    for i in range(BACKLOG):
        store.append_event(Event("tare", float(i), {"offset": i}), 1_764_000_000.0 + i)
    store.close()
    client, marks = FakeClient(), _Marks()
    bridge = fake_bridge(db, client, ack_hold_s=ack_hold_s)
    bridge.bind(put_command=lambda _c: None, mark_delivered=marks)
    client.connected()
    bridge.restart()  # starts the publisher thread
    wait_until(lambda: len(client.events) == WINDOW, "the window was not filled")
    # The step that filled it has ended: the publisher now waits for a batch of PUBACKs.
    wait_until(lambda: bridge._ack_batch == WINDOW - WINDOW // 2, "no batch size was set")
    return bridge, client, marks


def test_a_backlog_is_marked_delivered_once_each_acknowledged_in_any_order(
    tmp_path: Path,
) -> None:
    bridge, client, marks = backlog_bridge(tmp_path, ack_hold_s=0.02)
    try:
        acked = 0
        while acked < BACKLOG:
            wait_until(lambda n=acked: len(client.events) > n, "no event left to acknowledge")
            with client.lock:
                batch = client.events[acked:]
            for mid in reversed(batch):  # PUBACKs may come in any order
                client.ack(mid)
            acked += len(batch)
        assert len(client.events) == BACKLOG
        assert sorted(marks.wait_for(BACKLOG)) == list(range(1, BACKLOG + 1))
        assert bridge.drain(BOUND_S)
    finally:
        bridge.close()


def test_acks_wait_for_a_batch_while_half_the_window_is_still_in_flight(tmp_path: Path) -> None:
    # The hold time is out of reach: only the batch size lets acknowledgements through.
    bridge, client, marks = backlog_bridge(tmp_path, ack_hold_s=3600.0)
    try:
        batch = WINDOW - WINDOW // 2  # in flight beyond half the window
        for mid in client.events[: batch - 1]:
            client.ack(mid)
        assert bridge.outbox is not None
        with bridge._cond:  # what the publisher sees when it checks whether to wake
            assert not bridge._has_work(bridge.outbox), "one ack short of a batch woke it"
        client.ack(client.events[batch - 1])
        assert marks.wait_for(batch) == list(range(1, batch + 1))
        assert len(marks.calls) == 1, "the bridge woke before the batch was complete"
        # ...and the room it made went to the next events at once.
        wait_until(lambda: len(client.events) == BACKLOG, "the window was not refilled")
    finally:
        bridge.close()


def test_a_disconnect_records_acks_that_wait_for_a_batch(tmp_path: Path) -> None:
    bridge, client, marks = backlog_bridge(tmp_path, ack_hold_s=3600.0)
    try:
        for mid in client.events[:3]:
            client.ack(mid)
        client.dropped()
        assert marks.wait_for(3) == [1, 2, 3]
    finally:
        bridge.close()


def test_a_few_acks_are_recorded_within_the_hold_time(tmp_path: Path) -> None:
    bridge, client, marks = backlog_bridge(tmp_path, ack_hold_s=0.02)
    try:
        for mid in client.events[:3]:
            client.ack(mid)
        assert marks.wait_for(3) == [1, 2, 3]
        assert bridge.connected
    finally:
        bridge.close()
