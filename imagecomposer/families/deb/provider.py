"""The Debian-family provider: base OS suites from the profile plus the spec's repositories.

Mirrors come from the global configuration (``providers.<os>.mirror`` and
``security_mirror``); ``auto`` takes them from the host's apt sources when one of them serves
the suite. The keyring of the base suites is the configured one (else the profile's); an extra
repository is checked against its own ``key`` only. ``trusted: true`` turns checks off and
is logged as a warning on every load.

apt semantics libsolv lacks are added here: the Essential set and Priority-based package
sets go into the request, and :meth:`DebProvider.preferences` runs the apt model
(:mod:`imagecomposer.families.deb.aptmodel`) so that the resolver installs what apt would.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imagecomposer.config.model import Config, ProviderConfig
from imagecomposer.families import aptsources, checks
from imagecomposer.families.deb import aptmodel
from imagecomposer.families.deb import request as requests
from imagecomposer.families.deb.aptpool import AptPool
from imagecomposer.families.deb.release import gpg_keyring
from imagecomposer.families.deb.repository import DebSource, LoadedIndex, load_source
from imagecomposer.families.metadata import MetadataStore
from imagecomposer.families.preferences import Preferences, Reason
from imagecomposer.families.profile import Profile, codenames, load_profile
from imagecomposer.families.request import PackageRequest, as_request
from imagecomposer.families.solvables import locked_package
from imagecomposer.foundation.errors import ConfigError, PackageNotFound, RepositoryError
from imagecomposer.foundation.events import Event, MetadataLoaded
from imagecomposer.foundation.http import Http
from imagecomposer.foundation.settings import PackageFamily
from imagecomposer.lock import LockedPackage, LockedRepository, SignedIndex
from imagecomposer.spec.model import Repository, Spec

log = logging.getLogger("imagecomposer.deb")


class DebProvider:
    kind: PackageFamily = "deb"

    def __init__(self, spec: Spec | PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 http: Http | None = None,
                 events: Callable[[Event], None] | None = None) -> None:
        self.request = as_request(spec)  # what it reads of a spec
        self.config = config
        base = self.request.base
        self.os = base.os
        self.settings: ProviderConfig = config.providers.get(base.os, ProviderConfig())
        self.profile: Profile = load_profile(base.os, base.version)
        self._arch = self.profile.family_arch(base.arch)
        self.http = http or Http(config.credentials, maxsize=config.core.parallel)
        self.store = MetadataStore.for_config(config, self.http, cache_dir=cache_dir)
        self.events = events
        self.sources = self._sources()
        self._loaded: dict[int, LoadedIndex] = {}

    # --- what to load ------------------------------------------------------------------

    @property
    def arch(self) -> str:
        return self._arch

    def _mirror(self, role: str) -> str:
        return base_mirror(self.os, self.profile, self.settings, role)

    def _sources(self) -> list[DebSource]:
        keyring = self.settings.keyring or self.profile.keyring
        hint = (f"for a snapshot, set providers.{self.os}.check_valid_until: false in the "
                "global configuration")
        sources = [
            DebSource(name=r.suite, url=self._mirror(r.mirror), suite=r.suite,
                      components=self.profile.components, arch=self._arch, keyring=keyring,
                      check_valid_until=self.settings.check_valid_until, hint=hint)
            for r in self.profile.repositories
        ]
        for repo in self.request.repositories:
            if repo.kind not in (None, "deb"):
                continue
            sources.append(self._extra(repo, hint))
        return sources

    def _extra(self, repo: Repository, hint: str) -> DebSource:
        problem = checks.repository_problem(repo, local_needs_key=False)
        if problem is not None:
            raise ConfigError(problem[1])
        return DebSource(name=repo.name, url=repo.url, suite=repo.suite,
                         components=repo.components, arch=self._arch, keyring=repo.key,
                         trusted=repo.trusted, priority=repo.priority, allow=repo.packages,
                         check_valid_until=self.settings.check_valid_until, hint=hint)

    def repositories(self) -> Sequence[LockedRepository]:
        """The repositories used, each with its Release file's ``Date:`` and the SHA-256 of
        its ``InRelease``/``Release`` once loaded."""
        dates: dict[str, int] = {}
        signed: dict[str, SignedIndex] = {}
        for item in self._loaded.values():
            if item.date is not None:
                dates[item.source.name] = max(item.date, dates.get(item.source.name, 0))
            if item.signed is not None:
                signed[item.source.name] = item.signed
        return [LockedRepository(name=s.name, url=s.url, kind="deb", suite=s.suite,
                                 components=s.components, trusted=s.trusted,
                                 date=dates.get(s.name), signed_index=signed.get(s.name))
                for s in self.sources if s.priority >= 0]

    # --- loading -----------------------------------------------------------------------

    def load(self, pool: Any) -> list[Any]:
        repos = []
        keyrings = self.store.private_dir("keyrings")  # never in the cache: it decides trust
        for source in self.sources:
            if source.priority < 0:
                log.info("repository %r has priority %d: never used", source.name,
                         source.priority)
                continue
            start = time.monotonic()
            keyring = None
            if not source.trusted and source.keyring is not None:
                keyring = gpg_keyring(source.keyring, keyrings)
            loaded = load_source(pool, source, self.store, keyring)
            for item in loaded:
                self._loaded[item.repo.id] = item
                repos.append(item.repo)
            if self.events is not None:
                self.events(MetadataLoaded(
                    repository=source.name, packages=sum(len(i.facts.names) for i in loaded),
                    from_cache=all(i.from_cache for i in loaded),
                    seconds=time.monotonic() - start))
        self._apply_allow_lists(pool)
        return repos

    def _apply_allow_lists(self, pool: Any) -> None:
        """Hide packages of repositories with an allow-list whose names do not match it."""
        disabled = []
        for item in self._loaded.values():
            if not item.source.allow:
                continue
            for solvable in item.repo.solvables_iter():
                if not any(fnmatch.fnmatchcase(solvable.name, g) for g in item.source.allow):
                    disabled.append(solvable.id)
        if disabled:
            pool.set_disabled_list(disabled)

    def index_files(self) -> list[Path]:
        """The verified Packages files loaded (for comparisons with apt; after load).

        Each is checked against the signed Release again (downloaded if it was not needed
        because the pool came from the ``.solv`` cache, or if it is damaged).
        """
        return [self.store.index_file(i.index) for i in self._facts() if i.index is not None]

    def _facts(self) -> list[LoadedIndex]:
        """The loaded indexes in the order of :attr:`sources` (apt reads them in that
        order), whatever order they were loaded in."""
        if not self._loaded:
            raise RepositoryError("DebProvider.load(pool) must run before asking for the "
                                  "request or the jobs")
        return sorted(self._loaded.values(), key=lambda i: self.sources.index(i.source))

    # --- request and apt semantics ----------------------------------------------------

    def essential(self) -> set[str]:
        """Essential packages of the base OS suites (extra repositories do not add any)."""
        base = {r.suite for r in self.profile.repositories}
        return {n for i in self._facts() if i.source.name in base for n in i.facts.essential}

    def base_request(self) -> Sequence[str]:
        request = self.request
        pset = self.profile.package_set(request.base.type)
        arch = request.base.arch
        names = set(self.essential())
        base = {r.suite for r in self.profile.repositories}
        for item in self._facts():
            if item.source.name in base:
                names.update(n for n, p in item.facts.priority.items()
                             if p in pset.priorities)
        kernel = request.kernel or self.profile.kernel
        extra = [*pset.packages, kernel,
                 *self.profile.bootloader.get(request.bootloader, ())]
        if request.read_only_root:
            extra += self.profile.read_only_root
        if request.selinux:
            extra += self.profile.selinux
        extra += self.profile.layout_packages(request.disk_features)
        names.update(self.profile.expand(n, arch) for n in extra)
        return sorted(names)

    def request_jobs(self, pool: Any, text: str, how: int) -> list[Any]:
        """Jobs for one apt-style request (``name``, ``name=version``, ``name>=v``, globs)."""
        return requests.jobs_for(pool, text, how)

    def remove_jobs(self, pool: Any, install: Sequence[str], remove: Sequence[str]
                    ) -> list[Any]:
        """``remove:`` locks the named packages out: if something needs one of them, the
        solve fails with libsolv's explanation instead of silently dropping it."""
        import solv

        jobs: list[Any] = []
        for text in remove:
            try:
                jobs += requests.jobs_for(pool, text, solv.Job.SOLVER_LOCK)
            except PackageNotFound:
                log.warning("remove: %s matches no package; nothing to lock out", text)
        return jobs

    def annotate_problems(self, text: str) -> str:
        return text

    def jobs(self, pool: Any) -> list[Any]:
        """No extra solver jobs: apt's choices come from :meth:`preferences`."""
        return []

    def solver_flags(self) -> dict[int, int]:
        return {}

    def apt_universe(self, pool: Any) -> AptPool:
        """apt's view of the loaded pool (indexes in the order apt would read them)."""
        return AptPool(pool, [(i.repo, i.facts) for i in self._facts()],
                       (self._arch, "all"))

    def preferences(self, pool: Any, request: Sequence[str], *, removed: Sequence[str],
                    recommends: bool) -> Preferences:
        """What ``apt-get install REQUEST`` would install from an empty root (the apt model),
        for the resolver to check with libsolv."""
        universe = self.apt_universe(pool)
        plan = aptmodel.plan(universe, apt_requests(universe, pool, request),
                             recommends=recommends, removed=removed)
        reasons: dict[str, Reason] = {}
        for name, choice in plan.choices.items():
            if choice.kind == "request":
                reasons[name] = Reason("spec", detail=choice.dep or name)
            else:
                reasons[name] = Reason(choice.kind, choice.by, choice.dep, choice.note,
                                       choice.rule)
        if plan.problems:
            log.info("apt would need its problem resolver here (%s); libsolv decides",
                     "; ".join(plan.problems[:3]))
        return Preferences(plan.install, reasons, exact=not plan.problems,
                           note="; ".join(plan.problems))

    def locked(self, solvable: Any) -> LockedPackage:
        item = self._loaded[solvable.repo.id]
        import solv

        base_suites = {r.suite for r in self.profile.repositories}
        essential = solvable.name in item.facts.essential
        return locked_package(
            solvable, repository=item.source.name, base_url=item.base_url, kind="deb",
            essential=essential,
            priority=item.facts.priority.get(solvable.name,
                                             "optional" if item.source.name in base_suites
                                             else None) or None,
            maintainer=solvable.lookup_str(solv.SOLVABLE_PACKAGER) or None,
            source=solvable.lookup_sourcepkg() or None,
        )

    def verify_package(self, package: LockedPackage, path: Path) -> None:
        """A .deb is an ar archive; anything else with the right hash cannot happen, but a
        cache directory edited by hand can."""
        with path.open("rb") as fh:
            if fh.read(8) != b"!<arch>\n":
                raise RepositoryError(f"{path}: not a .deb file (cache entry corrupt?)")


def base_mirror(os_name: str, profile: Profile, settings: ProviderConfig, role: str) -> str:
    """The configured mirror of ``os_name`` for ``role`` (main, security), or the host's.

    With ``auto`` the host's apt sources are searched for the first suite of that role in
    the profile (bookworm, bookworm-security); the other suites of the role (e.g.
    bookworm-updates) come from the same archive. A host that lists no suite of this version
    lends the archive it uses for another version of the same OS (a Debian 12 host builds
    Debian 13): the suite's signed InRelease is the check it is served. ConfigError when
    there is none, or when a configured URL holds credentials.
    """
    key = "mirror" if role == "main" else "security_mirror"
    value = getattr(settings, key)
    if value and value != "auto":
        if checks.has_credentials(str(value)):
            raise ConfigError(f"providers.{os_name}.{key}: do not put credentials in the URL "
                              "(they would end up in locks and logs); use the credentials "
                              "section (url_prefix, username, password_env)")
        return str(value)
    suite = next(r.suite for r in profile.repositories if r.mirror == role)
    found = aptsources.mirror_for(suite) or aptsources.mirror_for(
        suite, codenames=codenames(os_name))
    if found:
        return found
    raise ConfigError(
        f"No mirror for {os_name} {profile.version} (suite {suite}): the host's apt sources "
        f"do not serve it. Set providers.{os_name}.{key} in the global configuration to the "
        f"URL of a {os_name} archive (the directory that holds dists/ and pool/)")


def apt_requests(universe: AptPool, pool: Any, texts: Sequence[str]
                 ) -> list[aptmodel.AptRequest]:
    """The request as ``apt-get install`` arguments: globs expand to the matching package
    names (sorted), ``name OP version`` pins the best matching version, a virtual name
    becomes the provider apt prefers (apt itself refuses a virtual name with several)."""
    found: list[aptmodel.AptRequest] = []
    for text in texts:
        req = requests.parse(text)
        if req.is_glob:
            found += [aptmodel.AptRequest(n, text=text)
                      for n in universe.names_matching(req.name)]
            continue
        if req.op is not None:
            assert req.version is not None
            dep = pool.rel2id(pool.str2id(req.name), pool.str2id(req.version),
                              requests.rel_flags(req.op))
            own = {v.id for v in universe.versions(req.name)}
            best = universe.best(s for s in pool.whatprovides(dep) if s.id in own)
            if best is not None:
                found.append(aptmodel.AptRequest(req.name, best, text))
                continue
            providers = [s for s in pool.whatprovides(dep)
                         if (c := universe.default_candidate(s.name)) is not None
                         and c.id == s.id]
        elif universe.has_versions(req.name):
            found.append(aptmodel.AptRequest(req.name, text=text))
            continue
        else:
            providers = [s for s in pool.whatprovides(pool.str2id(req.name))
                         if (c := universe.default_candidate(s.name)) is not None
                         and c.id == s.id]
        if providers:
            chosen = aptmodel.sort_providers(universe, req.name, providers)[0]
            found.append(aptmodel.AptRequest(chosen.name, text=text))
    return found
