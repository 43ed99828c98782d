"""JSON Schema validation that reports *every* problem, with positions.

fastjsonschema compiles the schema once into fast Python code, but stops at the first error.
To collect them all, :func:`check` validates a scratch copy of the data, records the error,
repairs that spot (drops unknown keys, fills a missing field or replaces a bad value with a
valid sample derived from the schema) and validates again, until the copy passes. Messages are
written here, not taken from fastjsonschema, so they can be precise and never echo secrets.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from imagecomposer.foundation import settings
from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.yamldoc.positions import Node
from imagecomposer.foundation.yamldoc.sourcemap import PathKey, SourceMap, format_path
from imagecomposer.foundation.yamldoc.suggest import did_you_mean

Validator = Callable[[Any], Any]

_SECRET = re.compile(r"password|passphrase|content|secret", re.IGNORECASE)
_MAX_ROUNDS = 200


@cache
def load_schema(package: str, name: str = "schema.json") -> dict[str, Any]:
    """The schema file ``name`` of ``package``, its ``"x-enum"`` names filled with the values
    of the settings registry (:func:`imagecomposer.foundation.settings.fill_enums`)."""
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = settings.fill_enums(json.loads(text))
    return schema


def schema_text(package: str, name: str = "schema.json") -> str:
    """The filled schema as JSON text (what ``imagecomposer schema`` prints)."""
    return json.dumps(load_schema(package, name), indent=2, ensure_ascii=False) + "\n"


@cache
def compiled(package: str, name: str = "schema.json") -> Validator:
    """The schema of ``package``, compiled once per process."""
    # fastjsonschema rewrites the "$ref"s of the dict it compiles into absolute URIs: give it
    # a copy, so the loaded schema (printed, and read by subschema()) keeps "#/$defs/..."
    validator: Validator = fastjsonschema.compile(copy.deepcopy(load_schema(package, name)))
    return validator


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def subschema(root: dict[str, Any], path: PathKey) -> dict[str, Any] | None:
    """The schema that governs the value at ``path`` (first matching branch of anyOf)."""
    schema = resolve(root, root)
    for part in path:
        schema = resolve(schema, root)
        if "anyOf" in schema:
            branches = [resolve(b, root) for b in schema["anyOf"]]
            wanted = "array" if isinstance(part, int) else "object"
            schema = next((b for b in branches if b.get("type") == wanted), branches[0])
        if isinstance(part, int):
            schema = schema.get("items", {})
        else:
            props = schema.get("properties", {})
            if part in props:
                schema = props[part]
            elif isinstance(schema.get("additionalProperties"), dict):
                schema = schema["additionalProperties"]
            else:
                return None
    return resolve(schema, root)


def coerce_strings(node: Node, root: dict[str, Any], path: PathKey = ()) -> None:
    """Read unquoted numbers as the text the user wrote where the schema wants a string.

    ``version: 22.04`` must stay "22.04" (a float would print 22.04 but "22.10" would become
    22.1), and ``mode: 0644`` must stay "0644". Also drops empty (null) values where the
    schema wants a mapping or a list: an empty section means "unset".
    """
    if isinstance(node.value, dict):
        for key, child in list(node.value.items()):
            if child.value is None and child.style is None:
                # ``customizations:`` with everything below commented out means "unset".
                schema = subschema(root, (*path, key))
                if schema is not None and schema.get("type") in ("object", "array"):
                    del node.value[key]
                    continue
            coerce_strings(child, root, (*path, key))
        return
    if isinstance(node.value, list):
        for i, child in enumerate(node.value):
            coerce_strings(child, root, (*path, i))
        return
    if isinstance(node.value, bool | int | float) and node.raw is not None:
        schema = subschema(root, path)
        if schema is not None and schema.get("type") == "string":
            node.value = node.raw


def sample(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value valid for ``schema``; used to patch a reported spot and carry on."""
    schema = resolve(schema, root)
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return sample(schema[key][0], root)
    if schema.get("examples"):
        return copy.deepcopy(schema["examples"][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample(props.get(name, {}), root) for name in schema.get("required", [])}
    if kind == "array":
        return [sample(schema.get("items", {}), root)] * int(schema.get("minItems", 0))
    if kind == "string":
        return "x" * max(int(schema.get("minLength", 1)), 1)
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def _parse_name(name: str) -> PathKey:
    """fastjsonschema's ``data.a[0].b`` → ``("a", 0, "b")``."""
    out: list[str | int] = []
    for token in re.findall(r"\.([^.\[]+)|\[(\d+)\]", name.removeprefix("data")):
        key, number = token
        out.append(int(number) if number else key)
    return tuple(out)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "object": "a mapping", "array": "a list",
               "null": "null"}


def _message(rule: str, value: Any, schema: dict[str, Any], path: PathKey,
             root: dict[str, Any]) -> str:
    secret = any(isinstance(p, str) and _SECRET.search(p) for p in path)
    shown = "" if secret or not isinstance(value, str | int | float) else f" {value!r}"
    if rule == "type":
        wanted: Any = schema.get("type")
        names = [str(w) for w in (wanted if isinstance(wanted, list) else [wanted])]
        words = [_TYPE_WORDS.get(w, w) for w in names]
        return f"must be {' or '.join(words)}, not {_describe(value)}"
    if rule == "enum":
        options = [str(o) for o in schema["enum"]]
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"invalid value{shown}: must be one of {', '.join(options)}{hint}"
    if rule in ("anyOf", "oneOf", "const"):
        described = schema.get("description", "")
        if "enum" in str(schema.get(rule)):
            options = [str(o) for b in schema[rule] for o in resolve(b, root).get("enum", [])]
            hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
            return f"invalid value{shown}: must be one of {', '.join(options)} or a UUID{hint}"
        return f"invalid value{shown}" + (f": {described}" if described else "")
    if rule == "pattern":
        example = (schema.get("examples") or [None])[0]
        tail = f" (for example '{example}')" if example is not None else ""
        return f"invalid value{shown}{tail}"
    if rule == "minLength":
        return "must not be empty"
    if rule == "maxLength":
        return f"must be at most {schema['maxLength']} characters long"
    if rule == "minItems":
        return f"must have at least {schema['minItems']} item(s)"
    if rule == "uniqueItems":
        return "must not contain duplicates"
    if rule == "minimum":
        return f"must be at least {schema['minimum']}"
    if rule == "maximum":
        return f"must be at most {schema['maximum']}"
    if rule == "propertyNames":
        return f"invalid name{shown}: use letters, digits, '_', '.', '-'"
    return f"invalid value ({rule})"


def _locate(data: Any, path: PathKey) -> tuple[Any, str | int | None]:
    """The parent container of ``path`` and the last key (None for the root)."""
    if not path:
        return None, None
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    return parent, path[-1]


def check(data: Any, validator: Validator, root: dict[str, Any], where: SourceMap) -> list[Problem]:
    """Every schema problem of ``data``, positioned with ``where``."""
    problems: list[Problem] = []
    scratch = copy.deepcopy(data)
    seen: set[tuple[str, str]] = set()
    for _ in range(_MAX_ROUNDS):
        try:
            validator(scratch)
            return problems
        except fastjsonschema.JsonSchemaValueException as exc:
            path = _parse_name(exc.name or "data")
            rule = str(exc.rule)
            schema: dict[str, Any] = exc.definition or {}
            mark = (format_path(path), rule)
            if mark in seen:
                return problems
            seen.add(mark)
            value = exc.value
            parent, last = _locate(scratch, path)
            if rule == "additionalProperties" and isinstance(value, dict):
                known = list(schema.get("properties", {}))
                for key in [k for k in value if k not in known]:
                    problems.append(where.problem(
                        (*path, key), f"unknown field '{key}'{did_you_mean(key, known)}",
                        at_key=True))
                    del value[key]
                continue
            if rule == "required" and isinstance(value, dict):
                for key in schema.get("required", []):
                    if key not in value:
                        problems.append(where.problem(path, f"missing required field '{key}'",
                                                      at_key=True))
                        value[key] = sample(schema.get("properties", {}).get(key, {}), root)
                continue
            if rule == "propertyNames" and isinstance(value, dict):
                for key in list(value):
                    if not re.match(schema["propertyNames"].get("pattern", ""), key):
                        problems.append(where.problem((*path, key), _message(
                            rule, key, schema, path, root), at_key=True))
                        del value[key]
                continue
            problems.append(where.problem(path, _message(rule, value, schema, path, root)))
            if parent is None:
                return problems
            parent[last] = sample(schema, root)
    return problems
