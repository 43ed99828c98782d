"""What libsolv does not keep from a Packages index, and indexing a directory of .deb files.

libsolv's deb parser drops ``Essential``, ``Important``/``Protected`` and ``Priority``, and
keeps no trace of the order in which apt creates its package records. apt's choices depend
on all of them (see :mod:`imagecomposer.families.deb.aptmodel`), so one pass over the index text
collects them into a small JSON-able :class:`IndexFacts`, cached next to the ``.solv`` file.

apt also visits a package's relations in the order they are written; a ``.solv`` file
stores each relation array sorted by its own string ids. :func:`record_relation_order`
stores the written order with each package (a copy of its relation ids, in a repodata key
libsolv writes as is) and :func:`relations` gives them back in that order, from a parsed or
a cached pool.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import attrs
import libarchive

from imagecomposer.foundation.errors import RepositoryError

FACTS_FORMAT = 6  # sidecars of another format are parsed again


@attrs.frozen
class IndexFacts:
    names: frozenset[str]
    essential: frozenset[str]
    priority: dict[str, str]  # every value but "optional"; "" when a stanza has none
    important: frozenset[str] = frozenset()  # "Important: yes" or "Protected: yes"
    # The mentions that can create apt's package records while its cache generator reads
    # this index (apt's package IDs break ties between providers), one per line in order:
    # "name" the first plain mention (a Package stanza, a positive relation, a Provides);
    # "-name" an unqualified Conflicts/Breaks/Replaces before any other mention (it creates
    # the record only if no index read before mentions the name); "~name" name:any or
    # another architecture before any other mention (a group, no native record). See
    # :func:`imagecomposer.families.deb.aptpool.creation_rank`. One string: quick to load.
    mentions: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"format": FACTS_FORMAT, "names": sorted(self.names),
                "essential": sorted(self.essential), "priority": self.priority,
                "important": sorted(self.important), "mentions": self.mentions}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexFacts | None:
        """The facts, or None for a sidecar of another format (parse the index again)."""
        if not isinstance(data, dict) or data.get("format") != FACTS_FORMAT:
            return None
        return cls(frozenset(data["names"]), frozenset(data["essential"]),
                   dict(data["priority"]), frozenset(data["important"]),
                   str(data["mentions"]))


_FIELD_LINE = re.compile(
    r"^(Package|Essential|Important|Protected|Priority|Pre-Depends|Depends|Conflicts|Breaks|"
    r"Recommends|Suggests|Replaces|Enhances|Provides|Filename|Size):[ \t]*(.*)$",
    re.MULTILINE | re.IGNORECASE)
# apt's cache generator parses a stanza's relations in this order (deblistparser.cc)
_RELATIONS = ("pre-depends", "depends", "conflicts", "breaks", "recommends", "suggests",
              "replaces", "enhances", "provides")
_NEGATIVE = frozenset({"conflicts", "breaks", "replaces"})
_ITEM = re.compile(r"([^\s(|,]+)[^,|]*")  # the name of each alternative of a relation
_KEYS = {k: k.lower() for k in ("Package", "Essential", "Important", "Protected", "Priority",
                                "Pre-Depends", "Depends", "Conflicts", "Breaks", "Recommends",
                                "Suggests", "Replaces", "Enhances", "Provides", "Filename",
                                "Size")}


class _Mentions:
    """Collects :attr:`IndexFacts.mentions`."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.seen: set[str] = set()  # any mention
        self.plain: set[str] = set()

    def add(self, name: str, kind: str) -> None:
        """One mention of ``name``: "+" plain, "-" negative, "~" another architecture."""
        if name in self.plain:
            return
        if kind == "+":
            self.plain.add(name)
            self.seen.add(name)
            self.events.append(name)
        elif name not in self.seen:
            self.seen.add(name)
            self.events.append(kind + name)

    def stanza(self, fields: dict[str, str]) -> None:
        """The mentions of one stanza's relation fields, in apt's order."""
        plain = self.plain
        for key in _RELATIONS:
            value = fields.get(key)
            if not value:
                continue
            kind = "-" if key in _NEGATIVE else "+"
            for item in _ITEM.findall(value):
                if item in plain:
                    continue
                name, _, arch = item.partition(":")
                if arch and arch != "native":
                    if key != "provides":  # name:any, name:i386: the group, not our record
                        self.add(name, "~")
                else:
                    self.add(name, kind)


def scan(text: str) -> tuple[IndexFacts, dict[str, int]]:
    """Collect :class:`IndexFacts` and the download size by Filename from a Packages index.

    (libsolv's deb parser does not keep ``Size``; the loader stores it into the pool.) One
    regular-expression pass picks the few fields needed out of the 50 MB of a full suite.
    """
    names: set[str] = set()
    essential: set[str] = set()
    important: set[str] = set()
    priority: dict[str, str] = {}
    sizes: dict[str, int] = {}
    mentions = _Mentions()
    fields: dict[str, str] = {}
    current = ""
    filename = ""

    def close() -> None:
        if current:
            if "priority" not in fields:
                priority[current] = ""
            mentions.stanza(fields)

    for field, raw in _FIELD_LINE.findall(text):
        key = _KEYS.get(field) or field.lower()
        value = raw.strip()
        if key == "package":
            close()
            current = value
            filename = ""
            fields = {}
            names.add(value)
            mentions.add(value, "+")
            continue
        fields[key] = value
        if key == "filename":
            filename = value
        elif key == "size":
            if value.isdigit():
                sizes[filename or current] = int(value)
        elif key == "essential":
            if value.lower() == "yes":
                essential.add(current)
        elif key in ("important", "protected"):
            if value.lower() == "yes":
                important.add(current)
        elif key == "priority" and value != "optional":
            priority[current] = value
    close()
    facts = IndexFacts(frozenset(names), frozenset(essential), priority, frozenset(important),
                       "\n".join(mentions.events))
    return facts, sizes


ORDER_KEY = "imagecomposer:relation-order"


ORDER_END = "imagecomposer:end"


def _arrays() -> tuple[int, ...]:
    """The libsolv keys whose written order :func:`record_relation_order` keeps."""
    import solv

    return (solv.SOLVABLE_REQUIRES, solv.SOLVABLE_CONFLICTS, solv.SOLVABLE_RECOMMENDS)


def record_relation_order(repo: Any) -> None:
    """Store each package's relation order (lost by ``.solv`` files) in ``repo``.

    Call on a repo parsed from the index text, before it is written to a ``.solv`` file.
    Per package with two relations or more in one array: the ids of its Requires
    (Pre-Depends and Depends), Conflicts (and Breaks) and Recommends arrays as written,
    each array followed by an end mark (Suggests: order does not matter to apt).
    """
    data = repo.add_repodata()
    key = repo.pool.str2id(ORDER_KEY)
    end = repo.pool.str2id(ORDER_END)
    arrays = _arrays()
    for solvable in repo.solvables_iter():
        found = [solvable.lookup_deparray(array, 0) for array in arrays]
        if all(len(deps) < 2 for deps in found):
            continue
        sid = solvable.id
        for deps in found:
            if len(deps) > 1:  # one relation has no order to keep
                for dep in deps:
                    data.add_idarray(sid, key, dep.id)
            data.add_idarray(sid, key, end)
    data.internalize()


def relations(solvable: Any, keys: tuple[int, int] | None = None) -> list[list[Any]]:
    """Pre-Depends, Depends, Conflicts+Breaks, Recommends and Suggests of ``solvable``, each
    in the written order (:func:`record_relation_order`), from a parsed or cached pool.
    ``keys``: the pool's ids of :data:`ORDER_KEY` and :data:`ORDER_END` (0 if absent)."""
    import solv

    pool = solvable.pool
    key, end = keys or (pool.str2id(ORDER_KEY, False), pool.str2id(ORDER_END, False))
    recorded = solvable.lookup_idarray(key) if key else []
    marker = solv.SOLVABLE_PREREQMARKER
    requires = solvable.lookup_deparray(solv.SOLVABLE_REQUIRES, 0)
    cut = next((i for i, d in enumerate(requires) if d.id == marker), len(requires))
    arrays = [requires[cut + 1:], requires[:cut],
              solvable.lookup_deparray(solv.SOLVABLE_CONFLICTS, 0),
              solvable.lookup_deparray(solv.SOLVABLE_RECOMMENDS, 0),
              solvable.lookup_deparray(solv.SOLVABLE_SUGGESTS, 0)]
    if not recorded:
        return arrays
    position: dict[int, int] = {}
    segment = 0
    for index, dep in enumerate(recorded):
        if dep == end:
            segment += 1
        else:
            position.setdefault((segment << 32) | (dep & 0xFFFFFFFF), index)
    for number, segment in ((0, 0), (1, 0), (2, 1), (3, 2)):  # arrays -> recorded segments
        deps = arrays[number]
        if len(deps) > 1:
            ranks = [position.get((segment << 32) | (d.id & 0xFFFFFFFF), -1) for d in deps]
            if -1 not in ranks:
                arrays[number] = [deps[i] for i in sorted(range(len(deps)),
                                                          key=ranks.__getitem__)]
    return arrays


def _control_of(deb: Path) -> str:
    """The ``control`` file of a .deb, read with libarchive (ar, then control.tar.*)."""
    try:
        with libarchive.file_reader(str(deb)) as outer:
            for entry in outer:
                if entry.pathname.startswith("control.tar"):
                    data = b"".join(entry.get_blocks())
                    with libarchive.memory_reader(data) as inner:
                        for member in inner:
                            if member.pathname.lstrip("./") == "control":
                                return b"".join(member.get_blocks()).decode("utf-8")
    except libarchive.ArchiveError as exc:
        raise RepositoryError(f"{deb}: not a valid .deb file: {exc}") from exc
    raise RepositoryError(f"{deb}: not a valid .deb file: no control file")


def index_directory(directory: Path) -> str:
    """A Packages index for every ``*.deb`` below ``directory`` (Filename relative to it)."""
    stanzas = []
    for deb in sorted(directory.rglob("*.deb")):
        control = _control_of(deb).strip("\n")
        data = deb.read_bytes()
        rel = deb.relative_to(directory).as_posix()
        stanzas.append(f"{control}\nFilename: {rel}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    if not stanzas:
        raise RepositoryError(f"{directory}: no .deb files found")
    return "\n".join(stanzas)
