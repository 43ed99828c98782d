"""The build spec: load (templates, variables, schema), validate, typed result.

>>> spec = Spec.load("examples/debian-12-minimal.yml")       # doctest: +SKIP
>>> validate(spec, load_config().config)                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from imagecomposer.foundation.yamldoc.sourcemap import Pos, SourceMap
from imagecomposer.spec.model import (
    STAGES,
    Base,
    Build,
    BuildCache,
    Customizations,
    Disk,
    File,
    Image,
    Interface,
    Kernel,
    Network,
    Output,
    Packages,
    Partition,
    Repository,
    Scripts,
    SecureBoot,
    Security,
    Services,
    Sign,
    Spec,
    Ssh,
    User,
)

if TYPE_CHECKING:
    from imagecomposer.config.model import Config
    from imagecomposer.spec.validation import Report

__all__ = [
    "STAGES", "Base", "Build", "BuildCache", "Customizations", "Disk", "File", "Image",
    "Interface", "Kernel", "Network", "Output", "Packages", "Partition", "Pos", "Repository",
    "Scripts", "SecureBoot", "Security", "Services", "Sign", "SourceMap", "Spec", "Ssh", "User",
    "builtin_templates", "check", "inputs_digest", "schema_text", "validate", "validate_file",
]


def schema_text() -> str:
    """The JSON Schema of build specs, as shipped (``imagecomposer schema``)."""
    from imagecomposer.spec.loader import schema_text as text

    return text()


def validate(spec: Spec, config: Config) -> None:
    """Raise :class:`~imagecomposer.foundation.errors.ValidationError` with every semantic
    problem."""
    from imagecomposer.spec.validation import validate as run

    run(spec, config)


def check(spec: Spec, config: Config) -> Report:
    """Errors and warnings of ``spec`` without raising."""
    from imagecomposer.spec.validation import check as run

    return run(spec, config)


def validate_file(path: str | Path, config: Config, *,
                  variables: Mapping[str, str] | None = None) -> Spec:
    """Load and validate a spec file (``imagecomposer validate``); all problems are raised.

    Template files may come from ``config.core.allowed_paths`` too.
    """
    spec = Spec.load(path, variables=variables, allowed_paths=config.core.allowed_paths)
    validate(spec, config)
    return spec


def inputs_digest(spec: Spec) -> str:
    """sha256 of the canonical spec and of the contents of every file it references."""
    from imagecomposer.spec.export import inputs_digest as digest

    return digest(spec)


def builtin_templates() -> list[str]:
    """Names of the built-in templates (``debian-12/production-server``, ...)."""
    from imagecomposer.spec.templates import builtin_templates as names

    return names()
