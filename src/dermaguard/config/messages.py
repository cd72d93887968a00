"""Words for the validator's messages and the reference: key paths, values, what is allowed.

Every problem becomes one message naming the key path, the bad value and what is allowed
(:func:`not_allowed`); values are shown as a person wrote them in YAML, short and never raising.
"""

from __future__ import annotations

import base64
import datetime
import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dermaguard.config.fields import FieldInfo

_ROOT = "top level"


def join_path(path: str, key: object) -> str:
    """The key path of ``key`` inside ``path`` (``pressure`` + ``zones`` → ``pressure.zones``)."""
    name = key if isinstance(key, str) else show(key)
    return f"{path}.{name}" if path else name


def not_allowed(path: str, value: object, requirement: str) -> str:
    """The standard message: ``path: value is not allowed: requirement``."""
    return f"{path or _ROOT}: {show(value)} is not allowed: {requirement}"


def unknown_key(path: str, key: object, known: Iterable[str]) -> str:
    """Name an unknown key and suggest the closest known one, or list them all."""
    names = list(known)
    close: list[str] = []
    if isinstance(key, str) and len(key) <= 100:
        close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(names)
    return f"{join_path(path, key)}: unknown key ({hint})"


def show(value: object, limit: int = 60) -> str:
    """A short YAML-like rendering of a value for messages (never raises, never huge)."""
    text = render(value, quote=True, depth=3)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(value: object, *, quote: bool, depth: int | None) -> str:
    """A value as YAML would show it; ``quote`` marks strings, ``depth`` cuts nesting (None:
    show it all, for the reference's defaults)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than int -> str allows
            return "<integer too large to show>"
    if isinstance(value, str):
        return repr(value[:200]) if quote else value
    if isinstance(value, Mapping | list | tuple):
        if depth == 0:
            return "{…}" if isinstance(value, Mapping) else "[…]"
        inner = None if depth is None else depth - 1
        cap = 5 if depth is not None else None
        if isinstance(value, Mapping):
            items = [
                f"{render(k, quote=False, depth=inner)}: {render(v, quote=quote, depth=inner)}"
                for k, v in list(value.items())[:cap]
            ]
            more = ", …" if cap is not None and len(value) > cap else ""
            return "{" + ", ".join(items) + more + "}"
        items = [render(v, quote=quote, depth=inner) for v in list(value)[:cap]]
        more = ", …" if cap is not None and len(value) > cap else ""
        return "[" + ", ".join(items) + more + "]"
    return _render_yaml_scalar(value)


def _render_yaml_scalar(value: object) -> str:
    """Values YAML builds into Python objects, shown as a person wrote them in the file."""
    if isinstance(value, datetime.date):  # a datetime too
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return "!!binary " + base64.b64encode(bytes(value[:150])).decode()
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(str(v)[:40] for v in list(value)[:5])) + "}"
    if isinstance(value, float):
        return repr(value)
    return str(value)[:200]


def bounds_text(meta: Mapping[str, Any]) -> str:
    """A field's numeric bounds in words (``>= 1 and <= 60``); '' when it has none."""
    parts = []
    if "min" in meta:
        parts.append(f">= {meta['min']}")
    if "min_exclusive" in meta:
        parts.append(f"> {meta['min_exclusive']}")
    if "max" in meta:
        parts.append(f"<= {meta['max']}")
    if "max_exclusive" in meta:
        parts.append(f"< {meta['max_exclusive']}")
    return " and ".join(parts)


def choices_text(choices: Sequence[Any]) -> str:
    """The allowed values, listed as a person would write them."""
    return ", ".join(render(choice, quote=False, depth=None) for choice in choices)


def expected(info: FieldInfo, *, finite: bool = False) -> str:
    """What a value of this field must be, for a type error."""
    if info.choices is not None:
        text = f"one of {choices_text(info.choices)}"
    elif info.base is bool:
        text = "true or false"
    elif info.base is str:
        text = "a string"
    else:
        noun = "an integer" if info.base is int else "a finite number" if finite else "a number"
        bounds = bounds_text(info.meta)
        text = f"{noun} {bounds}" if bounds else noun
    return f"{text} or null" if info.optional else text
