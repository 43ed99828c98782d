"""RPM semantics on top of libsolv: requests, excludes, weak dependencies, problems.

dnf is the reference:

* requests: ``name``, globs (``python3-*``), provides (``mta``), file paths, ``name.arch``,
  ``name-version`` / ``name-version-release`` pins (libsolv's ``SELECTION_CANON``, which
  dnf also uses) and relations ``name >= 1.2`` (``=``, ``==``, ``<``, ``<=``, ``>``, ``>=``);
  a plain name may also be satisfied by a package obsoleting it, as dnf does;
* the solver flags are libdnf's (:data:`DNF_SOLVER_FLAGS`): vendor changes allowed, best
  version by policy, yum-style obsoletes;
* ``remove:`` patterns are dnf *excludes*: matching packages are invisible to the solver
  (removed from the pool's considered set), so another provider is chosen or the problem
  says what needed them;
* weak dependencies (Recommends, Supplements) are off unless ``recommends: true``, like
  ``install_weak_deps=False``;
* repository priority: the provider maps dnf's "lower number wins" onto libsolv's repo
  priority, and libsolv prefers the highest priority before the highest version — exactly
  dnf's rule;
* arch policy: ``pool.setarch`` plus the provider's considered set (basearch + noarch).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import solv

from imagecomposer.foundation.errors import DependencyError, PackageNotFound, UsageError

_RELATION = re.compile(r"^\s*([^\s<>=!]+)\s*(==|=|<=|>=|<|>)\s*(\S+)\s*$")
_REL_FLAGS = {"=": solv.REL_EQ, "==": solv.REL_EQ, "<": solv.REL_LT, ">": solv.REL_GT,
              "<=": solv.REL_LT | solv.REL_EQ, ">=": solv.REL_GT | solv.REL_EQ}
_SELECT = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES
           | solv.Selection.SELECTION_GLOB | solv.Selection.SELECTION_CANON
           | solv.Selection.SELECTION_DOTARCH | solv.Selection.SELECTION_FILELIST)


def new_pool(arch: str) -> Any:
    """An empty RPM pool for ``arch`` (x86_64, aarch64): noarch is always compatible."""
    pool = solv.Pool()
    pool.setdisttype(solv.Pool.DISTTYPE_RPM)
    pool.setarch(arch)
    return pool


def excluded(name: str, patterns: Iterable[str]) -> str | None:
    """The first ``remove:`` pattern matching ``name``."""
    return next((p for p in patterns if fnmatchcase(name, p)), None)


def apply_excludes(pool: Any, patterns: Sequence[str]) -> set[str]:
    """Drop packages whose name matches a pattern from the considered set; their names."""
    if not patterns:
        return set()
    current = pool.get_considered_list()
    ids = current if current else [s.id for s in pool.solvables_iter()]
    keep: list[int] = []
    names: set[str] = set()
    for sid in ids:
        name = pool.solvables[sid].name
        if excluded(name, patterns):
            names.add(name)
        else:
            keep.append(sid)
    pool.set_considered_list(keep)
    return names


def _considered(pool: Any) -> set[int] | None:
    current = pool.get_considered_list()
    return set(current) if current else None


def suggestions(pool: Any, name: str) -> list[str]:
    names = {s.name for s in pool.solvables_iter()}
    return difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.75)


def not_found(pool: Any, text: str, why: str = "") -> PackageNotFound:
    close = suggestions(pool, _RELATION.sub(r"\1", text).strip())
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return PackageNotFound(f"Package not found: {text}{why}{hint}")


def request_jobs(pool: Any, text: str, how: int) -> list[Any]:
    """Jobs doing ``how`` (``SOLVER_INSTALL``) on what the dnf-style ``text`` names."""
    if not text.strip():
        raise UsageError("empty package request")
    considered = _considered(pool)
    relation = _RELATION.match(text)
    if relation:
        name, op, version = relation.groups()
        dep = pool.rel2id(pool.str2id(name), pool.str2id(version), _REL_FLAGS[op])
        candidates = pool.whatprovides(dep)
        jobs = [pool.Job(how | solv.Job.SOLVER_SOLVABLE_PROVIDES, dep)]
    else:
        selection = pool.select(text.strip(), _SELECT)
        candidates = selection.solvables()
        jobs = list(selection.jobs(how))
        named = [s for s in candidates if s.name == text.strip()]
        if (how & solv.Job.SOLVER_JOBMASK) == solv.Job.SOLVER_INSTALL and named:
            jobs = [_with_obsoleters(pool, how, named)]
    if not candidates:
        raise not_found(pool, text, " (no version matches)" if relation else "")
    if (how & solv.Job.SOLVER_JOBMASK) == solv.Job.SOLVER_INSTALL and considered is not None \
            and not any(s.id in considered for s in candidates):
        raise not_found(pool, text, " (every match is excluded by customizations.packages."
                        "remove, another architecture or a repository allow-list)")
    return jobs


def _with_obsoleters(pool: Any, how: int, named: Sequence[Any]) -> Any:
    """dnf's install of a plain name: one of its versions or of the packages obsoleting
    them (hawkey's ``_get_best_selectors`` with ``obsoletes=True``), the solver's choice."""
    ids = {s.id for s in named}
    for solvable in named:
        ids |= {o.id for o in pool.whatmatchessolvable(solv.SOLVABLE_OBSOLETES, solvable)}
    return pool.Job(how | solv.Job.SOLVER_SOLVABLE_ONE_OF, pool.towhatprovides(sorted(ids)))


# libdnf's Goal::Impl::initSolver: the solver policy of dnf
DNF_SOLVER_FLAGS = {solv.Solver.SOLVER_FLAG_ALLOW_VENDORCHANGE: 1,
                    solv.Solver.SOLVER_FLAG_DUP_ALLOW_VENDORCHANGE: 1,
                    solv.Solver.SOLVER_FLAG_KEEP_ORPHANS: 1,
                    solv.Solver.SOLVER_FLAG_BEST_OBEY_POLICY: 1,
                    solv.Solver.SOLVER_FLAG_YUM_OBSOLETES: 1}


def refuse_excluded_requests(install: Iterable[str], remove: Sequence[str]) -> None:
    """A requested name that ``remove:`` also excludes is an error, as in dnf."""
    for text in install:
        name = _RELATION.sub(r"\1", text).strip()
        pattern = excluded(name, remove)
        if pattern is not None:
            raise DependencyError(f"Failed to resolve dependencies: {text} is requested but "
                                  f"customizations.packages.remove excludes {pattern}")


def excluded_note(text: str, excluded_names: Iterable[str]) -> str:
    """libsolv's explanation ``text`` plus which excluded packages it involves."""
    names = set(excluded_names)
    hits = sorted(n for n in names if re.search(rf"(?<![\w.+-]){re.escape(n)}\b", text))
    if hits or (names and "nothing provides" in text):
        text += ("\n  (excluded by customizations.packages.remove: "
                 f"{', '.join(hits or sorted(names))})")
    return text
