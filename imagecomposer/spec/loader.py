"""Loading a build spec: YAML → templates → variables → schema → field checks → Spec.

Every step collects problems instead of stopping at the first; the first step that found
any raises :class:`~imagecomposer.foundation.errors.ValidationError` with all of them (later steps
would
only repeat them in other words). Template problems raise its subclass
:class:`~imagecomposer.foundation.errors.TemplateError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import attrs

from imagecomposer.foundation.errors import Problem, TemplateError, ValidationError
from imagecomposer.foundation.yamldoc import schemacheck
from imagecomposer.foundation.yamldoc.limits import LimitExceeded, read_document
from imagecomposer.foundation.yamldoc.positions import (
    Node,
    YamlSyntaxError,
    compose,
    limit_problem,
    merged_limit,
    source_map,
    to_plain,
)
from imagecomposer.spec.roots import resolve_roots
from imagecomposer.spec.structure import check_fields, refuse_plaintext, to_spec
from imagecomposer.spec.templates import Reading, apply_extends
from imagecomposer.spec.variables import TextBudget, resolve_variables, substitute

if TYPE_CHECKING:
    from imagecomposer.spec.model import Spec

SpecT = TypeVar("SpecT", bound="Spec")

SCHEMA_PACKAGE = "imagecomposer.spec"


def schema_text() -> str:
    """The JSON Schema of build specs (``imagecomposer schema``), for editors: the enums
    filled from the settings registry."""
    return schemacheck.schema_text(SCHEMA_PACKAGE)


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file or "", p.line or 0, p.column or 0))


def load_spec(path: Path, *, into: type[SpecT], variables: Mapping[str, str] | None = None,
              allowed_paths: Iterable[Path] = ()) -> SpecT:
    """Load the spec file at ``path``; relative paths in it are relative to its directory.

    ``allowed_paths`` (the configuration's ``core.allowed_paths``) are read-allowed besides
    the spec's directory tree and its own ``build.allowed_paths``
    (:mod:`imagecomposer.spec.roots`); at load time this applies to template files.
    """
    try:
        text = read_document(path)
    except FileNotFoundError:
        raise ValidationError([Problem("build spec not found", str(path))]) from None
    except LimitExceeded as exc:
        raise ValidationError([limit_problem(exc, str(path))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError([Problem(f"build spec cannot be read: {exc}", str(path))]) \
            from None
    return load_text(text, into=into, name=str(path), base_dir=path.parent.absolute(),
                     variables=variables, path=path.absolute(), allowed_paths=allowed_paths)


def own_allowed_paths(root: Node, problems: list[Problem]) -> list[Path]:
    """The ``build.allowed_paths`` written in the spec file itself (needed before templates
    are read; they take no variables, which are substituted later)."""
    build = root.get("build")
    allowed = build.get("allowed_paths") if build is not None else None
    out: list[Path] = []
    for item in (allowed.value if allowed is not None and allowed.is_seq else []):
        if not isinstance(item.value, str) or not item.value:
            continue  # the schema check reports it
        if "${" in item.value:
            problems.append(Problem("build.allowed_paths cannot use variables", item.pos.file,
                                    item.pos.line, item.pos.column, "build.allowed_paths"))
            continue
        out.append(Path(item.value))
    return out


def load_text(text: str, *, into: type[SpecT], name: str = "<spec>",
              base_dir: Path | None = None, variables: Mapping[str, str] | None = None,
              path: Path | None = None, allowed_paths: Iterable[Path] = ()) -> SpecT:
    """Load a spec from YAML ``text``; ``name`` is the file name used in messages."""
    base_dir = (base_dir or Path.cwd()).absolute()
    try:
        root = compose(text, name)
    except YamlSyntaxError as exc:
        raise ValidationError(exc.problems) from None
    if root is None:
        raise ValidationError([Problem("the build spec is empty", name, 1, 1)])
    if not isinstance(root.value, dict):
        raise ValidationError([Problem("a build spec must be a mapping (image:, "
                                       "customizations:, ...)", name, root.pos.line,
                                       root.pos.column)])
    template_problems: list[Problem] = []
    key = str(path) if path is not None else f"{base_dir}/{name}"
    roots = resolve_roots(base_dir, [*own_allowed_paths(root, template_problems),
                                     *allowed_paths])
    root = apply_extends(root, base_dir, key, template_problems, Reading(roots))
    if template_problems:
        raise TemplateError(_ordered(template_problems))
    too_large = merged_limit(root)
    if too_large is not None:
        raise TemplateError([too_large])

    problems: list[Problem] = []
    budget = TextBudget()
    values = resolve_variables(root.get("variables"), variables or {}, problems, budget)
    substitute(root, values, problems, budget)
    if budget.exceeded:  # the one problem that matters; the rest would be its echoes
        raise ValidationError(_ordered(problems))
    refuse_plaintext(root, problems)
    schema = schemacheck.load_schema(SCHEMA_PACKAGE)
    schemacheck.coerce_strings(root, schema)
    where = source_map(root, name)
    data = to_plain(root)
    # A value already reported (say, an undefined variable) is not reported again.
    reported = {p.path for p in problems}
    later = schemacheck.check(data, schemacheck.compiled(SCHEMA_PACKAGE), schema, where)
    later += check_fields(data, where)
    problems += [p for p in later if p.path not in reported]
    if problems:
        raise ValidationError(_ordered(problems))
    data["variables"] = values
    spec = to_spec(data, base_dir, into)
    return attrs.evolve(spec, path=path, base_dir=base_dir, source_map=where)
