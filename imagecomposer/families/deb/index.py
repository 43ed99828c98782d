"""What libsolv does not keep from a Packages index, and indexing a directory of .deb files.

libsolv's deb parser drops ``Essential`` and ``Priority`` and keeps no trace of the order of
``a | b`` alternatives. apt's choices depend on all three, so one pass over the index text
collects them into a small JSON-able :class:`IndexFacts`, cached next to the ``.solv`` file.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import libarchive

from imagecomposer.foundation.errors import RepositoryError


@attrs.frozen
class IndexFacts:
    names: frozenset[str]
    essential: frozenset[str]
    priority: dict[str, str]  # only values other than "optional"/"extra"
    alternatives: dict[str, int]  # +1 each time a name is a first alternative, -1 a later one
    provided: frozenset[str]  # names that appear in some Provides

    def to_json(self) -> dict[str, Any]:
        return {"names": sorted(self.names), "essential": sorted(self.essential),
                "priority": self.priority, "alternatives": self.alternatives,
                "provided": sorted(self.provided)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexFacts:
        return cls(frozenset(data["names"]), frozenset(data["essential"]),
                   dict(data["priority"]), dict(data["alternatives"]),
                   frozenset(data["provided"]))


def _dep_name(item: str) -> str:
    return item.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0].strip()


_FIELD_LINE = re.compile(
    r"^(Package|Essential|Priority|Depends|Pre-Depends|Recommends|Provides|Filename|Size):"
    r"[ \t]*(.*)$", re.MULTILINE | re.IGNORECASE)


def scan(text: str) -> tuple[IndexFacts, dict[str, int]]:
    """Collect :class:`IndexFacts` and the download size by Filename from a Packages index.

    (libsolv's deb parser does not keep ``Size``; the loader stores it into the pool.) One
    regular-expression pass picks the few fields needed out of the 50 MB of a full suite.
    """
    names: set[str] = set()
    essential: set[str] = set()
    priority: dict[str, str] = {}
    alternatives: Counter[str] = Counter()
    provided: set[str] = set()
    sizes: dict[str, int] = {}
    current = ""
    filename = ""
    for match in _FIELD_LINE.finditer(text):
        key = match.group(1).lower()
        value = match.group(2).strip()
        if key == "package":
            current = value
            filename = ""
            names.add(value)
        elif key == "filename":
            filename = value
        elif key == "size":
            if value.isdigit():
                sizes[filename or current] = int(value)
        elif key == "essential":
            if value.lower() == "yes":
                essential.add(current)
        elif key == "priority":
            if value not in ("optional", "extra"):
                priority[current] = value
        elif key == "provides":
            provided.update(_dep_name(item) for item in value.split(",") if item.strip())
        elif "|" in value:
            for item in value.split(","):
                if "|" in item:
                    alts = [_dep_name(a) for a in item.split("|")]
                    alternatives[alts[0]] += 1
                    for later in alts[1:]:
                        alternatives[later] -= 1
    facts = IndexFacts(frozenset(names), frozenset(essential), priority, dict(alternatives),
                       frozenset(provided))
    return facts, sizes


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
