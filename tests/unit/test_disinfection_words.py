"""What a person reads promises disinfection, not sterility; the names machines read stay."""

from __future__ import annotations

import io
from pathlib import Path

from dermaguard.core.events import CaseStatus, EmitEvent, Event
from dermaguard.core.words import describe
from dermaguard.daemon.console import ConsolePrinter
from dermaguard.daemon.status_file import StatusFile
from dermaguard.mqtt.discovery import discovery_config
from dermaguard.mqtt.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("dermaguard")


def test_the_console_says_disinfected_for_the_case_and_the_roller() -> None:
    out = io.StringIO()
    printer = ConsolePrinter(0.0, out)
    printer(CaseStatus(1.0, "sterilizing", True, 600.0, False))
    printer(CaseStatus(2.0, "sterilizing", True, 300.0, False))
    printer(CaseStatus(3.0, "sterile", False, None, True))
    completed = Event("sterilization_completed", 4.0, {"cycle_id": 1, "duration_s": 600.0})
    printer(EmitEvent(completed))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("case disinfecting, UV ON, roller not disinfected")
    assert lines[1].endswith("case disinfecting: 5:00 left")
    assert lines[2].endswith("case disinfected, UV off, roller disinfected")
    assert lines[3].endswith("completed after 600 s: roller disinfected")
    assert "steril" not in out.getvalue()


def test_the_unsterile_use_alarm_keeps_its_event_name_but_says_disinfection() -> None:
    text = describe(Event("unsterile_use", 1.0, {}))
    assert text.startswith("ALARM use without disinfection")
    assert "steril" not in text


def test_the_service_status_line_says_disinfected(tmp_path: Path) -> None:
    status = StatusFile(tmp_path / "status.json", lambda: 0.0)
    try:
        status(CaseStatus(1.0, "sterile", False, None, True))
        assert status.summary().startswith("case disinfected,")
    finally:
        status.close()


def test_home_assistant_names_say_disinfect_and_the_ids_keep_their_names() -> None:
    components = discovery_config(TOPICS, device_name="Dermaguard", sw_version="0.1.0")["cmps"]
    assert components["sterile"]["name"] == "Disinfected"
    assert components["sterile"]["unique_id"] == "dermaguard_sterile"
    assert components["sterilize"]["name"] == "Disinfect"
    assert components["sterilize"]["command_topic"] == TOPICS.cmd("sterilize")
    assert not [c["name"] for c in components.values() if "steril" in c["name"].lower()]


def test_the_docs_say_disinfection_not_sterility_and_to_clean_first() -> None:
    for doc in ("README.md", "docs/SAFETY.md", "docs/CARE.md"):
        text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
        assert "disinfection, not sterility" in text, doc
        assert "clean the roller" in text.lower(), doc


def test_every_event_type_has_a_name_a_person_reads() -> None:
    """Home Assistant's alerts and the dashboard's event list show these names: an event type
    added without one would stop the MQTT bridge from importing (discovery builds its list)."""
    from dermaguard.core.events import EventType
    from dermaguard.core.words import EVENT_NAMES

    assert sorted(set(EventType) - set(EVENT_NAMES)) == []
