"""What every filesystem reader provides, and path resolution on top of it.

A reader answers in batches (one tool run answers many questions: that is what makes
reading an image offline fast): list these directories, read these symlinks, read these
files, hash these files. :class:`Tree` resolves paths on top, with the image's root as
``/`` (an absolute symlink points inside the image, as in a chroot), in rounds: each round
lists every directory any pending path needs next.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import attrs

from imagecomposer.foundation.errors import NotInImage

Node = int | str  # an ext4 inode number, or a path inside an extracted tree
MAX_HOPS = 40  # symlinks followed in one lookup, as Linux's ELOOP limit
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
          stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket"}


def kind_of(st_mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(st_mode), "unknown")


@attrs.frozen
class Entry:
    """One directory entry, as its directory lists it."""

    name: str
    node: Node
    kind: str  # file, dir, symlink, char, block, fifo, socket
    mode: int | None  # permission bits (07777); None where the filesystem has none (FAT)
    uid: int | None
    gid: int | None
    size: int


@attrs.frozen
class FileRecord:
    """One path of a filesystem with what ``compare --mode files`` compares."""

    path: str
    kind: str
    mode: int | None
    uid: int | None
    gid: int | None
    size: int
    target: str | None = None  # symlinks
    sha256: str | None = None  # regular files, when hashed


class FsReader(abc.ABC):
    """Batch access to one filesystem."""

    fstype: str
    case_insensitive: bool = False  # FAT: names match whatever their case

    @abc.abstractmethod
    def root(self) -> Entry: ...

    @abc.abstractmethod
    def list_dirs(self, nodes: Sequence[Node]) -> dict[Node, list[Entry]]:
        """The entries of each directory (without . and ..); a missing one maps to []."""

    @abc.abstractmethod
    def read_links(self, nodes: Sequence[Node]) -> dict[Node, str]: ...

    @abc.abstractmethod
    def read_files(self, nodes: Sequence[Node]) -> dict[Node, bytes]: ...

    @abc.abstractmethod
    def contents(self, entries: Sequence[Entry]) -> Contents:
        """Streaming access to the content of these regular files (prepared in one batch)."""

    def hash_files(self, entries: Sequence[Entry]) -> dict[Node, str]:
        """sha256 of the content of regular files."""
        sums: dict[Node, str] = {}
        with contextlib.closing(self.contents(entries)) as found:
            for entry in entries:
                digest = hashlib.sha256()
                for chunk in found.chunks(entry.node):
                    digest.update(chunk)
                sums[entry.node] = digest.hexdigest()
        return sums


class Contents(abc.ABC):
    """The content of a batch of files, chunk by chunk (nothing held in memory)."""

    @abc.abstractmethod
    def chunks(self, node: Node) -> Iterator[bytes]: ...

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release file descriptors and temporary copies."""


def same_content(a: Iterator[bytes], b: Iterator[bytes]) -> bool:
    """Whether two chunk streams hold the same bytes (chunk boundaries may differ); stops
    reading at the first difference. Bytes comparisons are memcmp; slices only where the
    boundaries differ."""
    pending = b""
    for chunk in a:
        while len(pending) < len(chunk):
            more = next(b, None)
            if more is None:
                return False
            pending = pending + more if pending else more
        if len(pending) == len(chunk):
            if pending != chunk:
                return False
            pending = b""
        else:
            if pending[:len(chunk)] != chunk:
                return False
            pending = pending[len(chunk):]
    return not pending and not any(b)



def first_unequal(a: bytes, b: bytes) -> int:
    """The index of the first byte where ``a`` and ``b`` differ (the shorter one's length
    when one is a prefix of the other), by halving: a few memcmp, no loop over bytes."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while high - low > 1:  # a[:low] == b[:low] and a[:high] != b[:high]
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


def first_content_difference(a: Iterator[bytes], b: Iterator[bytes]) -> int | None:
    """The offset of the first byte where two chunk streams differ (the shorter one's
    length when one ends first), None when they hold the same bytes; stops reading there."""
    offset, left, right = 0, b"", b""
    while True:
        left = left or next((c for c in a if c), b"")
        right = right or next((c for c in b if c), b"")
        if not left or not right:
            return None if not left and not right else offset
        step = min(len(left), len(right))
        if left[:step] != right[:step]:
            return offset + first_unequal(left[:step], right[:step])
        offset += step
        left, right = left[step:], right[step:]


_PENDING = object()


@attrs.define
class _Walk:
    stack: list[Entry]
    todo: list[str]
    hops: int = 0


class Tree:
    """Paths on one filesystem, resolved with its root as ``/``."""

    def __init__(self, reader: FsReader) -> None:
        self.reader = reader
        self.fstype = reader.fstype
        self._root = reader.root()
        self._dirs: dict[Node, dict[str, Entry]] = {}
        self._links: dict[Node, str] = {}

    # --- resolution ---------------------------------------------------------------------

    def lookup(self, paths: Iterable[str], *, follow: bool = True) -> dict[str, Entry | None]:
        """The entry each path names (symlinks followed, the last one too if ``follow``)."""
        states = {p: _Walk([self._root], _parts(p)) for p in set(paths)}
        found: dict[str, Entry | None] = {}
        while states:
            dirs: set[Node] = set()
            links: set[Node] = set()
            for path, walk in list(states.items()):
                outcome = self._advance(walk, follow, dirs, links)
                if outcome is not _PENDING:
                    found[path] = outcome if isinstance(outcome, Entry) else None
                    del states[path]
            if dirs:
                self._list(sorted(dirs, key=str))
            if links:
                self._links.update(self.reader.read_links(sorted(links, key=str)))
                for node in links:
                    self._links.setdefault(node, "")
        return found

    def _advance(self, walk: _Walk, follow: bool, dirs: set[Node],
                 links: set[Node]) -> object:
        while walk.todo:
            part = walk.todo[0]
            if part in ("", "."):
                walk.todo.pop(0)
                continue
            if part == "..":
                walk.todo.pop(0)
                if len(walk.stack) > 1:
                    walk.stack.pop()
                continue
            here = walk.stack[-1]
            if here.kind != "dir":
                return None
            listing = self._dirs.get(here.node)
            if listing is None:
                dirs.add(here.node)
                return _PENDING
            entry = listing.get(part)
            if entry is None and self.reader.case_insensitive:
                entry = next((e for n, e in listing.items() if n.lower() == part.lower()), None)
            if entry is None:
                return None
            if entry.kind == "symlink" and (follow or len(walk.todo) > 1):
                target = self._links.get(entry.node)
                if target is None:
                    links.add(entry.node)
                    return _PENDING
                walk.hops += 1
                if walk.hops > MAX_HOPS or not target:
                    return None
                walk.todo = _parts(target) + walk.todo[1:]
                if target.startswith("/"):
                    walk.stack = walk.stack[:1]
                continue
            walk.todo.pop(0)
            walk.stack.append(entry)
        return walk.stack[-1]

    def _list(self, nodes: Sequence[Node]) -> None:
        for node, entries in self.reader.list_dirs(nodes).items():
            self._dirs[node] = {e.name: e for e in entries}
        for node in nodes:
            self._dirs.setdefault(node, {})

    # --- reading ------------------------------------------------------------------------

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        """The content of each regular file (symlinks followed); None if there is none."""
        entries = self.lookup(paths)
        nodes = sorted({e.node for e in entries.values() if e is not None and e.kind == "file"},
                       key=str)
        data = self.reader.read_files(nodes) if nodes else {}
        return {p: (data.get(e.node) if e is not None and e.kind == "file" else None)
                for p, e in entries.items()}

    def read(self, path: str) -> bytes:
        found = self.read_many([path])[path]
        if found is None:
            raise NotInImage(f"{path} is not a file in this {self.fstype} filesystem")
        return found

    def listdir_many(self, paths: Iterable[str]) -> dict[str, list[Entry] | None]:
        entries = self.lookup(paths)
        missing = [e.node for e in entries.values()
                   if e is not None and e.kind == "dir" and e.node not in self._dirs]
        if missing:
            self._list(sorted(set(missing), key=str))
        return {p: (sorted(self._dirs[e.node].values(), key=lambda x: x.name)
                    if e is not None and e.kind == "dir" else None)
                for p, e in entries.items()}

    def listdir(self, path: str) -> list[Entry] | None:
        return self.listdir_many([path])[path]

    def readlink_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        entries = self.lookup(paths, follow=False)
        nodes = [e.node for e in entries.values()
                 if e is not None and e.kind == "symlink" and e.node not in self._links]
        if nodes:
            self._links.update(self.reader.read_links(sorted(set(nodes), key=str)))
        return {p: (self._links.get(e.node) if e is not None and e.kind == "symlink" else None)
                for p, e in entries.items()}

    def walk(self, *, hashes: bool = False) -> list[FileRecord]:
        """Every path of the filesystem (``/`` excluded), sorted; file hashes on request."""
        found = self.entries()
        sums: dict[Node, str] = {}
        if hashes:
            files = {e.node: e for _, e in found if e.kind == "file"}
            sums = self.reader.hash_files(sorted(files.values(), key=lambda e: str(e.node)))
        return [self.record(path, e, sums.get(e.node)) for path, e in found]

    def record(self, path: str, entry: Entry, sha256: str | None = None) -> FileRecord:
        return FileRecord(path, entry.kind, entry.mode, entry.uid, entry.gid,
                          entry.size if entry.kind in ("file", "symlink") else 0,
                          self._links.get(entry.node) if entry.kind == "symlink" else None,
                          sha256 if entry.kind == "file" else None)

    def entries(self) -> list[tuple[str, Entry]]:
        """Every (path, entry) of the filesystem, sorted by path; symlink targets read."""
        level: list[tuple[str, Entry]] = [("", self._root)]
        found: list[tuple[str, Entry]] = []
        while level:
            todo = [e.node for _, e in level if e.node not in self._dirs]
            if todo:
                self._list(todo)
            following: list[tuple[str, Entry]] = []
            for prefix, directory in level:
                for entry in self._dirs[directory.node].values():
                    path = f"{prefix}/{entry.name}"
                    found.append((path, entry))
                    if entry.kind == "dir":
                        following.append((path, entry))
            level = following
        link_nodes = sorted({e.node for _, e in found if e.kind == "symlink"} - set(self._links),
                            key=str)
        if link_nodes:
            self._links.update(self.reader.read_links(link_nodes))
        return sorted(found, key=lambda item: item[0])


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
