"""JSON Schemas of the inspect and compare JSON output (``imagecomposer schema --inspect``,
``--compare``). The shipped files are generated from the result classes by
:func:`generate` (a test keeps them equal), so the schema and the output cannot drift."""

from __future__ import annotations

import json
import types
import typing
from importlib import resources
from typing import Any

import attrs

from imagecomposer.inspect.compare import CompareReport
from imagecomposer.inspect.report import InspectReport

ROOTS: dict[str, type] = {"inspect": InspectReport, "compare": CompareReport}
TITLES = {"inspect": "imagecomposer inspect --format json",
          "compare": "imagecomposer compare --format json"}


def _type(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type(a, defs) for a in args]}
    if hint is type(None):
        return {"type": "null"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is str:
        return {"type": "string"}
    if hint is Any:
        return {}
    if origin is tuple:
        return {"type": "array", "items": _type(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type(args[1], defs)}
    if attrs.has(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}
            hints = typing.get_type_hints(hint)
            fields = attrs.fields(hint)
            defs[name] = {"type": "object", "additionalProperties": False,
                          "required": [f.name for f in fields],
                          "properties": {f.name: _type(hints[f.name], defs) for f in fields}}
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema type for {hint!r}")


def generate(name: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _type(ROOTS[name], defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://imagecomposer.invalid/schemas/{name}.schema.json",
            "title": TITLES[name], "$ref": root["$ref"], "$defs": dict(sorted(defs.items()))}


def schema_text(name: str) -> str:
    """The shipped schema ``inspect`` or ``compare``, as text."""
    return resources.files(__package__).joinpath(f"{name}.schema.json").read_text()


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(name))
    return data
