"""From a parsed section back to plain data (for dumping), and the reference of a schema."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from dermaguard.config.fields import FieldInfo, field_infos
from dermaguard.config.messages import bounds_text, choices_text, join_path, render


def to_data(obj: object) -> dict[str, Any]:
    """Plain data (dicts, lists, scalars) that
    :func:`~dermaguard.config.validate.parse_section` turns back into ``obj``."""
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
            default = render(_value_to_data(info, info.default()), quote=False, depth=None)
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
            default = render(info.default(), quote=False, depth=None)
            rows.append((path, default, info.meta.get("allowed") or _allowed(info), doc))
    return rows


def _allowed(info: FieldInfo) -> str:
    if info.choices is not None:
        text = choices_text(info.choices)
    elif info.base is bool:
        text = "true, false"
    elif info.base is str:
        text = info.meta.get("pattern_doc") or "string"
    else:
        noun = "integer" if info.base is int else "number"
        bounds = bounds_text(info.meta)
        text = f"{noun} {bounds}" if bounds else noun
    return f"{text}, or null" if info.optional else text
