"""The checks a family adds to validation: what the packages stage would stop at that can
be known without the network.

:meth:`Family.check <imagecomposer.families.family.Family.check>` of the base OS's family
runs them (the OS profile, the provider's keyring and mirror, the repositories' keys, the
kernel package, SELinux), each problem positioned at the spec field it is about; the
providers raise with the same rules when used without validation.
:func:`imagecomposer.families.validation.check` adds them to the spec's own checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.yamldoc.sourcemap import PathKey
from imagecomposer.spec.model import Repository, Spec

BASE = ("image", "base")


def has_credentials(url: str) -> bool:
    """Whether ``url`` holds ``user:password@`` in its host part."""
    return "@" in url.split("://", 1)[-1].split("/", 1)[0]


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file:")


def repository_problem(repo: Repository, *, local_needs_key: bool
                       ) -> tuple[PathKey, str] | None:
    """(field below the repository, message) of what makes ``repo`` unusable: credentials
    in its URL, or no key without ``trusted: true`` (for a local ``file:`` repository only
    when ``local_needs_key``)."""
    if has_credentials(repo.url):
        return ("url",), (f"repository {repo.name!r}: credentials must not be written in the "
                          "spec; put them in the global configuration (credentials: "
                          "url_prefix, username, password_env)")
    if repo.key is None and not repo.trusted and (local_needs_key or is_remote(repo.url)):
        return (), (f"repository {repo.name!r} has no key: set key: to its OpenPGP public "
                    "key file, or trusted: true to skip checks")
    return None


def repositories(spec: Spec, *, local_needs_key: bool) -> list[Problem]:
    """:func:`repository_problem` of every repository of the spec's family (a repository
    of another kind is check_provider's error)."""
    found = []
    for i, repo in enumerate(spec.repositories):
        problem = repository_problem(repo, local_needs_key=local_needs_key)
        if problem is not None:
            field, message = problem
            found.append(spec.source_map.problem(("repositories", i, *field), message))
    return found


def profile_choices(spec: Spec, *, what: str, architectures: Iterable[str],
                    base_types: Iterable[str], kernels: Iterable[str],
                    default_kernel: str | None) -> list[Problem]:
    """``base.arch`` and ``base.type`` are ones the profile knows; ``kernel.package``
    matches the profile's kernel package patterns. ``what``: "debian 12"."""
    base, where = spec.image.base, spec.source_map
    found = []
    arches = sorted(architectures)
    if base.arch not in arches:
        found.append(where.problem((*BASE, "arch"), f"{what} is not available for {base.arch} "
                                                    f"(profile architectures: "
                                                    f"{', '.join(arches)})"))
    types = sorted(base_types)
    if base.type not in types:
        found.append(where.problem((*BASE, "type"), f"{what} has no package set for base type "
                                                    f"{base.type!r} (known: "
                                                    f"{', '.join(types)})"))
    kernel = spec.customizations.kernel.package
    patterns = tuple(kernels)
    if kernel is not None and patterns and not any(fnmatchcase(kernel, p) for p in patterns):
        default = f"; the default is {default_kernel}" if default_kernel else ""
        found.append(where.problem(
            ("customizations", "kernel", "package"),
            f"'{kernel}' is not a kernel package of {what} (its kernel packages are named "
            f"{' or '.join(patterns)}{default})"))
    return found


def keyring(spec: Spec, path: Path | None, *, setting: str, configured: bool,
            hint: str) -> list[Problem]:
    """The keyring the base OS's metadata is checked with exists (``path``: the
    configured one when ``configured``, else the profile's)."""
    if path is None or path.is_file():
        return []
    source = (f"{setting} in the global configuration" if configured
              else f"the OS profile's keyring ({hint}, or set {setting})")
    return [spec.source_map.problem(
        (*BASE, "os"), f"the keyring {path} does not exist: {source}")]


def selinux_packages(spec: Spec, packages: tuple[str, ...], *, what: str,
                     supported: Mapping[str, bool]) -> list[Problem]:
    """SELinux on needs SELinux packages in the profile; ``supported``: the OS versions
    whose profiles have them, named in the message."""
    mode = spec.customizations.security.selinux
    if mode == "disabled" or packages:
        return []
    offered = ", ".join(name for name, ok in supported.items() if ok) or "none"
    return [spec.source_map.problem(
        ("customizations", "security", "selinux"),
        f"SELinux {mode} is not available for {what}: its OS profile installs no SELinux "
        f"policy (SELinux images of this family: {offered})")]
