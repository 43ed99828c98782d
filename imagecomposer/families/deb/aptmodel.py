"""What ``apt-get install`` would mark, by apt's own rules (a model of apt 2.6's marker).

Given apt's view of the loaded metadata (:class:`AptUniverse`: candidate versions,
dependency groups in apt's order, package flags) and a request, :func:`plan` returns the
install set apt would produce from an empty dpkg status, and why each package is in it.
The resolver then hands that set to libsolv, which checks it is consistent (and explains
the failure when it is not). The model follows ``apt-get install`` step by step:

1. every requested package is protected and marked without its dependencies
   (``TryToInstall``), removed names are protected and held;
2. each request, in command-line order, is marked again with automatic installation
   (``pkgDepCache::MarkInstall``): its (Pre-)Depends, Conflicts/Breaks and, when
   Recommends are on, its Recommends are visited in the order apt stores them; a group
   already satisfied by a marked package is left alone; otherwise the solutions of the
   group are tried in apt's order (each alternative left to right, the providers of one
   alternative by ``CompareProviders``: protected, the real package of that name,
   Essential, Important, Priority, then the package apt created last) and the first one
   that can itself be marked (recursively, depth first) wins. Protection propagates
   through dependencies with a single solution; the conflicts of a protected package
   discard the candidates they hit; a package whose dependencies fail is discarded and
   never tried again, the way apt does it;
3. if a marked package is still broken, apt would run its problem resolver: the plan
   says so (:attr:`AptPlan.problems`) and the caller lets libsolv decide instead;
4. the garbage sweep of ``DoAutomaticRemove``: new installs no manual, Essential or
   Important package reaches through Depends/Pre-Depends/Recommends/Suggests are not
   installed after all (what a discarded package had pulled in).

apt's configuration is its compiled-in default (no ``apt.conf.d`` of the host), one
architecture, nothing installed. See docs/packages.md for what is knowingly not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, Protocol

import attrs

KEEP, INSTALL = 0, 1
MAX_DEPTH = 3000  # apt: "we are not trying too hard"
DepKind = Literal["pre-depends", "depends", "conflicts", "recommends", "suggests"]


class Alternative(NamedTuple):
    """One alternative of a dependency group: its target name, libsolv dependency id, text.

    (Named tuples: thousands are made per resolution, and they are cheap to make.)"""

    name: str
    dep: int
    text: str


class Group(NamedTuple):
    kind: DepKind
    alternatives: tuple[Alternative, ...]

    @property
    def critical(self) -> bool:
        return self.kind in ("pre-depends", "depends", "conflicts")

    @property
    def negative(self) -> bool:
        return self.kind == "conflicts"

    @property
    def text(self) -> str:
        return " | ".join(a.text for a in self.alternatives)


class AptUniverse(Protocol):
    """apt's view of the metadata (implemented over a libsolv pool by
    :class:`imagecomposer.families.deb.aptpool.AptPool`).

    Versions are opaque objects with ``.name`` and ``.id`` (libsolv solvables).
    """

    def default_candidate(self, name: str) -> Any | None:
        """apt's policy candidate: highest pin priority, then highest version."""
        ...

    def has_versions(self, name: str) -> bool: ...

    def groups(self, version: Any) -> Sequence[Group]:
        """Dependency groups in apt's order: Pre-Depends, Depends, Conflicts and Breaks,
        Recommends, Suggests."""
        ...

    def providers(self, alternative: Alternative) -> Sequence[Any]:
        """Every version satisfying ``alternative`` by its name or by a Provides."""
        ...

    def provided_names(self, version: Any) -> Sequence[str]: ...

    def essential(self, name: str) -> bool: ...

    def important(self, name: str) -> bool: ...

    def priority(self, version: Any) -> int:
        """apt's numeric Priority (0 none, 1 required ... 5 extra)."""
        ...

    def rank(self, name: str) -> int:
        """The order in which apt created the package record (its ID; see
        :func:`imagecomposer.families.deb.aptpool.creation_rank`)."""
        ...


@attrs.frozen
class AptRequest:
    name: str
    version: Any | None = None  # a pinned version (name=version), else the candidate
    text: str = ""  # as the user wrote it


@attrs.frozen
class Choice:
    """Why the model marked a package."""

    kind: Literal["request", "dependency", "recommended"]
    by: str | None = None
    dep: str | None = None  # the group as written ("default-mta | mail-transport-agent")
    rule: str = ""  # "first alternative", "alternative 2" (of an OR group)
    note: str = ""  # how a provider was chosen ("exim4-daemon-light provides default-mta")


@attrs.frozen
class AptPlan:
    install: tuple[Any, ...]  # the versions apt would install, in marking order
    choices: dict[str, Choice]
    problems: tuple[str, ...] = ()  # non-empty: apt's problem resolver would run


class _Marker:
    """The mutable state of one ``apt-get install`` run (pkgDepCache, reduced)."""

    def __init__(self, universe: AptUniverse, recommends: bool) -> None:
        self.u = universe
        self.recommends = recommends
        self.cand: dict[str, Any | None] = {}  # overrides of the policy candidate
        self.inst: dict[str, Any] = {}  # InstallVer
        self.mode: dict[str, int] = {}
        self.protected: set[str] = set()
        self.held: set[str] = set()
        self.auto: set[str] = set()
        self.order: list[str] = []  # first marking order
        self.ordered: set[str] = set()
        self.choices: dict[str, Choice] = {}
        # DepCVer is cached per dependency in apt and not refreshed when a candidate is
        # discarded: remember the discarded candidates and when each target was refreshed
        self.clock = 0
        self.discarded: dict[str, tuple[int, Any]] = {}
        self.refreshed: dict[str, int] = {}

    # --- state --------------------------------------------------------------------------

    def candidate(self, name: str) -> Any | None:
        if name in self.cand:
            return self.cand[name]
        return self.u.default_candidate(name)

    def installing(self, name: str) -> bool:
        return self.mode.get(name, KEEP) == INSTALL

    def _update(self, name: str) -> None:
        """pkgDepCache::Update(Pkg): dependencies on the package and on what its
        candidate provides see the current candidates again."""
        self.clock += 1
        self.refreshed[name] = self.clock
        candidate = self.candidate(name)
        if candidate is not None:
            for provided in self.u.provided_names(candidate):
                self.refreshed[provided] = self.clock

    def _discard_candidate(self, name: str, to: Any | None = None) -> None:
        """Set the candidate to ``to`` without apt's Update (cached states go stale)."""
        old = self.candidate(name)
        if old is not None:
            self.clock += 1
            self.discarded[name] = (self.clock, old)
        self.cand[name] = to

    # --- dependency states --------------------------------------------------------------

    def _hits(self, parent: str, alt: Alternative, negative: bool,
              version_of: Any) -> bool:
        for version in self.u.providers(alt):
            name = version.name
            if negative and name == parent:
                continue  # self-conflicts and own Provides are ignored
            chosen = version_of(name)
            if chosen is not None and chosen.id == version.id:
                return True
        return False

    def by_install(self, parent: str, alt: Alternative, negative: bool = False) -> bool:
        return self._hits(parent, alt, negative, self.inst.get)

    def by_candidate(self, parent: str, alt: Alternative) -> bool:
        return self._hits(parent, alt, False, self.candidate)

    def by_cached_candidate(self, parent: str, alt: Alternative) -> bool:
        """DepCVer as apt has it cached (stale for candidates discarded since)."""
        refreshed = self.refreshed.get(alt.name, 0)

        def seen(name: str) -> Any | None:
            gone = self.discarded.get(name)
            if gone is not None and gone[0] > refreshed:
                return gone[1]
            return self.candidate(name)

        return self._hits(parent, alt, False, seen)

    def satisfied(self, parent: str, group: Group) -> bool:
        if group.negative:
            return not any(self.by_install(parent, a, True) for a in group.alternatives)
        return any(self.by_install(parent, a) for a in group.alternatives)

    def important(self, group: Group) -> bool:
        return group.critical or (group.kind == "recommends" and self.recommends)

    def broken(self, name: str, policy: bool) -> bool:
        """InstBroken (critical groups) or, with ``policy``, InstPolicyBroken."""
        version = self.inst.get(name)
        if version is None:
            return False
        for group in self.u.groups(version):
            if group.kind == "suggests" or (group.kind == "recommends" and not
                                            (policy and self.recommends)):
                continue
            if not self.satisfied(name, group):
                return True
        return False

    # --- ordering of solutions -----------------------------------------------------------

    def solutions(self, parent: str, group: Group) -> list[tuple[Any, int]]:
        """getAllPossibleSolutions(CANDIDATE, sorted): (version, alternative index)."""
        found: list[tuple[Any, int]] = []
        for index, alt in enumerate(group.alternatives):
            versions = [v for v in self.u.providers(alt)
                        if not (group.negative and v.name == parent)]
            versions = [v for v in versions if (c := self.candidate(v.name)) is not None
                        and c.id == v.id]
            unique: dict[int, Any] = {v.id: v for v in versions}
            if group.negative:  # every one is handled: no order needed
                found += [(v, index) for v in unique.values()]
                continue
            found += [(v, index) for v in sort_providers(self.u, alt.name, unique.values(),
                                                         self.protected)]
        kept: list[tuple[Any, int]] = []
        for item in found:
            if kept and kept[-1][0].id == item[0].id:
                continue  # std::unique: adjacent duplicates only
            kept.append(item)
        if not group.negative:
            kept = [(v, i) for v, i in kept
                    if not (v.name in self.protected and not self.installing(v.name))]
        return kept

    def solution_count(self, parent: str, group: Group) -> tuple[int, Any | None]:
        """getAllPossibleSolutions(CANDANDINST, unsorted): how many, and the one if one."""
        seen: dict[int, Any] = {}
        for alt in group.alternatives:
            for version in self.u.providers(alt):
                candidate = self.candidate(version.name)
                if candidate is not None and candidate.id == version.id:
                    seen[version.id] = version
        left = [v for v in seen.values()
                if not (v.name in self.protected and not self.installing(v.name))]
        return len(left), (left[0] if len(left) == 1 else None)

    # --- marking ------------------------------------------------------------------------

    def mode_change_ok(self, name: str, mode: int, depth: int, from_user: bool) -> bool:
        if depth > MAX_DEPTH or not self.u.has_versions(name):
            return False
        if from_user or self.mode.get(name, KEEP) == mode:
            return True
        if name in self.protected:
            return False
        return not (mode != KEEP and name in self.held)

    def state_change(self, name: str, from_user: bool, why: Choice | None) -> None:
        candidate = self.candidate(name)
        current = self.inst.get(name)
        if name in self.protected and current is not None and candidate is not None \
                and current.id == candidate.id:
            return
        new = not self.installing(name)
        self.mode[name] = INSTALL
        self.inst[name] = candidate
        if from_user:
            self.auto.discard(name)
        elif new:
            self.auto.add(name)
        if new:
            if name not in self.ordered:
                self.ordered.add(name)
                self.order.append(name)
            if why is not None:  # (marked again after a discard: the new reason)
                self.choices[name] = why
        self._update(name)

    def mark_keep(self, name: str, depth: int) -> bool:
        if not self.mode_change_ok(name, KEEP, depth, False):
            return False
        if self.mode.get(name, KEEP) == KEEP:
            return True
        self.mode[name] = KEEP
        self.inst.pop(name, None)
        self._update(name)
        return True

    def discard_install(self, name: str) -> None:
        if self.mode.get(name, KEEP) != KEEP or name in self.inst:
            self.mode[name] = KEEP
            self.inst.pop(name, None)
            self._update(name)
        self._discard_candidate(name, self.inst.get(name))

    def install_ok(self, name: str, auto_inst: bool) -> bool:
        """IsInstallOkDependenciesSatisfiableByCandidates."""
        if not auto_inst:
            return True
        candidate = self.candidate(name)
        assert candidate is not None
        for group in self.u.groups(candidate):
            if group.kind not in ("pre-depends", "depends"):
                continue
            if any(self.by_install(name, a) or self.by_cached_candidate(name, a)
                   for a in group.alternatives):
                continue
            if name not in self.protected:
                self._discard_candidate(name)
                self.mode[name] = KEEP
            return False
        return True

    def mark_install(self, name: str, auto_inst: bool, depth: int, from_user: bool,
                     why: Choice | None = None) -> bool:
        if not self.mode_change_ok(name, INSTALL, depth, from_user):
            return False
        candidate = self.candidate(name)
        if candidate is None:
            return False
        if name not in self.protected and not self.broken(name, policy=True) \
                and self.installing(name):
            return True
        if not self.install_ok(name, auto_inst):
            return False
        if from_user:
            self.state_change(name, True, why)
        protected = name in self.protected
        fail_early = not protected and not from_user
        failed = False
        to_install: list[Group] = []
        if auto_inst:
            to_remove: list[Group] = []
            for group in self.u.groups(candidate):
                if (self.satisfied(name, group) and not protected) \
                        or not self.important(group):
                    continue
                (to_remove if group.negative else to_install).append(group)
            if not self.remove_conflicts(name, to_remove, depth, protected, from_user):
                if fail_early:
                    return False
                failed = True
        if not from_user:
            self.state_change(name, False, why)
        if not auto_inst:
            return not failed
        self.protected.add(name)  # ScopedProtected
        try:
            ok = self.install_dependencies(name, to_install, depth, protected, from_user)
        finally:
            if not protected:
                self.protected.discard(name)
        if not ok:
            if fail_early:
                self.discard_install(name)
                return False
            failed = True
        return not failed

    def remove_conflicts(self, name: str, to_remove: list[Group], depth: int,
                         propagate: bool, from_user: bool) -> bool:
        failed = False
        for group in to_remove:
            for version, _ in self.solutions(name, group):
                other = version.name
                candidate = self.candidate(other)
                if candidate is None or candidate.id != version.id:
                    continue
                if self.installing(other) and not self.mark_keep(other, depth):
                    failed = True
                    if not propagate and not from_user:
                        break
                elif propagate:
                    self._discard_candidate(other, self.inst.get(other))
                    self.protected.add(other)
            if failed and not propagate and not from_user:
                break
        return not failed

    def install_dependencies(self, name: str, groups: list[Group], depth: int,
                             propagate: bool, from_user: bool) -> bool:
        failed = False
        for group in groups:
            if self.satisfied(name, group):
                if not propagate or not group.critical:
                    continue
                count, only = self.solution_count(name, group)
                if count != 1 or only is None or only.name in self.protected:
                    continue
                self.protected.add(only.name)
                if not self.mark_install(only.name, True, depth + 1, False):
                    failed = True
                continue
            solutions = self.solutions(name, group)
            found = False
            for version, index in solutions:
                other = version.name
                candidate = self.candidate(other)
                if candidate is None or candidate.id != version.id:
                    continue
                why = _choice(name, group, index, version, solutions)
                if propagate and group.critical and len(solutions) == 1:
                    if not self.mark_install(other, False, depth + 1, False, why):
                        continue
                    self.protected.add(other)
                if not self.mark_install(other, True, depth + 1, False, why):
                    continue
                found = True
                break
            if not found and group.critical:
                failed = True
                if not propagate and not from_user:
                    break
        return not failed

    # --- after marking ------------------------------------------------------------------

    def problems(self) -> list[str]:
        found = []
        for name in self.order:
            if not self.installing(name):
                continue
            version = self.inst[name]
            for group in self.u.groups(version):
                if group.critical and not self.satisfied(name, group):
                    what = "conflicts with" if group.negative else "depends on"
                    found.append(f"{name} {what} {group.text}")
        return found

    def sweep(self) -> None:
        """DoAutomaticRemove without autoremove: garbage new installs are not installed."""
        marked: set[str] = set()
        roots = [n for n in self.order if self.installing(n) and (
            n not in self.auto or self.u.essential(n) or self.u.important(n))]
        todo = list(roots)
        marked.update(roots)
        while todo:
            name = todo.pop()
            for group in self.u.groups(self.inst[name]):
                if group.negative:
                    continue
                for alt in group.alternatives:
                    for version in self.u.providers(alt):
                        chosen = self.inst.get(version.name)
                        if chosen is not None and chosen.id == version.id \
                                and self.installing(version.name) \
                                and version.name not in marked:
                            marked.add(version.name)
                            todo.append(version.name)
        garbage = [n for n in self.order if self.installing(n) and n not in marked]
        nuked: list[str] = []
        for name in garbage:
            if name in self.protected or name in self.held:
                continue  # MarkDelete refuses (IsModeChangeOk)
            self.mode[name] = KEEP
            self.inst.pop(name, None)
            self._update(name)
            nuked.append(name)
        if nuked and any(self.broken(n, policy=True) for n in self.order if self.installing(n)):
            self._save(nuked)

    def _save(self, nuked: list[str]) -> None:
        """Mark again a nuked package some new install has an important dependency on."""
        left = sorted(nuked, key=self.u.rank)
        changed = True
        while changed:
            changed = False
            targets: dict[str, tuple[str, Group]] = {}
            for name in self.order:
                if self.installing(name):
                    for group in self.u.groups(self.inst[name]):
                        if not group.negative and self.important(group):
                            for alt in group.alternatives:
                                targets.setdefault(alt.name, (name, group))
            for name in left:
                candidate = self.candidate(name)
                names = [name, *(self.u.provided_names(candidate) if candidate else ())]
                hit = next((targets[n] for n in names if n in targets), None)
                if hit is not None:
                    by, group = hit
                    kind: Literal["dependency", "recommended"] = (
                        "recommended" if group.kind == "recommends" else "dependency")
                    self.choices.pop(name, None)
                    self.mark_install(name, False, 0, False,
                                      Choice(kind, by, group.text, note="kept by apt's "
                                             "autoremove check"))
                    left.remove(name)
                    changed = True
                    break


def _flags_key(universe: AptUniverse, target: str, protected: frozenset[str]) -> Any:
    """apt's CompareProviders for the providers of ``target`` (one architecture, nothing
    installed) but its last key: protected first, then the package named ``target``,
    Essential, Important, the higher Priority."""

    def key(version: Any) -> tuple[int, ...]:
        name = version.name
        return (0 if name in protected else 1, 0 if name == target else 1,
                0 if universe.essential(name) else 1, 0 if universe.important(name) else 1,
                universe.priority(version))
    return key


def sort_providers(universe: AptUniverse, target: str, versions: Iterable[Any],
                   protected: Iterable[str] = ()) -> list[Any]:
    """``versions`` in apt's CompareProviders order: :func:`_flags_key`, then the package
    apt created later first (its ID: costly to compute, so only where the others tie)."""
    found = list(versions)
    if len(found) < 2:
        return found
    flags = _flags_key(universe, target, frozenset(protected))
    keyed = sorted(((flags(v), v) for v in found), key=lambda item: item[0])
    result: list[Any] = []
    start = 0
    while start < len(keyed):
        end = start + 1
        while end < len(keyed) and keyed[end][0] == keyed[start][0]:
            end += 1
        run = [v for _, v in keyed[start:end]]
        if len(run) > 1:
            run.sort(key=lambda v: -universe.rank(v.name))
        result += run
        start = end
    return result


def _choice(parent: str, group: Group, index: int, version: Any,
            solutions: Sequence[tuple[Any, int]]) -> Choice:
    kind: Literal["dependency", "recommended"] = (
        "recommended" if group.kind == "recommends" else "dependency")
    alt = group.alternatives[index]
    rule = ""
    if len(group.alternatives) > 1:
        rule = "first alternative" if index == 0 else f"alternative {index + 1}"
    note = ""
    if version.name != alt.name:
        others = sum(1 for _, i in solutions if i == index)
        note = (f"{version.name} provides {alt.name}" if others == 1 else
                f"apt's preferred provider of {alt.name}, of {others}")
    return Choice(kind, parent, group.text, rule, note)


def plan(universe: AptUniverse, requests: Sequence[AptRequest], *, recommends: bool,
         removed: Iterable[str] = ()) -> AptPlan:
    """The install set ``apt-get install`` would produce for ``requests`` (see module doc)."""
    marker = _Marker(universe, recommends)
    for name in removed:
        marker.protected.add(name)
        marker.held.add(name)
    seen: list[str] = []
    for request in requests:
        if request.version is not None:
            marker.cand[request.name] = request.version
            marker._update(request.name)
        marker.protected.add(request.name)
        marker.mark_install(request.name, False, 0, True,
                            Choice("request", dep=request.text or request.name))
        if request.name not in seen:
            seen.append(request.name)
    for name in seen:
        marker.mark_install(name, True, 0, True)
    problems = marker.problems()
    if not problems:
        marker.sweep()
    install = tuple(marker.inst[n] for n in marker.order if marker.installing(n))
    choices = {v.name: marker.choices[v.name] for v in install if v.name in marker.choices}
    return AptPlan(install, choices, tuple(problems))
