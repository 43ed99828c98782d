"""The ahead-of-time compiled schema validators (schemacheck.validator): current, used only
for the schema they were generated from, and judging exactly like fastjsonschema's own
compilation at start-up."""

from __future__ import annotations

import copy
import types
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from imagecomposer.config import schema_validator as config_validator
from imagecomposer.foundation.yamldoc import schemacheck
from imagecomposer.foundation.yamldoc.sourcemap import SourceMap
from imagecomposer.spec import schema_validator as spec_validator

ROOT = Path(__file__).resolve().parents[2]
GENERATED = [("imagecomposer.config", config_validator), ("imagecomposer.spec", spec_validator)]

GOOD_SPEC: dict[str, Any] = {
    "image": {"name": "web", "version": "1.0.0", "base": {"os": "debian", "version": "12"}},
    "customizations": {"hostname": "web01", "packages": {"install": ["sudo"]}},
    "disk": {"size": "2GiB"},
}
BAD_SPECS: list[dict[str, Any]] = [
    {**GOOD_SPEC, "customisations": {}},  # unknown key
    {**GOOD_SPEC, "image": {"name": "web"}},  # missing base
    {**GOOD_SPEC, "customizations": {"hostname": "bad host name!"}},  # pattern
    {**GOOD_SPEC, "disk": {"size": [12]}},  # type
    {**GOOD_SPEC, "output": {"formats": ["raw", "floppy"]}},  # enum
]


@pytest.mark.parametrize(("package", "module"), GENERATED, ids=lambda x: getattr(x, "__name__", x))
def test_generated_module_is_current(package: str, module: types.ModuleType) -> None:
    """The committed module is what the generator writes for today's schema (else run
    scripts/generate_validators.py), and validator() takes its function."""
    path = ROOT / package.replace(".", "/") / "schema_validator.py"
    assert path.read_text(encoding="utf-8") == schemacheck.validator_module(package)
    assert schemacheck.schema_digest(package) == module.SCHEMA_SHA256
    assert schemacheck.validator(package, module) is module.validate


def _foreign(digest: str, validate: object) -> types.ModuleType:
    module = types.ModuleType("schema_validator")
    module.SCHEMA_SHA256 = digest  # type: ignore[attr-defined]
    module.validate = validate  # type: ignore[attr-defined]
    return module


def _accept_anything(data: Any) -> Any:
    return data


@pytest.mark.parametrize("module", [
    _foreign(schemacheck.schema_digest("imagecomposer.config"), _accept_anything),  # other schema
    _foreign("0" * 64, _accept_anything),  # stale: the schema changed since
    _foreign(schemacheck.schema_digest("imagecomposer.spec"), "not a function"),  # damaged
    types.ModuleType("schema_validator"),  # no digest at all
    None,
], ids=["other-schema", "stale", "not-callable", "empty", "none"])
def test_a_module_not_made_from_this_schema_is_refused(module: types.ModuleType | None) -> None:
    """Anything but the module generated from this very schema is ignored: the schema is
    compiled at run time instead, and still rejects what it must."""
    chosen = schemacheck.validator("imagecomposer.spec", module)
    assert chosen is schemacheck.compiled("imagecomposer.spec", "schema.json")
    assert chosen is not _accept_anything
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        chosen({**GOOD_SPEC, "customisations": {}})


def test_digest_follows_the_schema_and_fastjsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    before = schemacheck.schema_digest("imagecomposer.spec")
    changed = copy.deepcopy(schemacheck.load_schema("imagecomposer.spec"))
    changed["properties"]["image"]["required"] = ["name"]
    schemacheck.schema_digest.cache_clear()
    monkeypatch.setattr(schemacheck, "load_schema", lambda package, name="schema.json": changed)
    assert schemacheck.schema_digest("imagecomposer.spec") != before
    schemacheck.schema_digest.cache_clear()
    monkeypatch.undo()
    monkeypatch.setattr(fastjsonschema, "VERSION", "0.0.0")
    assert schemacheck.schema_digest("imagecomposer.spec") != before
    schemacheck.schema_digest.cache_clear()
    monkeypatch.undo()
    assert schemacheck.schema_digest("imagecomposer.spec") == before


@pytest.mark.parametrize("data", [GOOD_SPEC, *BAD_SPECS])
def test_generated_and_compiled_judge_alike(data: dict[str, Any]) -> None:
    """Every problem check() finds with the generated validator it finds with the one
    fastjsonschema compiles at start-up, in the same words."""
    schema = schemacheck.load_schema("imagecomposer.spec")
    found = [schemacheck.check(copy.deepcopy(data), validate, schema, SourceMap())
             for validate in (spec_validator.validate, schemacheck.compiled("imagecomposer.spec"))]
    assert found[0] == found[1]
    assert bool(found[0]) is (data is not GOOD_SPEC)
