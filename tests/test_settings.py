"""One settings registry (imagecomposer.foundation.settings): every enum of both JSON Schemas,
every command-line choice and every Literal of the typed models comes from it."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import types
import typing
from collections.abc import Iterator
from importlib import resources
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import pytest

from imagecomposer import families
from imagecomposer.cli.main import build_parser, main
from imagecomposer.config import model as config_model
from imagecomposer.config.model import Config
from imagecomposer.export import formats as export_formats
from imagecomposer.foundation import settings
from imagecomposer.foundation.yamldoc import schemacheck
from imagecomposer.lock import Lock
from imagecomposer.spec import combinations, schema_text
from imagecomposer.spec import model as spec_model
from imagecomposer.spec.model import Spec

SCHEMAS = ("imagecomposer.spec", "imagecomposer.config")
REGISTRY_LITERALS = [value for value in vars(settings).values()
                     if get_origin(value) is Literal]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def raw_schema(package: str) -> Any:
    return json.loads(resources.files(package).joinpath("schema.json").read_text())


def test_every_literal_has_its_tuple() -> None:
    tuples = {name: value for name, value in vars(settings).items()
              if name.isupper() and isinstance(value, tuple)}
    assert len(REGISTRY_LITERALS) == len(tuples) == len(settings.ENUMS)
    for literal in REGISTRY_LITERALS:
        assert any(values == get_args(literal) for values in tuples.values()), literal
    assert set(map(id, settings.ENUMS.values())) == set(map(id, tuples.values()))


@pytest.mark.parametrize("package", SCHEMAS)
def test_schema_files_name_registry_enums_only(package: str) -> None:
    named = []
    for path, node in walk(raw_schema(package)):
        assert "enum" not in node, f"{package} {path}: a value list of its own"
        if settings.ENUM_KEY in node:
            assert node[settings.ENUM_KEY] in settings.ENUMS, path
            named.append(node[settings.ENUM_KEY])
    assert named


@pytest.mark.parametrize("package", SCHEMAS)
def test_loaded_schema_enums_are_the_registry_values(package: str) -> None:
    loaded = schemacheck.load_schema(package)
    enums = [(path, node) for path, node in walk(loaded) if "enum" in node]
    assert enums and not [p for p, n in walk(loaded) if settings.ENUM_KEY in n]
    for path, node in enums:
        assert tuple(node["enum"]) in settings.ENUMS.values(), path


def test_printed_schema_has_the_registry_enums(capsys: pytest.CaptureFixture[str]) -> None:
    schemacheck.compiled("imagecomposer.spec")  # compiling must not change what is printed
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(schema_text()) == schemacheck.load_schema("imagecomposer.spec")
    output = printed["$defs"]["output"]["properties"]
    assert output["formats"]["items"]["enum"] == list(settings.FORMATS)
    assert output["compression"]["enum"] == list(settings.COMPRESSIONS)
    refs = [node["$ref"] for _, node in walk(printed) if "$ref" in node]
    assert refs and all(ref.startswith("#/$defs/") for ref in refs)


def test_fill_enums() -> None:
    assert settings.fill_enums({"a": [{"x-enum": "sbom_formats", "default": "spdx"}]}) == \
        {"a": [{"enum": ["spdx", "cyclonedx"], "default": "spdx"}]}
    with pytest.raises(KeyError):
        settings.fill_enums({"x-enum": "colours"})


def choice_actions(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for where, found in choice_actions(sub):
                    yield f"{name} {where}", found
        elif action.choices is not None:
            yield "/".join(action.option_strings) or action.dest, action


def test_every_cli_choice_is_a_registry_tuple() -> None:
    found = list(choice_actions(build_parser()))
    assert len(found) >= 9  # log level, stages x2, export formats/compression, sbom, inspect...
    for where, action in found:
        assert any(action.choices is values for values in settings.ENUMS.values()), where


def literals(annotation: Any) -> Iterator[Any]:
    """The Literal types inside ``annotation`` (through unions, tuples, dicts)."""
    if get_origin(annotation) is Literal:
        yield annotation
    elif get_origin(annotation) in (Union, types.UnionType, tuple, dict):
        for arg in get_args(annotation):
            yield from literals(arg)


def attrs_classes(annotation: Any) -> Iterator[type]:
    if isinstance(annotation, type) and attrs.has(annotation):
        yield annotation
    for arg in get_args(annotation):
        yield from attrs_classes(arg)


def model_literals(root: type) -> list[tuple[str, Any]]:
    seen: set[type] = set()
    found: list[tuple[str, Any]] = []
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            hint = hints[field.name]
            found += [(f"{cls.__name__}.{field.name}", lit) for lit in literals(hint)]
            todo += attrs_classes(hint)
    return found


@pytest.mark.parametrize("model", [Spec, Config, Lock])
def test_every_model_literal_is_a_registry_literal(model: type) -> None:
    found = model_literals(model)
    assert found
    for where, literal in found:
        assert any(literal is known for known in REGISTRY_LITERALS), where


@pytest.mark.parametrize("module", [spec_model, config_model, inspect.getmodule(Lock)])
def test_models_declare_no_literal_of_their_own(module: types.ModuleType) -> None:
    """typing caches Literal types, so an equal copy would pass the identity check above:
    the model modules must not spell ``Literal[...]`` at all."""
    tree = ast.parse(inspect.getsource(module))
    spelled = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Subscript)
               and isinstance(node.value, ast.Name | ast.Attribute)
               and (getattr(node.value, "id", None) or getattr(node.value, "attr", None))
               == "Literal"]
    assert spelled == [], f"{module.__name__}: Literal[...] on lines {spelled}"


def test_spec_model_covers_the_spec_enums() -> None:
    used = {id(lit) for _, lit in model_literals(Spec)}
    named = {node[settings.ENUM_KEY] for _, node in walk(raw_schema("imagecomposer.spec"))
             if settings.ENUM_KEY in node}
    # partition types also admit GPT type GUIDs: the field is a str, checked by the schema
    typed = {name for name in named if name != "partition_types"}
    by_values = {settings.ENUMS[name]: name for name in typed}
    assert {by_values[get_args(lit)] for lit in REGISTRY_LITERALS
            if id(lit) in used and get_args(lit) in by_values} == typed


def test_rule_tables_cover_the_registry() -> None:
    assert tuple(combinations.FORMATS) == settings.FORMATS
    assert tuple(export_formats.FORMATS) == settings.FORMATS
    assert tuple(export_formats.COMPRESSIONS) == settings.COMPRESSIONS
    assert tuple(combinations.BOOTLOADERS) == settings.BOOTLOADERS
    assert set(combinations.PARTITION_FILESYSTEMS) == set(settings.PARTITION_TYPES)
    for allowed in combinations.PARTITION_FILESYSTEMS.values():
        assert set(allowed) <= set(settings.FILESYSTEMS)
    # every package family the registry names has its Family, and no other is shipped
    assert tuple(f.kind for f in families.families()) == settings.PACKAGE_FAMILIES


def test_commented_default_config_names_the_registry_log_levels() -> None:
    text = resources.files("imagecomposer.config").joinpath("default_config.yml").read_text()
    assert f"# {' | '.join(settings.LOG_LEVELS)} " in text
