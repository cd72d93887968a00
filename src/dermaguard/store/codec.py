"""How values are written: JSON that every consumer can parse (timestamps: common/timefmt.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


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
