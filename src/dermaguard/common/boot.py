"""Which boot of the machine this is: the kernel's random boot id, new at every boot.

Monotonic time only means something within one boot, and data the kernel had not yet written to
the card survives a crash of the process but not a power cut; both questions are "is this still
the same boot?".
"""

from __future__ import annotations

from pathlib import Path

#: Linux's boot id: a random UUID chosen at every boot.
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_PATH) -> str | None:
    """This boot's id, or ``None`` where the system has none (then every start counts as a new
    boot, which is the safe assumption)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None
