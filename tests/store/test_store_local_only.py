"""Events stored with MQTT off stay in the history and never enter the outbox."""

from __future__ import annotations

from pathlib import Path

from dermaguard.core.events import Event
from dermaguard.store import Store


def test_events_stored_with_publish_off_are_kept_but_never_offered(db_path: Path) -> None:
    offline = Store.open(db_path, "dg-test", publish=False)
    offline.append_event(Event("daemon_started", 0.0, {}), 1_790_000_000.0)
    offline.append_event(
        Event("over_pressure", 1.0, {"force_n": 5.0, "limit_n": 4.5}), 1_790_000_001.0
    )
    assert offline.undelivered() == []
    offline.close()

    online = Store.open(db_path, "dg-test")
    online.append_event(Event("daemon_started", 2.0, {}), 1_790_000_002.0)
    assert [e["seq"] for e in online.undelivered()] == [3]
    events = online.events()
    assert [(e["type"], e["local_only"], e["delivered"]) for e in events] == [
        ("daemon_started", True, False),
        ("over_pressure", True, False),
        ("daemon_started", False, False),
    ]
    # Delivery marks never touch an event kept local.
    assert online.mark_delivered([1, 2, 3], 1_790_000_003.0) == 1
    assert [e["delivered"] for e in online.events()] == [False, False, True]
    online.close()
