"""How a setting is declared (:func:`setting`), how a config dict becomes dataclasses and back
(:func:`from_dict`, :func:`to_plain`), and the JSON schema generated from the dataclasses."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field, fields
from typing import Any, Union

from leap.errors import LeapError


def setting(default: Any = dataclasses.MISSING, doc: str = "", factory: Any = None, **schema: Any) -> Any:
    """A dataclass field with its documentation and extra JSON-schema constraints."""
    meta = {"doc": doc, "schema": schema}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True  # noqa: UP007 - built at run time
    return tp, False


def _convert(tp: Any, value: Any, where: str) -> Any:
    tp, _ = _strip_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where) for v in value)
    return value


def from_dict(cls: type, d: dict, where: str = "") -> Any:
    """``cls(**d)`` with nested dataclasses and tuples built, and unknown keys named."""
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise LeapError(f"{where or cls.__name__}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise LeapError(f"{where or cls.__name__}: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    hints = _hints(cls)
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in d.items()})


def to_plain(obj: Any) -> Any:
    """A dataclass (or nested structure) as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


_SCALARS = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict:
    tp, optional = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = dataclass_schema(tp, defs)
        ref = {"$ref": f"#/definitions/{name}"}
        return {"anyOf": [ref, {"type": "null"}]} if optional else ref
    origin = typing.get_origin(tp)
    if tp in _SCALARS:
        t = _SCALARS[tp]
        return {"type": [t, "null"] if optional else t}
    if origin is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        s = {"type": ["array", "null"] if optional else "array"}
        if args:
            s["items"] = _type_schema(args[0], defs)
        return s
    if origin is dict:
        _, val = typing.get_args(tp)
        s = {"type": ["object", "null"] if optional else "object"}
        if val is not Any:
            s["additionalProperties"] = _type_schema(val, defs)
        return s
    return {}


def dataclass_schema(cls: type, defs: dict[str, Any] | None = None) -> dict:
    """JSON schema of a config dataclass: every field optional (defaults fill in), unknown
    keys rejected, the field docs as descriptions, defaults from the dataclass."""
    defs = {} if defs is None else defs
    hints = _hints(cls)
    props = {}
    defaults = (
        to_plain(cls())
        if all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING for f in fields(cls)
        )
        else {}
    )
    for f in fields(cls):
        s = _type_schema(hints[f.name], defs)
        extra = dict(f.metadata.get("schema", {}))
        if "ref" in extra:
            s = {"$ref": f"#/definitions/{extra.pop('ref')}"}
        items = extra.pop("items", None)
        if items:
            s.setdefault("items", {}).update(items)
        if "enum" in extra:
            s.pop("type", None)
        s.update(extra)
        if f.metadata.get("doc"):
            s["description"] = f.metadata["doc"]
        if f.name in defaults and not dataclasses.is_dataclass(_strip_optional(hints[f.name])[0]) and "$ref" not in s:
            s["default"] = defaults[f.name]
        props[f.name] = s
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    out = {"type": "object", "additionalProperties": False, "description": doc, "properties": props}
    required = [
        f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if required:
        out["required"] = required
    return out
