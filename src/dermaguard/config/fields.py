"""Turn plain data (parsed YAML) into frozen dataclasses, driven by each field's metadata.

This module knows nothing about dermaguard's settings. A configuration section is a frozen
dataclass whose fields carry ``dataclasses.field(metadata=meta(...))``; the constraints live in
the field metadata, so adding a section never means touching the validator. A section may also
define ``_check(self, path) -> list[str]`` for rules across its fields; it is called, with the
section's key path, once every value inside the section is valid (a rule cannot be judged
against values that are already wrong).

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, a ``Literal``
of one of those, any of them ``| None``, a nested section (a dataclass), and a tuple of
dataclasses written as an ESPHome-style list of one-key mappings (metadata ``variants``).

Every problem becomes one message naming the key path, the bad value and what is allowed; all
problems are collected in one pass.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import difflib
import inspect
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")

#: The metadata keys a field may declare; anything else is a typo in the schema.
METADATA_KEYS = frozenset(
    {
        "doc",  # one sentence for the configuration reference
        "secret",  # never echo the value (a password), not even in an error
        "choices",  # allowed values, in the order they are listed to the user
        "min",  # inclusive lower bound
        "max",  # inclusive upper bound
        "min_exclusive",  # exclusive lower bound
        "max_exclusive",  # exclusive upper bound
        "pattern",  # regular expression a string must match in full
        "pattern_doc",  # what the pattern means, in words
        "allowed",  # overrides the generated "allowed" text of the reference
        "variants",  # tag -> parameter dataclass, for a list of one-key mappings
        "tag_field",  # the item field that receives the tag (default "kind")
    }
)
_SCALARS: tuple[type, ...] = (bool, int, float, str)
_ROOT = "top level"


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


def meta(
    *,
    doc: str,
    choices: Sequence[object] | None = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: float | None = None,
    max_exclusive: float | None = None,
    pattern: str | None = None,
    pattern_doc: str | None = None,
    allowed: str | None = None,
    variants: Mapping[str, type] | None = None,
    tag_field: str | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """Field metadata: one-line documentation and constraints, for ``field(metadata=...)``.

    Keyword arguments (rather than a bare dict) make a misspelt constraint a TypeError
    instead of a rule that silently never runs.
    """
    given = {
        "doc": doc,
        "choices": tuple(choices) if choices is not None else None,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "max_exclusive": max_exclusive,
        "pattern": pattern,
        "pattern_doc": pattern_doc,
        "allowed": allowed,
        "variants": dict(variants) if variants is not None else None,
        "tag_field": tag_field,
        "secret": secret or None,
    }
    return {key: value for key, value in given.items() if value is not None}


# ---------------------------------------------------------------------------------------------
# Schema introspection


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """What the validator needs to know about one field, worked out once per class."""

    name: str
    base: type  # bool, int, float, str, a dataclass, or tuple (a list of variants)
    optional: bool
    choices: tuple[Any, ...] | None
    meta: Mapping[str, Any]
    field: dataclasses.Field[Any]
    item: type | None = None  # the item dataclass of a list of variants

    @property
    def required(self) -> bool:
        return (
            self.field.default is dataclasses.MISSING
            and self.field.default_factory is dataclasses.MISSING
        )

    def default(self) -> Any:
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default


_INFOS: dict[type, tuple[FieldInfo, ...]] = {}


def field_infos(cls: type) -> tuple[FieldInfo, ...]:
    """Describe the init fields of a section class; raises TypeError for an unsupported schema."""
    infos = _INFOS.get(cls)
    if infos is None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        hints = get_type_hints(cls)
        fields = dataclasses.fields(cls)
        infos = _INFOS[cls] = tuple(_field_info(cls, f, hints[f.name]) for f in fields if f.init)
    return infos


def _field_info(cls: type, f: dataclasses.Field[Any], hint: Any) -> FieldInfo:
    where = f"{cls.__name__}.{f.name}"
    unknown = set(f.metadata) - METADATA_KEYS
    if unknown:
        raise TypeError(f"{where}: unknown metadata {sorted(unknown)}")
    optional = False
    if get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(rest) != 1 or len(rest) == len(get_args(hint)):
            raise TypeError(f"{where}: only 'X | None' unions are supported, not {hint}")
        hint, optional = rest[0], True
    choices = f.metadata.get("choices")
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        kinds = {type(choice) for choice in choices}
        if len(kinds) != 1 or not kinds <= set(_SCALARS):
            raise TypeError(f"{where}: a Literal must list values of one scalar type")
        return FieldInfo(f.name, kinds.pop(), optional, choices, f.metadata, f)
    if get_origin(hint) is tuple:
        args = get_args(hint)
        variants = f.metadata.get("variants")
        if len(args) != 2 or args[1] is not Ellipsis or not dataclasses.is_dataclass(args[0]):
            raise TypeError(f"{where}: a tuple field must be tuple[SomeDataclass, ...]")
        if not variants:
            raise TypeError(f"{where}: a tuple field needs 'variants' metadata")
        item = typing.cast(type, args[0])
        return FieldInfo(f.name, tuple, optional, None, f.metadata, f, item=item)
    if hint in _SCALARS or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return FieldInfo(f.name, hint, optional, choices, f.metadata, f)
    raise TypeError(f"{where}: unsupported field type {hint}")


# ---------------------------------------------------------------------------------------------
# Messages


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
    text = _render(value, quote=True, depth=3)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _render(value: object, *, quote: bool, depth: int | None) -> str:
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
                f"{_render(k, quote=False, depth=inner)}: {_render(v, quote=quote, depth=inner)}"
                for k, v in list(value.items())[:cap]
            ]
            more = ", …" if cap is not None and len(value) > cap else ""
            return "{" + ", ".join(items) + more + "}"
        items = [_render(v, quote=quote, depth=inner) for v in list(value)[:cap]]
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


def _bounds(meta: Mapping[str, Any]) -> str:
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


def _choices_text(choices: Sequence[Any]) -> str:
    return ", ".join(_render(choice, quote=False, depth=None) for choice in choices)


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def _expected(info: FieldInfo, *, finite: bool = False) -> str:
    """What a value of this field must be, for a type error."""
    if info.choices is not None:
        text = f"one of {_choices_text(info.choices)}"
    elif info.base is bool:
        text = "true or false"
    elif info.base is str:
        text = "a string"
    else:
        noun = "an integer" if info.base is int else "a finite number" if finite else "a number"
        bounds = _bounds(info.meta)
        text = f"{noun} {bounds}" if bounds else noun
    return f"{text} or null" if info.optional else text


# ---------------------------------------------------------------------------------------------
# Parsing


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
        return "" if info.optional else f"must be {_expected(info)}"
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
        return f"must be {_expected(info)}{_number_as_text_hint(base, raw)}"
    if base is float and isinstance(raw, int | float) and not _is_finite(raw):
        return f"must be {_expected(info, finite=True)}"
    if info.choices is not None and raw not in info.choices:
        hint = ""
        if isinstance(raw, str) and len(raw) <= 100:
            names = [c for c in info.choices if isinstance(c, str)]
            close = difflib.get_close_matches(raw.lower(), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"must be one of {_choices_text(info.choices)}{hint}"
    if isinstance(raw, int | float) and not _in_bounds(raw, meta):
        return f"must be {_bounds(meta)}"
    pattern = meta.get("pattern")
    if isinstance(raw, str) and pattern is not None and not re.fullmatch(pattern, raw):
        return f"must be {meta.get('pattern_doc') or 'a string matching ' + pattern}"
    return ""


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


# ---------------------------------------------------------------------------------------------
# Back to plain data, and the reference


def to_data(obj: object) -> dict[str, Any]:
    """Plain data (dicts, lists, scalars) that :func:`parse_section` turns back into ``obj``."""
    return {
        info.name: _value_to_data(info, getattr(obj, info.name)) for info in field_infos(type(obj))
    }


def _value_to_data(info: FieldInfo, value: Any) -> Any:
    if value is None:
        return None
    if info.base is tuple:
        variants: Mapping[str, type] = info.meta["variants"]
        tag_field = info.meta.get("tag_field", "kind")
        out = []
        for item in value:
            tag = getattr(item, tag_field)
            params = {f.name: getattr(item, f.name) for f in dataclasses.fields(variants[tag])}
            out.append({tag: params})
        return out
    if dataclasses.is_dataclass(info.base):
        return to_data(value)
    return value


def reference_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key path, default, allowed, doc) for every key of ``cls``, sections included, in order."""
    rows: list[tuple[str, str, str, str]] = []
    for info in field_infos(cls):
        path = join_path(prefix, info.name)
        doc = info.meta.get("doc", "")
        if info.base is tuple:
            variants: Mapping[str, type] = info.meta["variants"]
            default = _render(_value_to_data(info, info.default()), quote=False, depth=None)
            allowed = info.meta.get("allowed") or "list of one-key mappings: " + ", ".join(variants)
            rows.append((path, default, allowed, doc))
            for tag, params_cls in variants.items():
                tag_path = f"{path}[].{tag}"
                summary = (inspect.getdoc(params_cls) or "").split("\n")[0]
                rows.append((tag_path, "", "mapping or null", summary))
                rows.extend(reference_rows(params_cls, tag_path))
        elif dataclasses.is_dataclass(info.base):
            rows.append((path, "", "mapping", doc))
            rows.extend(reference_rows(info.base, path))
        else:
            default = _render(info.default(), quote=False, depth=None)
            rows.append((path, default, info.meta.get("allowed") or _allowed(info), doc))
    return rows


def _allowed(info: FieldInfo) -> str:
    if info.choices is not None:
        text = _choices_text(info.choices)
    elif info.base is bool:
        text = "true, false"
    elif info.base is str:
        text = info.meta.get("pattern_doc") or "string"
    else:
        noun = "integer" if info.base is int else "number"
        bounds = _bounds(info.meta)
        text = f"{noun} {bounds}" if bounds else noun
    return f"{text}, or null" if info.optional else text
