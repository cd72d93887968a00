"""The case as drawn in hardware/: switches close to GND, the UV LED's driver is active high,
the lid read by a reed switch and by the microswitch's normally-closed contact."""

from __future__ import annotations

from dermaguard.hw.case_io import CaseWiring

LID, DOCK, UV, SENSOR, CONTACT = 23, 24, 25, 26, 16
WIRING = CaseWiring(
    LID,
    DOCK,
    UV,
    SENSOR,
    lid_active_low=True,
    dock_active_low=True,
    uv_active_high=True,
    lid_contact=CONTACT,
)
