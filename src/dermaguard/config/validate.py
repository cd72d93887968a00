"""Turn plain data (parsed YAML) into frozen dataclasses, driven by each field's metadata.

The schema's vocabulary is in :mod:`dermaguard.config.fields`. Every problem becomes one message
(:mod:`dermaguard.config.messages`), and all problems are collected in one pass, so a config is
fixed in one edit rather than one error per restart.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from dermaguard.config.fields import FieldInfo, field_infos
from dermaguard.config.messages import (
    bounds_text,
    choices_text,
    expected,
    join_path,
    not_allowed,
    unknown_key,
)

T = TypeVar("T")


class _Invalid:
    """Marks a value that failed validation, so the parent is not built from it.

    A section keeps a best-effort ``partial`` (its valid keys, defaults for the rest) and the
    key paths that were ``bad``, so the rules across keys still run on what is valid and a
    file's errors all come in one pass.
    """

    def __init__(self, partial: object = None, bad: frozenset[str] = frozenset()) -> None:
        self.partial = partial
        self.bad = bad


_INVALID = _Invalid()


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def parse_section(cls: type[T], data: object, path: str, errors: list[str]) -> T | None:
    """Build ``cls`` from ``data``, appending every problem to ``errors``; None if any.

    ``None`` data means an empty section (all defaults), as YAML gives for a key whose
    settings are all commented out.
    """
    value = _parse_section(cls, data, path, errors)
    return None if isinstance(value, _Invalid) else value


def _parse_section(cls: type[T], data: object, path: str, errors: list[str]) -> T | _Invalid:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        errors.append(not_allowed(path, data, "must be a mapping"))
        return _INVALID
    infos = {info.name: info for info in field_infos(cls)}
    values: dict[str, Any] = {}
    bad: set[str] = set()  # key paths whose value is wrong (a default stands in for each)
    valid = True
    for key, raw in data.items():
        info = infos.get(key) if isinstance(key, str) else None
        if info is None:
            errors.append(unknown_key(path, key, infos))
            valid = False
            continue
        value = _parse_value(info, raw, join_path(path, key), errors)
        if isinstance(value, _Invalid):
            valid = False
            if value.partial is not None:  # a section: its own bad keys, the rest is usable
                bad.update(value.bad)
                values[key] = value.partial
            else:
                bad.add(join_path(path, key))
        else:
            values[key] = value
    for name, info in infos.items():
        if info.required and name not in data:
            errors.append(f"{join_path(path, name)}: missing (required)")
            valid = False
            bad.add(join_path(path, name))
    try:
        obj = cls(**values)
    except (TypeError, ValueError):  # no stand-in for a missing required key
        return _INVALID
    check = getattr(obj, "_check", None)
    problems: list[str] = check(path) if check is not None else []
    # A rule about a key that is already wrong would only repeat (or guess at) that error.
    problems = [p for p in problems if not any(_names(p, key) for key in bad)]
    errors.extend(problems)
    if not valid or problems:
        return _Invalid(obj, frozenset(bad))
    return obj


def _names(message: str, key: str) -> bool:
    """Whether ``message`` names the key path ``key`` (or a key inside it)."""
    return re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message) is not None


def _parse_value(info: FieldInfo, raw: object, path: str, errors: list[str]) -> Any:
    if info.base is tuple:
        return _parse_variants(info, raw, path, errors)
    if dataclasses.is_dataclass(info.base):
        if raw is None and info.optional:
            return None
        return _parse_section(info.base, raw, path, errors)
    problem = _scalar_problem(info, raw)
    if problem:
        # A secret (a password) is never echoed, not even in an error about its type.
        shown = "(hidden)" if info.meta.get("secret") else raw
        errors.append(not_allowed(path, shown, problem))
        return _INVALID
    if info.base is float and isinstance(raw, int | float):
        return float(raw)  # an int is welcome where a float is expected
    return raw


def _scalar_problem(info: FieldInfo, raw: object) -> str:
    """Why ``raw`` does not fit a scalar field ('' when it does)."""
    if raw is None:
        return "" if info.optional else f"must be {expected(info)}"
    base, meta = info.base, info.meta
    if base is bool:
        fits = isinstance(raw, bool)
    elif base is int:
        fits = isinstance(raw, int) and not isinstance(raw, bool)
    elif base is float:
        fits = isinstance(raw, int | float) and not isinstance(raw, bool)
    else:
        fits = isinstance(raw, str)
    if not fits:
        hint = _number_as_text_hint(base, raw) or _text_as_number_hint(info, raw)
        return f"must be {expected(info)}{hint}"
    if base is float and isinstance(raw, int | float) and not _is_finite(raw):
        return f"must be {expected(info, finite=True)}"
    if info.choices is not None and raw not in info.choices:
        hint = ""
        if isinstance(raw, str) and len(raw) <= 100:
            names = [c for c in info.choices if isinstance(c, str)]
            close = difflib.get_close_matches(raw.lower(), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"must be one of {choices_text(info.choices)}{hint}"
    if isinstance(raw, int | float) and not _in_bounds(raw, meta):
        return f"must be {bounds_text(meta)}"
    pattern = meta.get("pattern")
    if isinstance(raw, str) and pattern is not None and not re.fullmatch(pattern, raw):
        return f"must be {meta.get('pattern_doc') or 'a string matching ' + pattern}"
    return ""


def _text_as_number_hint(info: FieldInfo, raw: object) -> str:
    """Point out text YAML read as a number (``version: 5``): one of the choices, unquoted."""
    if info.base is not str or not isinstance(raw, int | float) or isinstance(raw, bool):
        return ""
    if info.choices is None or str(raw) not in info.choices:
        return ""
    return f' (read as a number; write it quoted: "{raw}")'


def _number_as_text_hint(base: type, raw: object) -> str:
    """Point out a number YAML read as text: quoted, or PyYAML's ``1e3`` (it needs ``1.0e+3``)."""
    if base not in (int, float) or not isinstance(raw, str) or len(raw) > 40:
        return ""
    try:
        number: float = int(raw) if base is int else float(raw)
    except ValueError:
        return ""
    return f" (read as text; write {number!r})" if _is_finite(number) else ""


def _in_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    return not (
        ("min" in meta and value < meta["min"])
        or ("max" in meta and value > meta["max"])
        or ("min_exclusive" in meta and value <= meta["min_exclusive"])
        or ("max_exclusive" in meta and value >= meta["max_exclusive"])
    )


def _parse_variants(info: FieldInfo, raw: object, path: str, errors: list[str]) -> Any:
    """An ESPHome-style list: each item is ``{tag: {parameters}}`` (parameters may be null)."""
    variants: Mapping[str, type] = info.meta["variants"]
    tag_field = info.meta.get("tag_field", "kind")
    if not isinstance(raw, list | tuple):
        errors.append(not_allowed(path, raw, "must be a list ([] for none)"))
        return _INVALID
    items: list[Any] = []
    valid = True
    for index, entry in enumerate(raw):
        entry_path = f"{path}[{index}]"
        if not isinstance(entry, Mapping) or len(entry) != 1:
            tags = ", ".join(variants)
            errors.append(not_allowed(entry_path, entry, f"must be a mapping with one key: {tags}"))
            valid = False
            continue
        ((tag, params),) = entry.items()
        params_cls = variants.get(tag) if isinstance(tag, str) else None
        if params_cls is None:
            errors.append(unknown_key(entry_path, tag, variants))
            valid = False
            continue
        parsed = _parse_section(params_cls, params, join_path(entry_path, tag), errors)
        if isinstance(parsed, _Invalid):
            valid = False
            continue
        fields = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
        assert info.item is not None
        items.append(info.item(**{tag_field: tag}, **fields))
    return tuple(items) if valid else _INVALID
