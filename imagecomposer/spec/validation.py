"""The validate stage (seed: "Validate Stage") for a loaded spec and a global config.

Loading (:meth:`Spec.load`) already checked YAML syntax, the schema, templates, variables
and field formats. This adds what needs the configuration or the file system, and the
combination matrix of :mod:`imagecomposer.spec.combinations`:

- the provider named by ``image.base.os`` is configured;
- every referenced local file lies inside the spec's roots (its directory tree and the
  allowed paths, symlinks followed: :mod:`imagecomposer.spec.roots`) and exists;
- settings combinations are legal; the disk layout, accounts, files, services are coherent.

What needs the base OS's family (its profile, keyring, mirror, repository rules) is added
by :func:`imagecomposer.families.validation.check`, the validation the validate stage and
``imagecomposer validate`` run.

:func:`validate` raises one :class:`~imagecomposer.foundation.errors.ValidationError` with every
problem and logs warnings; :func:`check` returns both lists for callers that want them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import attrs

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import Problem, ValidationError
from imagecomposer.foundation.yamldoc.sourcemap import PathKey
from imagecomposer.foundation.yamldoc.suggest import did_you_mean
from imagecomposer.spec import combinations, semantics, volumes
from imagecomposer.spec.model import Encryption, Spec
from imagecomposer.spec.roots import outside, resolve_roots

log = logging.getLogger("imagecomposer.spec")


@attrs.frozen
class Report:
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]


def check_provider(spec: Spec, config: Config) -> list[Problem]:
    os_name = spec.image.base.os
    where = spec.source_map
    provider = config.providers.get(os_name)
    if provider is None:
        configured = ", ".join(sorted(config.providers)) or "none"
        return [where.problem(("image", "base", "os"),
                              f"Provider '{os_name}' is not configured in the global "
                              f"configuration (configured: {configured})"
                              f"{did_you_mean(os_name, config.providers)}")]
    problems: list[Problem] = []
    for i, repo in enumerate(spec.repositories):
        if repo.kind is not None and repo.kind != provider.kind:
            problems.append(where.problem(
                ("repositories", i, "kind"),
                f"a {repo.kind} repository cannot serve the {provider.kind} based "
                f"'{os_name}' image"))
    return problems


def referenced_paths(spec: Spec) -> Iterator[tuple[PathKey, Path, bool]]:
    """(field path, file, must be a regular file) for every local file the spec needs."""
    c = spec.customizations
    for i, f in enumerate(c.files):
        if f.source is not None:
            yield ("customizations", "files", i, "source"), f.source, False
    for phase in ("pre_install", "post_install"):
        for i, script in enumerate(getattr(c.scripts, phase)):
            yield ("customizations", "scripts", phase, i), script, True
    for i, repo in enumerate(spec.repositories):
        if repo.key is not None:
            yield ("repositories", i, "key"), repo.key, True
    sb = c.security.secure_boot
    if sb is not None:
        yield ("customizations", "security", "secure_boot", "key"), sb.key, True
        yield ("customizations", "security", "secure_boot", "cert"), sb.cert, True
    yield from _key_material_paths(spec)
    sign = spec.output.sign
    if sign is not None:
        yield ("output", "sign", "key"), sign.key, True
        if sign.cert is not None:
            yield ("output", "sign", "cert"), sign.cert, True
        if sign.passphrase_file is not None:
            yield ("output", "sign", "passphrase_file"), sign.passphrase_file, True


def _key_material_paths(spec: Spec) -> Iterator[tuple[PathKey, Path, bool]]:
    """LUKS2 passphrase and key files (regular files)."""
    encrypted: list[tuple[PathKey, Encryption]] = [
        (("disk", "partitions", i, "encryption"), part.encryption)
        for i, part in enumerate(spec.disk.partitions) if part.encryption is not None]
    encrypted += [((*at, "encryption"), lv.encryption)
                  for at, _, lv in volumes.logical_volumes(spec) if lv.encryption is not None]
    for at, enc in encrypted:
        if enc.passphrase_file is not None:
            yield (*at, "passphrase_file"), enc.passphrase_file, True
        if enc.key_file is not None:
            yield (*at, "key_file"), enc.key_file, True


def as_written(path: Path, spec: Spec) -> str:
    """``./files/sshd_config`` for files under the spec's directory, else the full path."""
    normal = Path(os.path.normpath(path))
    try:
        return "./" + normal.relative_to(spec.directory).as_posix()
    except ValueError:
        return str(normal)


def spec_roots(spec: Spec, config: Config) -> tuple[Path, ...]:
    """The resolved directories and files ``spec`` may read (imagecomposer.spec.roots)."""
    return resolve_roots(spec.directory, (*spec.build.allowed_paths, *config.core.allowed_paths))


def check_files_exist(spec: Spec, config: Config) -> list[Problem]:
    """Every referenced file is inside the spec's roots, exists, and is a regular file where
    one is needed. Outside the roots nothing else is said (not even whether it exists)."""
    problems: list[Problem] = []
    roots = spec_roots(spec, config)
    for field, path, regular in referenced_paths(spec):
        shown = as_written(path, spec)
        why = outside(path, roots, shown)
        if why is not None:
            problems.append(spec.source_map.problem(field, why))
        elif not path.exists():
            problems.append(spec.source_map.problem(
                field, f"Missing required file '{shown}' referenced in build spec"))
        elif regular and not path.is_file():
            problems.append(spec.source_map.problem(field, f"'{shown}' is not a regular file"))
    return problems


def order(p: Problem) -> tuple[str, int, int]:
    """Problems in file order."""
    return (p.file or "", p.line or 0, p.column or 0)


def check(spec: Spec, config: Config) -> Report:
    """Every problem and warning of ``spec`` under ``config``."""
    errors = [
        *check_provider(spec, config),
        *check_files_exist(spec, config),
        *combinations.check_output(spec),
        *combinations.check_boot(spec),
        *semantics.check_disk(spec),
        *volumes.check_volumes(spec),
        *semantics.check_accounts(spec),
        *semantics.check_files(spec),
        *semantics.check_services_and_network(spec),
        *semantics.check_repositories_and_stages(spec),
        *semantics.check_security(spec),
    ]
    warnings = [*semantics.warnings(spec), *combinations.boot_warnings(spec)]
    return Report(tuple(sorted(errors, key=order)), tuple(sorted(warnings, key=order)))


def validate(spec: Spec, config: Config) -> None:
    """Raise ValidationError with every problem of ``spec``; log its warnings."""
    report = check(spec, config)
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.errors:
        raise ValidationError(report.errors)
