"""Filesystems read through an extraction: FAT (mtools), erofs (fsck.erofs --extract).

The filesystem's own tool copies the whole tree into a private temporary directory once
(an ESP is tens of MB: about 0.1 s); the reader then answers from that copy. Owners are
reported only where the filesystem has them and the copy kept them (erofs extracted as
root); FAT has neither owners nor permission bits (None).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from imagecomposer.inspect.fsbase import Contents, Entry, FsReader, Node, kind_of


class DirReader(FsReader):
    """A filesystem extracted into ``tree`` (nodes are paths relative to it, "" the root)."""

    def __init__(self, fstype: str, extract: Callable[[Path], None], tree: Path, *,
                 owners: bool, modes: bool, case_insensitive: bool = False) -> None:
        self.fstype = fstype
        self._extract = extract
        self.tree = tree
        self.owners = owners
        self.modes = modes
        self.case_insensitive = case_insensitive
        self._ready = False

    def path(self, node: Node) -> Path:
        if not self._ready:
            self.tree.mkdir(parents=True, exist_ok=True)
            self._extract(self.tree)
            self._ready = True
        return self.tree / str(node) if node else self.tree

    def root(self) -> Entry:
        return Entry("", "", "dir", 0o755 if self.modes else None, 0 if self.owners else None,
                     0 if self.owners else None, 0)

    def list_dirs(self, nodes: Sequence[Node]) -> dict[Node, list[Entry]]:
        listed: dict[Node, list[Entry]] = {}
        for node in nodes:
            entries = []
            try:
                with os.scandir(self.path(node)) as found:
                    for item in found:
                        st = item.stat(follow_symlinks=False)
                        entries.append(Entry(
                            item.name, f"{node}/{item.name}" if node else item.name,
                            kind_of(st.st_mode), st.st_mode & 0o7777 if self.modes else None,
                            st.st_uid if self.owners else None,
                            st.st_gid if self.owners else None, st.st_size))
            except (FileNotFoundError, NotADirectoryError):
                pass
            listed[node] = entries
        return listed

    def read_links(self, nodes: Sequence[Node]) -> dict[Node, str]:
        return {n: str(self.path(n).readlink()) for n in nodes if self.path(n).is_symlink()}

    def read_files(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        return {n: self.path(n).read_bytes() for n in nodes if self.path(n).is_file()}

    def contents(self, entries: Sequence[Entry]) -> Contents:
        return _DirContents(self)


class _DirContents(Contents):
    def __init__(self, reader: DirReader) -> None:
        self.reader = reader

    def chunks(self, node: Node) -> Iterator[bytes]:
        with self.reader.path(node).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
