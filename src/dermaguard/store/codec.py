"""How values are written: UTC timestamps and JSON that every consumer can parse."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def iso_utc(wall: float) -> str:
    """Epoch seconds → ISO-8601 UTC with milliseconds and a ``Z`` (``2026-11-25T18:50:23.123Z``)."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_utc(text: str) -> float | None:
    """ISO-8601 (``Z`` or an offset) → epoch seconds; ``None`` if it is not a timestamp."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(data: Mapping[str, Any]) -> str:
    """Compact JSON; NaN and infinities become ``null`` (they are not JSON), other odd values
    their ``str`` — an event is never lost because a field could not be encoded."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(data), separators=(",", ":"), allow_nan=False, default=str)


def loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}
