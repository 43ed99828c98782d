"""squashfs through squashfs-tools at the partition's offset (``unsquashfs -o N``).

``unsquashfs -lln`` lists the whole tree with numeric owners, modes, sizes and symlink
targets in one run; ``-cat`` reads files (one run for a batch: the sizes split the stream);
hashing every file extracts the tree once into a private temporary directory.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Sequence
from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CorruptFilesystem
from imagecomposer.inspect.fs_dir import DirReader
from imagecomposer.inspect.fsbase import Contents, Entry, FsReader, Node

_LINE = re.compile(r"^([-dlcbps])([-rwxsStT]{9})\s+(\d+)/(\d+)\s+(\d+|\d+,\s*\d+)\s+"
                   r"\d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(/.*)?$")
_KINDS = {"-": "file", "d": "dir", "l": "symlink", "c": "char", "b": "block", "p": "fifo",
          "s": "socket"}
_BATCH = 200  # files per -cat run


def parse_mode(text: str) -> int:
    """``rwsr-xr-t`` -> 0o5755."""
    bits = 0
    for index, (char, value) in enumerate(zip(text, (0o400, 0o200, 0o100, 0o40, 0o20, 0o10,
                                                     0o4, 0o2, 0o1), strict=True)):
        if char in "rwxst":
            bits |= value
        if index in (2, 5, 8) and char in "sStT":
            bits |= {2: stat.S_ISUID, 5: stat.S_ISGID, 8: stat.S_ISVTX}[index]
    return bits


class SquashfsReader(FsReader):
    fstype = "squashfs"

    def __init__(self, disk: Path, offset: int, scratch: Path, where: str) -> None:
        runner.require("unsquashfs", "squashfs-tools")
        self.disk, self.offset, self.scratch, self.where = disk, offset, scratch, where
        self._children: dict[str, list[Entry]] | None = None
        self._targets: dict[str, str] = {}
        self._extracted: DirReader | None = None

    def _unsquashfs(self, *args: str | Path) -> bytes:
        done = runner.run(["unsquashfs", "-n", "-o", str(self.offset), *args], capture=True,
                          check=False, what="unsquashfs")
        if done.returncode != 0:
            raise CorruptFilesystem(f"Corrupt filesystem: squashfs in {self.where} cannot be "
                                    f"read: {done.output_tail.strip()[-300:]}")
        return done.stdout

    def _listing(self) -> dict[str, list[Entry]]:
        if self._children is None:
            children: dict[str, list[Entry]] = {"": []}
            text = self._unsquashfs("-lln", self.disk).decode("utf-8", "surrogateescape")
            for line in text.splitlines():
                match = _LINE.match(line)
                if match is None or not match.group(6):
                    continue
                path, target = match.group(6), None
                kind = _KINDS[match.group(1)]
                if kind == "symlink" and " -> " in path:
                    path, target = path.split(" -> ", 1)
                node = path.lstrip("/")
                parent, _, name = node.rpartition("/")
                size = match.group(5)
                entry = Entry(name, node, kind, parse_mode(match.group(2)), int(match.group(3)),
                              int(match.group(4)), int(size) if size.isdigit() else 0)
                children.setdefault(parent, []).append(entry)
                if kind == "dir":
                    children.setdefault(node, [])
                if target is not None:
                    self._targets[node] = target
            self._children = children
        return self._children

    def root(self) -> Entry:
        return Entry("", "", "dir", 0o755, 0, 0, 0)

    def list_dirs(self, nodes: Sequence[Node]) -> dict[Node, list[Entry]]:
        listing = self._listing()
        return {n: list(listing.get(str(n), [])) for n in nodes}

    def read_links(self, nodes: Sequence[Node]) -> dict[Node, str]:
        self._listing()
        return {n: self._targets[str(n)] for n in nodes if str(n) in self._targets}

    def read_files(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        sizes = {e.node: e.size for entries in self._listing().values() for e in entries}
        found: dict[Node, bytes] = {}
        wanted = [n for n in nodes if n in sizes]
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start:start + _BATCH]
            data = self._unsquashfs("-no-wildcards", "-cat", self.disk, *map(str, chunk))
            position = 0
            for node in chunk:
                found[node] = data[position:position + sizes[node]]
                position += sizes[node]
        return found

    def contents(self, entries: Sequence[Entry]) -> Contents:
        if self._extracted is None:
            def extract(target: Path) -> None:
                target.rmdir()
                self._unsquashfs("-d", target, self.disk)

            self._extracted = DirReader("squashfs", extract, self.scratch / "tree",
                                        owners=False, modes=False)
        return self._extracted.contents(entries)
