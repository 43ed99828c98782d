"""The family-generic resolver core: a libsolv pool, the request as jobs, the solution.

Family semantics come from the provider (``load``, ``base_request``, ``jobs``,
``remove_jobs``, ``locked``, ``annotate_problems``), so the same code resolves deb and rpm
requests. Defaults follow the image use case: weak dependencies (Recommends) are off unless
``customizations.packages.recommends`` is true; ``customizations.packages.remove`` means what
the family says (deb: the packages are locked out; rpm: dnf excludes), and if something
needs a removed package the build fails with libsolv's explanation instead of silently
dropping it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs

from imagecomposer.config.model import Config
from imagecomposer.families import libsolv
from imagecomposer.families.base import Provider
from imagecomposer.families.preferences import Preferences, Reason
from imagecomposer.families.registry import family, provider_for, request_for
from imagecomposer.families.request import PackageRequest
from imagecomposer.families.solvables import ordered
from imagecomposer.foundation import display
from imagecomposer.foundation.errors import DependencyError, PackageNotFound
from imagecomposer.foundation.events import Event, Resolved
from imagecomposer.lock import Lock, LockedPackage
from imagecomposer.resolver.resolution import Resolution
from imagecomposer.spec.model import Spec

libsolv.solv()  # fail at import, naming the install command, if libsolv lacks Debian support

log = logging.getLogger("imagecomposer.resolver")


def new_pool(provider: Provider) -> Any:
    """An empty pool of the provider's family (its disttype) and architecture."""
    return family(provider.kind).new_pool(provider.arch)


def _problems(problems: list[Any]) -> str:
    lines = []
    for problem in problems:
        lines.append(f"  Problem {problem.id}: {problem}")
        for rule in problem.findallproblemrules():
            for info in rule.allinfos():
                text = info.problemstr()
                if f"    - {text}" not in lines:
                    lines.append(f"    - {text}")
    return ("Failed to resolve dependencies: no set of packages satisfies the request\n"
            + "\n".join(lines))


def _reasons(solver: Any, pool: Any, installed: list[Any], spec_jobs: set[str],
             profile: str) -> dict[str, Reason]:
    import solv

    reasons: dict[str, Reason] = {}
    for s in installed:
        kind, rule = solver.describe_decision(s)
        if kind == solv.Solver.SOLVER_REASON_WEAKDEP:
            weak = solver.describe_weakdep_decision(s)
            if weak:
                _, by, dep = weak[0]
                reasons[s.name] = Reason("recommended", by.name, pool.dep2str(dep.id)
                                         if hasattr(dep, "id") else str(dep))
                continue
        info = rule.info() if rule is not None else None
        if info is None:
            reasons[s.name] = Reason("other")
        elif info.type == solv.Solver.SOLVER_RULE_JOB:
            reasons[s.name] = (Reason("spec") if s.name in spec_jobs
                               else Reason("profile", detail=profile))
        elif info.type == solv.Solver.SOLVER_RULE_PKG_REQUIRES and info.solvable is not None:
            reasons[s.name] = Reason("dependency", info.solvable.name, str(info.dep))
        else:
            reasons[s.name] = Reason("other", detail=info.problemstr())
    return reasons


def solve(pool: Any, jobs: list[Any], preferences: Preferences | None, *,
          recommends: bool, flags: dict[int, int] | None = None,
          annotate: Callable[[str], str] = str) -> tuple[Any, bool]:
    """Solve; with exact preferences first try exactly that set. (solver, exact used).
    ``annotate`` adds the family's notes to libsolv's explanation of a failure."""
    solv = libsolv.solv()

    def run(these: list[Any], ignore_recommended: bool) -> tuple[Any, list[Any]]:
        solver = pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED,
                        1 if ignore_recommended else 0)
        for flag, value in (flags or {}).items():
            solver.set_flag(flag, value)
        return solver, solver.solve(these)

    if preferences is not None and preferences.exact:
        exact = [pool.Job(solv.Job.SOLVER_SOLVABLE | solv.Job.SOLVER_INSTALL, s.id)
                 for s in preferences.install]
        solver, problems = run(jobs + exact, True)
        if not problems:
            return solver, True
        log.warning("libsolv finds the packages apt would choose inconsistent (%s); "
                    "libsolv chooses instead", "; ".join(str(p) for p in problems[:3]))
    favor = [pool.Job(solv.Job.SOLVER_SOLVABLE | solv.Job.SOLVER_FAVOR, s.id)
             for s in (preferences.install if preferences is not None else ())]
    solver, problems = run(jobs + favor, not recommends)
    if problems:
        raise DependencyError(annotate(_problems(problems)))
    return solver, False


class Resolver:
    """Resolve a spec's package request into a :class:`Resolution` (its ``.lock``)."""

    def __init__(self, config: Config, *, events: Callable[[Event], None] | None = None
                 ) -> None:
        self.config = config
        self.events = events

    def __repr__(self) -> str:
        return display.call("Resolver", metadata_cache=self.config.metadata_cache_dir,
                            parallel=self.config.core.parallel)

    def resolve(self, spec: Spec | PackageRequest, *, provider: Provider | None = None
                ) -> Resolution:
        """Resolve what ``spec`` asks for (only its :class:`PackageRequest` is read)."""
        import solv

        start = time.monotonic()
        request = request_for(spec, self.config)
        if provider is None:
            provider = provider_for(request, self.config, events=self.events)
        pool = new_pool(provider)
        provider.load(pool)
        pool.addfileprovides()
        pool.createwhatprovides()  # before any select(); a .solv-loaded pool crashes without

        removed = list(dict.fromkeys(request.remove))
        profile_names = [n for n in provider.base_request() if n not in removed]
        jobs = list(provider.jobs(pool))
        # Asked first (a family may refuse a request that is also removed), added last: the
        # order of jobs shapes the transaction's install order among equals.
        remove_jobs = provider.remove_jobs(pool, request.install, request.remove)
        missing: list[PackageNotFound] = []
        spec_names: set[str] = set()
        wanted = list(dict.fromkeys([*profile_names, *request.install]))
        for text in wanted:
            try:
                found = provider.request_jobs(pool, text, solv.Job.SOLVER_INSTALL)
            except PackageNotFound as exc:
                missing.append(exc)
                continue
            jobs += found
            if text in request.install:
                spec_names |= {s.name for job in found for s in job.solvables()}
        if missing:
            if len(missing) == 1:
                raise missing[0]
            raise PackageNotFound("\n".join(str(m) for m in missing))
        jobs += remove_jobs

        preferences = provider.preferences(pool, wanted, removed=removed,
                                           recommends=request.recommends)
        solver, exact = solve(pool, jobs, preferences, recommends=request.recommends,
                              flags=provider.solver_flags(), annotate=provider.annotate_problems)
        trans = solver.transaction()
        installed, requires = ordered(pool, list(trans.newsolvables()))
        locked: list[LockedPackage] = [attrs.evolve(provider.locked(s), depends=requires[s.name])
                                       for s in installed]
        base = request.base
        lock = Lock(os=base.os, version=base.version, arch=provider.arch, kind=provider.kind,
                    repositories=tuple(provider.repositories()), packages=tuple(locked),
                    requested=tuple([*profile_names, *request.install]))
        profile = f"{base.os} {base.version} base.type {base.type}"
        reasons = _reasons(solver, pool, installed, spec_names, profile)
        if exact and preferences is not None:
            for name, reason in preferences.reasons.items():
                if name not in reasons:
                    continue
                if reason.kind == "spec" and reason.detail not in request.install:
                    reason = Reason("profile", detail=profile)
                elif reason.kind == "spec":
                    reason = Reason("spec")
                reasons[name] = reason
        for entry in locked:  # say which part of the profile's request it was
            given = reasons.get(entry.name)
            if given is not None and given.kind == "profile":
                why = ("Essential: yes" if entry.essential else
                       "Priority: required" if entry.priority == "required" else "")
                if why:
                    reasons[entry.name] = Reason("profile", detail=f"{given.detail}, {why}")
        seconds = time.monotonic() - start
        if self.events is not None:
            self.events(Resolved(len(locked), sum(p.size for p in locked), seconds))
        return Resolution(lock, reasons, seconds)
