"""The image cache's records: the key of an entry, the files it holds, and the sealed
``entry.json`` each entry directory carries (:mod:`imagecomposer.cache.images`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.foundation.units import human_size

ENTRY = "entry.json"
FILES = "files"
FORMAT = 3  # 2: files carry their sparse content digest; 3: the record is sealed


@attrs.frozen
class CacheKey:
    name: str  # image name: max_count applies per name
    digest: str
    inputs: tuple[tuple[str, str], ...]  # (input label, sha256), sorted


@attrs.frozen
class CachedFile:
    name: str
    size: int
    sha256: str
    mtime_ns: int  # as stored: a change means someone wrote through a hard link
    content: str  # sparse_sha256: checked before every restore


@attrs.frozen
class Checked:
    """The inode a lookup hashed, as it was then."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


@attrs.frozen(repr=False)
class Entry:
    name: str
    digest: str
    path: Path
    inputs: tuple[tuple[str, str], ...]
    files: tuple[CachedFile, ...]
    created: float
    last_used: float
    checked: Mapping[str, Checked] = attrs.field(factory=dict, eq=False)  # by file name
    shared: bool = attrs.field(default=False, eq=False)  # just taken from the shared store

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def __repr__(self) -> str:
        return (f"<image cache entry {self.name} {self.digest[:12]}: "
                f"{', '.join(f.name for f in self.files)} ({human_size(self.size)})>")


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "default"


def entry_key(name: str, digest: str) -> str:
    return f"{safe_name(name)}/{digest}"


def load_record(path: Path) -> dict[str, Any]:
    data = json.loads((path / ENTRY).read_text())
    if not isinstance(data, dict):
        raise ValueError("not a record")
    return data


def parse_record(path: Path, data: Mapping[str, Any], last_used: float | None = None
           ) -> Entry | None:
    try:
        if data.get("format") != FORMAT:
            return None
        return Entry(data["name"], data["digest"], path,
                     tuple((str(a), str(b)) for a, b in data["inputs"]),
                     tuple(CachedFile(**f) for f in data["files"]), data["created"],
                     data["created"] if last_used is None else last_used)
    except (ValueError, KeyError, TypeError):
        return None
