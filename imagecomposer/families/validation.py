"""The whole validation of a spec: the spec's own checks and its family's.

:func:`imagecomposer.spec.validation.check` knows the spec and the global configuration
(schema, files, combinations, the disk layout ...); what needs the OS profile, the
provider's keyring and mirror or the family's repository rules is the base OS's family's
(:meth:`Family.check <imagecomposer.families.family.Family.check>`). :func:`check` runs both,
so the validate stage and ``imagecomposer validate`` report everything that can be known
without the network, each problem at the spec field it is about.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from imagecomposer.config.model import Config
from imagecomposer.families.registry import family_for
from imagecomposer.foundation.errors import ProviderNotConfigured, ValidationError
from imagecomposer.spec import validation
from imagecomposer.spec.model import Spec
from imagecomposer.spec.validation import Report, order

log = logging.getLogger("imagecomposer.spec")


def check(spec: Spec, config: Config) -> Report:
    """Every problem and warning of ``spec`` under ``config``, its family's included."""
    report = validation.check(spec, config)
    if spec.image.base.os not in config.providers:
        return report  # the spec's checks said so (check_provider)
    try:
        extra = family_for(spec.image.base.os, config).check(spec, config)
    except ProviderNotConfigured as exc:
        extra = [spec.source_map.problem(("image", "base", "os"), str(exc))]
    errors = sorted(dict.fromkeys([*report.errors, *extra]), key=order)
    return Report(tuple(errors), report.warnings)


def validate(spec: Spec, config: Config) -> None:
    """Raise ValidationError with every problem of ``spec``; log its warnings."""
    report = check(spec, config)
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.errors:
        raise ValidationError(report.errors)


def validate_file(path: str | Path, config: Config, *,
                  variables: Mapping[str, str] | None = None) -> Spec:
    """Load and validate a spec file (``imagecomposer validate``); all problems are raised.

    Template files may come from ``config.core.allowed_paths`` too.
    """
    spec = Spec.load(path, variables=variables, allowed_paths=config.core.allowed_paths)
    validate(spec, config)
    return spec
