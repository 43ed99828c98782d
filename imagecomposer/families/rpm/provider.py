"""The RPM-family provider: rpm-md repositories of a base OS profile and of the spec.

It turns the spec's base OS (through its profile and ``providers.<os>`` in the global
configuration) and the spec's extra ``kind: rpm`` repositories into verified libsolv repos,
names the packages ``base.type`` adds, and checks every downloaded RPM's header signature.

Priorities follow dnf: a *lower* number wins, 99 is the default, and among repositories of
equal priority the highest version wins. The spec's ``repositories[].priority`` is read with
these semantics for rpm repositories; its schema default (500, APT's default) means dnf's 99.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import attrs
import solv

from imagecomposer.config.model import Config, ProviderConfig
from imagecomposer.families.metadata import MetadataStore
from imagecomposer.families.preferences import Preferences
from imagecomposer.families.request import PackageRequest, as_request
from imagecomposer.families.rpm.jobs import (
    DNF_SOLVER_FLAGS,
    apply_excludes,
    excluded_note,
    refuse_excluded_requests,
    request_jobs,
)
from imagecomposer.families.rpm.keys import Keyring, prepare_keyring
from imagecomposer.families.rpm.loader import (
    REPOMD,
    LoadedRepo,
    RpmSource,
    load_filelists,
    load_source,
    unresolved_file_dependencies,
)
from imagecomposer.families.rpm.profile import (
    DEFAULT_PRIORITY,
    RpmProfile,
    bare_profile,
    load_rpm_profile,
    profile_path,
)
from imagecomposer.families.rpm.verify import check_sha256, check_signature
from imagecomposer.families.solvables import locked_package
from imagecomposer.foundation.errors import ConfigError, ProviderNotConfigured, RepositoryError
from imagecomposer.foundation.events import MetadataLoaded
from imagecomposer.foundation.http import Http
from imagecomposer.lock import LockedPackage, LockedRepository, SignedIndex
from imagecomposer.spec.model import Repository, Spec

log = logging.getLogger("imagecomposer.rpm")

SPEC_DEFAULT_PRIORITY = 500  # the spec schema's default (APT's); means dnf's default here


def expand(template: str, *, releasever: str, basearch: str) -> str:
    return template.replace("$releasever", releasever).replace("$basearch", basearch)


def _base_url(url: str) -> str:
    """An http(s)/file URL ending with "/"; a plain local path becomes a file:// URL."""
    if "://" not in url:
        url = Path(url).absolute().as_uri()
    return url if url.endswith("/") else url + "/"


def dnf_priority(repo: Repository) -> int:
    if repo.priority == SPEC_DEFAULT_PRIORITY:
        return DEFAULT_PRIORITY
    if not 1 <= repo.priority <= 99:
        raise ConfigError(
            f"repository {repo.name}: priority {repo.priority} is not a dnf priority: rpm "
            "repositories take 1..99, lower wins (leave it unset for dnf's default 99)")
    return repo.priority


class RpmProvider:
    """Provider protocol implementation for ``kind: rpm`` (see providers/base.py)."""

    kind: Literal["rpm"] = "rpm"

    def __init__(self, spec: Spec | PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None,
                 profile: RpmProfile | None = None, http: Http | None = None) -> None:
        self.request = as_request(spec)  # what it reads of a spec
        self.config = config
        base = self.request.base
        provider_config = config.providers.get(base.os)
        if provider_config is None and profile is None:
            raise ProviderNotConfigured(
                f"no provider configured for {base.os}: add providers.{base.os} with "
                "kind: rpm, mirror: <URL of a mirror> and keyring: <key file> to the "
                "global configuration")
        if provider_config is not None and provider_config.kind != "rpm":
            raise ConfigError(f"providers.{base.os}.kind is {provider_config.kind}, not rpm")
        self.provider_config = provider_config or ProviderConfig(kind="rpm", mirror=None)
        if profile is None:
            profile = (load_rpm_profile(base.os, base.version)
                       if profile_path(base.os, base.version).is_file()
                       else bare_profile(base.os, base.version))
        self.profile = profile
        self.basearch = profile.basearch(base.arch)
        self.http = http or Http(config.credentials)
        self.store = MetadataStore.for_config(config, self.http, prefix="rpm/",
                                              cache_dir=cache_dir)
        self.metadata_dir = self.store.base
        self.events = events
        self._keyrings: dict[tuple[Path, ...], Keyring] = {}
        self._key_sources: dict[str, tuple[Path, ...]] = {}
        self._sources: dict[str, RpmSource] = {}
        for source, keys in self._plan():
            if source.name in self._sources:
                raise ConfigError(f"two repositories are named {source.name}")
            self._sources[source.name] = source
            self._key_sources[source.name] = keys
        self.loaded: dict[str, LoadedRepo] = {}
        self.excluded_names: set[str] = set()

    # --- configuration --------------------------------------------------------------------

    def _plan(self) -> list[tuple[RpmSource, tuple[Path, ...]]]:
        """Every repository with its key files; keyrings are prepared later, on use."""
        base = self.request.base
        planned: list[tuple[RpmSource, tuple[Path, ...]]] = []
        repos = [r for r in self.profile.repositories if r.enabled]
        if repos:
            mirror = self.provider_config.mirror
            if mirror in (None, "auto"):
                raise ProviderNotConfigured(
                    f"providers.{base.os}.mirror is not set: rpm mirrors are never guessed. "
                    f"Set it in the global configuration to the mirror URL the paths of "
                    f"{profile_path(base.os, base.version).name} are relative to")
            assert mirror is not None
            keyring = self.provider_config.keyring or self.profile.keyring
            keys = (keyring,) if keyring is not None else ()
            for repo in repos:
                url = _base_url(mirror) + expand(repo.path, releasever=self.profile.releasever,
                                                 basearch=self.basearch).lstrip("/")
                if not keys and (repo.gpgcheck or repo.repo_gpgcheck):
                    raise ConfigError(f"{base.os} {base.version}: repository {repo.name} is "
                                      f"signed: set providers.{base.os}.keyring")
                planned.append((RpmSource(
                    name=repo.name, baseurl=_base_url(url), priority=repo.priority,
                    gpgcheck=repo.gpgcheck, repo_gpgcheck=repo.repo_gpgcheck), keys))
        for extra in self.request.repositories:
            if extra.kind not in (None, "rpm"):
                raise ConfigError(f"repository {extra.name}: kind {extra.kind} cannot be "
                                  f"used with {base.os}, an rpm-family OS")
            url = expand(extra.url, releasever=self.profile.releasever,
                         basearch=self.basearch)
            if extra.key is None and not extra.trusted:
                raise ConfigError(
                    f"repository {extra.name}: no key: set key: to the file of the key its "
                    "packages are signed with, or trusted: true to skip signature checks")
            planned.append((RpmSource(
                name=extra.name, baseurl=_base_url(url), priority=dnf_priority(extra),
                gpgcheck=not extra.trusted, repo_gpgcheck=None, trusted=extra.trusted,
                allow=extra.packages), (extra.key,) if extra.key is not None else ()))
        return planned

    def _keyring(self, name: str) -> Keyring | None:
        keys = self._key_sources[name]
        if not keys:
            return None
        if keys not in self._keyrings:
            self._keyrings[keys] = prepare_keyring(
                keys, self.store.private_dir("keyrings"),  # never in the cache: it decides trust
                what=f"repository {name}")
        return self._keyrings[keys]

    def source(self, name: str) -> RpmSource:
        """The repository ``name`` with its keyring prepared."""
        source = self._sources[name]
        if source.keyring is None and self._key_sources[name]:
            source = attrs.evolve(source, keyring=self._keyring(name))
            self._sources[name] = source
        return source

    # --- Provider protocol ----------------------------------------------------------------

    def repositories(self) -> Sequence[LockedRepository]:
        """The repositories, each with its repomd.xml's date and SHA-256 once loaded."""
        return tuple(LockedRepository(
            name=s.name, url=s.baseurl, kind="rpm", trusted=s.trusted,
            date=self.loaded[s.name].repomd.date if s.name in self.loaded else None,
            signed_index=self._signed_index(s.name))
            for s in self._sources.values())

    def _signed_index(self, name: str) -> SignedIndex | None:
        repomd = self.loaded[name].repomd if name in self.loaded else None
        if repomd is None or repomd.sha256 is None:
            return None
        return SignedIndex(REPOMD, repomd.sha256)

    def load(self, pool: Any) -> list[Any]:
        """Load every repository (verified, cached), filelists if a file dep needs them.

        The pool must be ``DISTTYPE_RPM`` with its arch set. On return its whatprovides
        index is built and the considered set excludes other architectures and packages
        outside the repositories' allow-lists.
        """
        self.loaded = {}
        for name in self._sources:
            started = time.monotonic()
            loaded = self.loaded[name] = load_source(pool, self.source(name), self.store)
            if self.events is not None:
                self.events(MetadataLoaded(name, loaded.repo.nsolvables, loaded.from_cache,
                                           time.monotonic() - started))
        pool.addfileprovides()
        pool.createwhatprovides()
        missing = unresolved_file_dependencies(pool)
        if missing:
            log.info("loading filelists: no package in primary.xml provides %s",
                     ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else ""))
            self.loaded = {name: load_filelists(loaded, self.store)
                           for name, loaded in self.loaded.items()}
            pool.addfileprovides()
            pool.createwhatprovides()
        self._restrict(pool)
        return [loaded.repo for loaded in self.loaded.values()]

    def _restrict(self, pool: Any) -> None:
        arches = {self.basearch, "noarch"}
        allow = {loaded.repo.id: loaded.source.allow for loaded in self.loaded.values()}
        considered = []
        for solvable in pool.solvables_iter():
            if solvable.arch not in arches:
                continue
            patterns = allow.get(solvable.repo.id, ())
            if patterns and not any(fnmatchcase(solvable.name, p) for p in patterns):
                continue
            considered.append(solvable.id)
        pool.set_considered_list(considered)

    @property
    def arch(self) -> str:
        """The pool architecture ($basearch: x86_64, aarch64)."""
        return self.basearch

    def jobs(self, pool: Any) -> list[Any]:
        """RPM semantics the generic resolver lacks: ``remove:`` as dnf excludes.

        Excluded packages leave the pool's considered set (no job is needed for that).
        """
        self.excluded_names = apply_excludes(pool, self.request.remove)
        return []

    def remove_jobs(self, pool: Any, install: Sequence[str], remove: Sequence[str]
                    ) -> list[Any]:
        """``remove:`` patterns are dnf excludes (applied by :meth:`jobs`: no job needed); a
        requested name that is also excluded is refused."""
        refuse_excluded_requests(install, remove)
        return []

    def annotate_problems(self, text: str) -> str:
        """Name the excluded packages the explanation mentions."""
        return excluded_note(text, self.excluded_names)

    def solver_flags(self) -> dict[int, int]:
        """dnf's solver policy (libdnf's flags)."""
        return dict(DNF_SOLVER_FLAGS)

    def preferences(self, pool: Any, request: Sequence[str], *, removed: Sequence[str],
                    recommends: bool) -> Preferences | None:
        """None: libsolv is dnf's own solver, its choice is dnf's."""
        return None

    def request_jobs(self, pool: Any, text: str, how: int) -> list[Any]:
        """Jobs for one dnf-style request string (``name-version`` pins, ``name >= v``)."""
        return request_jobs(pool, text, how)

    def locked(self, solvable: Any) -> LockedPackage:
        """The lock entry of a package the solver chose (after :meth:`load`)."""
        source = self._sources[solvable.repo.name]
        packager = solvable.lookup_str(solv.SOLVABLE_PACKAGER)
        vendor = solvable.lookup_str(solv.SOLVABLE_VENDOR)
        sourcerpm = solvable.lookup_sourcepkg() or ""
        package = locked_package(
            solvable, repository=source.name, base_url=source.baseurl, kind="rpm",
            maintainer=packager or vendor or None,
            source=_source_name(sourcerpm) or None)
        if not package.sha256:
            raise RepositoryError(
                f"{source.baseurl}: {solvable} has no sha256 checksum in primary.xml "
                "(imagecomposer needs sha256 package checksums)")
        return package

    def base_request(self) -> Sequence[str]:
        request = self.request
        names = list(self.profile.package_set(request.base.type).packages)
        kernel = request.kernel or self.profile.kernel
        if kernel:
            names.append(kernel)
        names += self.profile.bootloader.get(request.bootloader, ())
        names += self.profile.layout_packages(request.disk_features)
        if request.selinux:
            names += self.profile.selinux
        return tuple(dict.fromkeys(names))

    def verify_package(self, package: LockedPackage, path: Path) -> None:
        what = f"{package.name}-{package.version}.{package.arch} ({package.repository})"
        check_sha256(path, package.sha256, what=what)
        source = self.source(package.repository)
        if source.trusted or not source.gpgcheck:
            log.warning("not checking the signature of %s: repository %s is %s", what,
                        source.name, "trusted" if source.trusted else "gpgcheck: false")
            return
        keyring = source.keyring
        assert keyring is not None  # _plan refuses signed repositories without keys
        check_signature(path, keyring, what=what)

    # --- for compose ----------------------------------------------------------------------

    def trusted_keys(self) -> tuple[Path, ...]:
        """Armored files of every configured key (to import into the target's rpmdb)."""
        found: list[Path] = []
        for name in self._sources:
            keyring = self._keyring(name)
            if keyring is not None:
                found += [p for p in keyring.armored if p not in found]
        return tuple(found)


def _source_name(sourcerpm: str) -> str:
    """``bash-5.2.26-3.fc40.src.rpm`` -> ``bash``."""
    stem = sourcerpm.removesuffix(".rpm").removesuffix(".src").removesuffix(".nosrc")
    parts = stem.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else ""


def package_url(repository: LockedRepository, location: str) -> str:
    return urllib.parse.urljoin(repository.url, location)

