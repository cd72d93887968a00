"""The outbox's bookkeeping: order, a bounded window, no double hand-over, refusals kept."""

from __future__ import annotations

import json

from dermaguard.mqtt.outbox import Outbox, OutEvent


def ev(seq: int, etype: str = "over_pressure") -> OutEvent:
    return OutEvent.build(
        seq=seq,
        event_id=f"id-{seq}",
        device="d",
        etype=etype,
        ts="2026-01-01T00:00:00.000Z",
        data={"n": seq},
    )


class Disk:
    """Undelivered events as the database would return them (the read is the edge here)."""

    def __init__(self, seqs: range | list[int]) -> None:
        self.rows = {s: ev(s) for s in seqs}
        self.reads = 0

    def page(self, after: int, limit: int) -> list[OutEvent]:
        self.reads += 1
        return [self.rows[s] for s in sorted(self.rows) if s > after][:limit]


class Client:
    """Hands out message ids like paho; ``up`` False refuses like a full client would."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.mids: dict[int, int] = {}
        self.up = True

    def publish(self, event: OutEvent) -> int | None:
        if not self.up:
            return None
        mid = len(self.sent) + 1
        self.sent.append(event.seq)
        self.mids[event.seq] = mid
        return mid


def test_backlog_is_published_in_order_through_a_bounded_window() -> None:
    disk, client = Disk(range(1, 1001)), Client()
    box = Outbox(disk.page, window=50, page=20)
    box.fill(client.publish)
    assert client.sent == list(range(1, 51)) and len(box.inflight) == 50
    delivered = []
    while len(delivered) < 1000:
        for seq in list(box.inflight.values()):
            got = box.acked(client.mids[seq.seq], True)
            assert got is not None
            delivered.append(got.seq)
            del disk.rows[got.seq]  # the delivery mark
        box.fill(client.publish)
        assert len(box.inflight) <= 50
    assert delivered == list(range(1, 1001)) and client.sent == delivered
    assert box.idle


def test_fresh_events_go_straight_out_once_the_backlog_is_read() -> None:
    disk, client = Disk([1, 2]), Client()
    box = Outbox(disk.page)
    box.offer(ev(2))  # committed while the backlog was being read: not sent twice
    box.offer(ev(3))
    box.fill(client.publish)
    assert client.sent == [1, 2, 3]
    reads = disk.reads
    box.offer(ev(4))
    box.fill(client.publish)
    assert client.sent == [1, 2, 3, 4] and disk.reads == reads  # from memory, not the disk


def test_nothing_handed_over_is_handed_over_again_after_a_reconnect() -> None:
    # paho re-sends its own unacknowledged QoS 1 messages after a reconnect.
    disk, client = Disk(range(1, 6)), Client()
    box = Outbox(disk.page)
    box.fill(client.publish)
    box.fill(client.publish)  # e.g. called again on the reconnect
    assert client.sent == [1, 2, 3, 4, 5]


def test_an_overflowing_fresh_queue_falls_back_to_the_disk_without_losing_events() -> None:
    disk, client = Disk([]), Client()
    box = Outbox(disk.page, fresh_max=10)
    box.fill(client.publish)  # caught up: live mode
    for seq in range(1, 26):  # the broker was away: 25 committed events
        disk.rows[seq] = ev(seq)
        box.offer(ev(seq))
    box.fill(client.publish)
    assert client.sent == list(range(1, 26))


def test_a_refused_publish_is_not_delivered_and_is_retried_later() -> None:
    now = [0.0]
    disk, client = Disk([1, 2]), Client()
    box = Outbox(disk.page, retry_refused_s=60.0, monotonic=lambda: now[0])
    box.fill(client.publish)
    assert box.acked(client.mids[1], False, "Not authorized") is None
    assert box.acked(client.mids[2], True) is not None
    assert box.refusals == 1 and box.next_retry_in() == 60.0
    box.fill(client.publish)
    assert client.sent == [1, 2]
    now[0] = 60.0
    box.fill(client.publish)
    assert client.sent == [1, 2, 1]


def test_a_client_that_does_not_take_an_event_gets_it_again_later() -> None:
    disk, client = Disk([1, 2, 3]), Client()
    box = Outbox(disk.page)
    client.up = False
    box.fill(client.publish)
    assert client.sent == [] and box.cursor == 0
    client.up = True
    box.fill(client.publish)
    assert client.sent == [1, 2, 3]


def test_the_envelope_carries_the_contract_fields() -> None:
    body = json.loads(ev(7, "session_ended").payload)
    assert body == {
        "v": 1,
        "id": "id-7",
        "seq": 7,
        "device": "d",
        "type": "session_ended",
        "ts": "2026-01-01T00:00:00.000Z",
        "data": {"n": 7},
    }
    assert ev(7, "session_ended").data == {"n": 7} and ev(7).data is None


def test_nothing_is_next_while_events_only_wait_for_their_puback() -> None:
    # The bridge thread sleeps on has_next; "not idle" would keep it spinning until the PUBACK.
    disk, client = Disk([1, 2]), Client()
    box = Outbox(disk.page)
    box.fill(client.publish)
    assert len(box.inflight) == 2 and not box.idle
    assert not box.has_next
    box.offer(ev(3))
    assert box.has_next


def test_a_backlog_is_read_a_page_at_a_time_however_the_acknowledgements_come() -> None:
    """PUBACKs come one by one, each making room for one event: the backlog must still be
    read in pages, not with a query per event (that halved a drain's rate)."""
    disk, client = Disk(range(1, 1001)), Client()
    box = Outbox(disk.page, window=50, page=100)
    box.fill(client.publish)
    while box.inflight:
        first = min(box.inflight)
        got = box.acked(first, True)
        assert got is not None
        del disk.rows[got.seq]
        box.fill(client.publish)
    assert client.sent == list(range(1, 1001)) and box.idle
    assert disk.reads <= 1000 // 100 + 2


def test_a_fresh_event_the_client_does_not_take_is_handed_over_later() -> None:
    """Live, not from the disk: an event refused by a full or disconnected client stays first
    in line; it used to be dropped from memory with the rest of its batch, and waited on disk
    for the next start."""
    disk, client = Disk([]), Client()
    box = Outbox(disk.page)
    box.fill(client.publish)  # caught up: live mode
    for seq in (1, 2, 3):
        disk.rows[seq] = ev(seq)
        box.offer(ev(seq))
    client.up = False
    box.fill(client.publish)
    client.up = True
    box.fill(client.publish)
    assert client.sent == [1, 2, 3]
