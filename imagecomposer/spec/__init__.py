"""The build spec: load (templates, variables, schema), validate, typed result.

>>> spec = Spec.load("examples/debian-12-minimal.yml")       # doctest: +SKIP
>>> validate(spec, load_config().config)                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagecomposer.config.model import Config
from imagecomposer.foundation.yamldoc.sourcemap import Pos, SourceMap
from imagecomposer.spec.loader import schema_text
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
from imagecomposer.spec.templates import builtin_templates
from imagecomposer.spec.validation import Report, check, validate

__all__ = [
    "STAGES",
    "Base",
    "Build",
    "BuildCache",
    "Customizations",
    "Disk",
    "File",
    "Image",
    "Interface",
    "Kernel",
    "Network",
    "Output",
    "Packages",
    "Partition",
    "Pos",
    "Report",
    "Repository",
    "Scripts",
    "SecureBoot",
    "Security",
    "Services",
    "Sign",
    "SourceMap",
    "Spec",
    "Ssh",
    "User",
    "builtin_templates",
    "check",
    "schema_text",
    "validate",
    "validate_file",
]


def validate_file(path: str | Path, config: Config, *,
                  variables: Mapping[str, str] | None = None) -> Spec:
    """Load and validate a spec file (``imagecomposer validate``); all problems are raised.

    Template files may come from ``config.core.allowed_paths`` too.
    """
    spec = Spec.load(path, variables=variables, allowed_paths=config.core.allowed_paths)
    validate(spec, config)
    return spec
