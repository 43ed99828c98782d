"""apt's view of a libsolv pool: the :class:`~imagecomposer.families.deb.aptmodel.AptUniverse`
the apt model reads.

libsolv keeps every relation of a Packages stanza in the order it was written (``a | b``
becomes a right-nested ``REL_OR``; Pre-Depends sit after the requires' prereq marker,
Depends before it; Conflicts and Breaks share one array). What it drops — Essential,
Important/Protected, Priority and the order apt creates its package records in — comes
from the per-index :class:`~imagecomposer.families.deb.index.IndexFacts`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from imagecomposer.families import libsolv
from imagecomposer.families.deb.aptmodel import Alternative, DepKind, Group
from imagecomposer.families.deb.index import ORDER_END, ORDER_KEY, IndexFacts, relations

log = logging.getLogger("imagecomposer.resolver")

# apt's pkgCache::State::VerPriority; a stanza without Priority has 0, unknown words extra
PRIORITIES = {"": 0, "required": 1, "important": 2, "standard": 3, "optional": 4, "extra": 5}
FORCED_ESSENTIAL = frozenset({"apt"})  # pkgCacheGen::ForceEssential's default
_OPS = {"<": "LT", "<<": "LT", "<=": "LE", "=": "EQ", ">=": "GE", ">": "GT", ">>": "GT"}
_APT_OPS = {"<": "<<", ">": ">>"}
_EVENT = re.compile(r"\n(?=([^\n]+)\n)")
SEARCHES = 32  # creation ranks looked up by substring search before building tables


class AptPool:
    """Candidates, dependency groups and flags of the packages in a loaded pool."""

    def __init__(self, pool: Any, indexes: Sequence[tuple[Any, IndexFacts]],
                 arches: Iterable[str]) -> None:
        """``indexes``: (libsolv repo, facts) in the order apt reads the indexes."""
        self.pool = pool
        self.solv = libsolv.solv()
        self.facts: dict[int, IndexFacts] = {repo.id: facts for repo, facts in indexes}
        self.order: dict[int, int] = {repo.id: i for i, (repo, _) in enumerate(indexes)}
        self.arches = frozenset(arches)
        self.disabled = frozenset(pool.get_disabled_list() or ())
        self.essentials = frozenset().union(FORCED_ESSENTIAL,
                                            *(f.essential for _, f in indexes))
        self.importants = frozenset().union(FORCED_ESSENTIAL,
                                            *(f.important for _, f in indexes))
        self._mentions: list[str | Mapping[str, int]] = [f"\n{f.mentions}\n"
                                                          for _, f in indexes]
        self._ranks: dict[str, int] = {}
        self._versions: dict[str, list[Any]] = {}
        self._candidates: dict[str, Any | None] = {}
        self._groups: dict[int, tuple[Group, ...]] = {}
        self._providers: dict[int, list[Any]] = {}
        self._provided: dict[int, tuple[str, ...]] = {}
        self._any = pool.str2id("any")
        self._order_keys = (pool.str2id(ORDER_KEY, False), pool.str2id(ORDER_END, False))

    # --- versions and candidates --------------------------------------------------------

    def _usable(self, solvable: Any) -> bool:
        return solvable.arch in self.arches and solvable.id not in self.disabled

    def versions(self, name: str) -> list[Any]:
        found = self._versions.get(name)
        if found is None:
            nameid = self.pool.str2id(name, False)
            found = [s for s in self.pool.whatprovides(nameid)
                     if s.nameid == nameid and self._usable(s)] if nameid else []
            self._versions[name] = found
        return found

    def has_versions(self, name: str) -> bool:
        return bool(self.versions(name))

    def _better(self, a: Any, b: Any) -> int:
        """apt's policy order: higher pin priority, then higher version, then the index
        read first (the same version in two suites is one version to apt)."""
        if a.repo.priority != b.repo.priority:
            return 1 if a.repo.priority > b.repo.priority else -1
        cmp = int(a.evrcmp(b))
        if cmp:
            return cmp
        return self.order.get(b.repo.id, 0) - self.order.get(a.repo.id, 0)

    def default_candidate(self, name: str) -> Any | None:
        if name not in self._candidates:
            versions = self.versions(name)
            self._candidates[name] = (max(versions, key=functools.cmp_to_key(self._better))
                                      if versions else None)
        return self._candidates[name]

    def best(self, versions: Iterable[Any]) -> Any | None:
        """The version apt's policy prefers among ``versions`` (for name>=version pins)."""
        found = list(versions)
        return max(found, key=functools.cmp_to_key(self._better)) if found else None

    # --- relations ----------------------------------------------------------------------

    def _alternative(self, text: str) -> tuple[str, int, str]:
        """(target name, dependency id, apt spelling) of one ``name[:any] [op evr]``."""
        parts = text.split()
        name = parts[0]
        target = name.removesuffix(":any")
        dep = self.pool.str2id(target)
        if name != target:
            dep = self.pool.rel2id(dep, self._any, self.solv.REL_MULTIARCH)
        shown = name
        if len(parts) == 3:
            op, evr = parts[1], parts[2]
            flags = {"LT": self.solv.REL_LT, "LE": self.solv.REL_LT | self.solv.REL_EQ,
                     "EQ": self.solv.REL_EQ, "GE": self.solv.REL_GT | self.solv.REL_EQ,
                     "GT": self.solv.REL_GT}[_OPS[op]]
            dep = self.pool.rel2id(dep, self.pool.str2id(evr), flags)
            shown = f"{name} ({_APT_OPS.get(op, op)} {evr})"
        return target, dep, shown

    def _group(self, kind: DepKind, dep: Any) -> Group:
        text = str(dep)
        pieces = text.split(" | ")
        if len(pieces) == 1:  # the dependency id is the alternative's: no need to rebuild it
            parts = text.split()
            shown = text if len(parts) != 3 else \
                f"{parts[0]} ({_APT_OPS.get(parts[1], parts[1])} {parts[2]})"
            return Group(kind, (Alternative(parts[0].removesuffix(":any"), dep.id, shown),))
        parsed = [self._alternative(p) for p in pieces]
        rebuilt = parsed[-1][1]
        for _, alt, _ in reversed(parsed[:-1]):
            rebuilt = self.pool.rel2id(alt, rebuilt, self.solv.REL_OR)
        if rebuilt != dep.id:  # not the structure we expect: one alternative, libsolv's way
            log.debug("cannot split %r into its alternatives", text)
            return Group(kind, (Alternative(parsed[0][0], dep.id, text),))
        return Group(kind, tuple(Alternative(t, d, s) for t, d, s in parsed))

    def groups(self, version: Any) -> tuple[Group, ...]:
        found = self._groups.get(version.id)
        if found is None:
            kinds: tuple[DepKind, ...] = ("pre-depends", "depends", "conflicts", "recommends",
                                          "suggests")
            found = tuple(self._group(kind, dep)
                          for kind, deps in zip(kinds, relations(version, self._order_keys),
                                                strict=True)
                          for dep in deps)
            self._groups[version.id] = found
        return found

    def providers(self, alternative: Alternative) -> list[Any]:
        found = self._providers.get(alternative.dep)
        if found is None:
            found = [s for s in self.pool.whatprovides(alternative.dep) if self._usable(s)]
            self._providers[alternative.dep] = found
        return found

    def provided_names(self, version: Any) -> tuple[str, ...]:
        found = self._provided.get(version.id)
        if found is None:
            names = []
            for dep in version.lookup_deparray(self.solv.SOLVABLE_PROVIDES, 0):
                name = str(dep).split(" ", 1)[0]
                if name != version.name and name not in names:
                    names.append(name)
            found = self._provided[version.id] = tuple(names)
        return found

    # --- flags --------------------------------------------------------------------------

    def essential(self, name: str) -> bool:
        return name in self.essentials

    def important(self, name: str) -> bool:
        return name in self.importants

    def priority(self, version: Any) -> int:
        facts = self.facts.get(version.repo.id)
        if facts is None:
            return PRIORITIES["optional"]
        value = facts.priority.get(version.name, "optional")
        return PRIORITIES.get(value, PRIORITIES["extra"])

    def rank(self, name: str) -> int:
        found = self._ranks.get(name)
        if found is None:
            if len(self._ranks) == SEARCHES:  # many: tables are cheaper than searches
                self._mentions = [event_offsets(m) if isinstance(m, str) else m
                                  for m in self._mentions]
            found = self._ranks[name] = creation_rank(name, self._mentions)
        return found

    def names_matching(self, pattern: str) -> list[str]:
        """Real package names matching a glob, sorted (for glob requests)."""
        flags = self.solv.Selection.SELECTION_NAME | self.solv.Selection.SELECTION_GLOB
        selection = self.pool.select(pattern, flags)
        return sorted({s.name for s in selection.solvables() if self._usable(s)})


def creation_rank(name: str, indexes: Sequence[str | Mapping[str, int]]) -> int:
    """apt's package ID order for ``name`` (larger: created later) when its cache generator
    reads the indexes in this order: ``IndexFacts.mentions`` of each with a newline at both
    ends (searched as a substring: no table for a few names), or :func:`event_offsets` of
    it. The offset of an event's line is as good an order as its number."""

    def offset(events: str | Mapping[str, int], event: str) -> int:
        if isinstance(events, str):
            return events.find(f"\n{event}\n")
        found: int = events.get(event, -1)
        return found

    mentioned = False
    for number, events in enumerate(indexes):
        negative = offset(events, "-" + name)
        if negative >= 0 and not mentioned:
            return (number << 32) + negative
        plain = offset(events, name)
        if plain >= 0:
            return (number << 32) + plain
        mentioned = mentioned or negative >= 0 or offset(events, "~" + name) >= 0
    return len(indexes) << 32


def event_offsets(mentions: str) -> dict[str, int]:
    """{event: offset of the newline before it} of newline-wrapped mentions."""
    return {m.group(1): m.start() for m in _EVENT.finditer(mentions)}
