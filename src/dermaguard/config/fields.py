"""The schema's vocabulary: field metadata, and what the validator learns from a field.

This module knows nothing about dermaguard's settings. A configuration section is a frozen
dataclass whose fields carry ``dataclasses.field(metadata=meta(...))``; the constraints live in
the field metadata, so adding a section never means touching the validator
(:mod:`dermaguard.config.validate`). A section may also define ``_check(self, path) ->
list[str]`` for rules across its fields; it is called, with the section's key path, once every
value inside the section is valid (a rule cannot be judged against values that are already
wrong).

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, a ``Literal``
of one of those, any of them ``| None``, a nested section (a dataclass), and a tuple of
dataclasses written as an ESPHome-style list of one-key mappings (metadata ``variants``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin, get_type_hints

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

#: A ``pattern`` for a string that must not be empty or blank (a path, a name).
NON_EMPTY = r"(?s).*\S.*"


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
