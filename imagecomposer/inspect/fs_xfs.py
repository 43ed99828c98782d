"""XFS through ``xfs_db -r`` (xfsprogs), which takes no offset: the partition is copied out
sparsely once. Directories are listed by inode (``inode N`` + ``ls``), inodes described by
``print core.*``, and file data read from the disk file at the addresses ``bmap`` gives."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagecomposer.compose.disk.sparse import copy_out
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CorruptFilesystem
from imagecomposer.inspect.fsbase import Contents, Entry, FsReader, Node, kind_of

_LS = re.compile(r"^\s*\d+\s+(\d+)\s+(\w+)\s+0x[0-9a-f]+\s+(\d+)\s+(.*) \((?:good|bad)\)$")
_BMAP = re.compile(r"^data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) flag (\d)")
_FIELD = re.compile(r"^(core\.\w+|u3?\.symlink) = (.*)$")
MARK = "@@xfs@@"


class XfsReader(FsReader):
    fstype = "xfs"

    def __init__(self, disk: Path, offset: int, size: int, scratch: Path, where: str) -> None:
        runner.require("xfs_db", "xfsprogs")
        self.disk, self.offset, self.size, self.scratch, self.where = (disk, offset, size,
                                                                       scratch, where)
        self._copy: Path | None = None
        sb = self._run(["sb 0", "print blocksize agblocks rootino"])[0]
        values = dict(line.split(" = ", 1) for line in sb.splitlines() if " = " in line)
        try:
            self.block = int(values["blocksize"])
            self.agblocks = int(values["agblocks"])
            self.rootino = int(values["rootino"])
        except (KeyError, ValueError):
            raise CorruptFilesystem(f"Corrupt filesystem: the XFS superblock in {where} "
                                    "cannot be read") from None

    def _device(self) -> Path:
        if self._copy is None:
            self._copy = self.scratch / "xfs.img"
            copy_out(self.disk, self.offset, self.size, self._copy)
        return self._copy

    def _run(self, commands: Sequence[str]) -> list[str]:
        """Run commands; the output of each group between ``echo MARK`` lines."""
        script = [f"echo {MARK}"]
        for command in commands:
            script += [command] if command != "|" else [f"echo {MARK}"]
        with tempfile.NamedTemporaryFile("w", dir=self.scratch, suffix=".xfs_db",
                                         delete=False) as handle:
            handle.write("\n".join(script) + "\n")
            name = handle.name
        try:
            done = runner.run(["xfs_db", "-r", "-c", f"source {name}", self._device()],
                              capture=True, check=False, what="xfs_db")
        finally:
            Path(name).unlink(missing_ok=True)
        if done.returncode != 0:
            raise CorruptFilesystem(f"Corrupt filesystem: XFS in {self.where} cannot be read: "
                                    f"{done.output_tail.strip()[-300:]}")
        text = done.stdout.decode("utf-8", "surrogateescape")
        return re.split(rf"^{MARK} ?\n", text, flags=re.MULTILINE)[1:]

    def _groups(self, per_node: Sequence[Sequence[str]]) -> list[str]:
        commands: list[str] = []
        for group in per_node:
            commands += [*group, "|"]
        return self._run(commands[:-1]) if commands else []

    def root(self) -> Entry:
        return Entry("", self.rootino, "dir", 0o755, 0, 0, 0)

    def _describe(self, nodes: Sequence[int]) -> dict[int, dict[str, str]]:
        out = self._groups([[f"inode {n}", "print core.mode core.uid core.gid core.size"]
                            for n in nodes])
        found: dict[int, dict[str, str]] = {}
        for node, text in zip(nodes, out, strict=True):
            found[node] = {m.group(1): m.group(2)
                           for m in map(_FIELD.match, text.splitlines()) if m}
        return found

    def list_dirs(self, nodes: Sequence[Node]) -> dict[Node, list[Entry]]:
        out = self._groups([[f"inode {n}", "ls"] for n in nodes])
        children: dict[Node, list[tuple[str, int]]] = {}
        for node, text in zip(nodes, out, strict=True):
            children[node] = [(m.group(4)[:int(m.group(3))], int(m.group(1)))
                              for m in map(_LS.match, text.splitlines())
                              if m and m.group(4) not in (".", "..")]
        inodes = sorted({ino for pairs in children.values() for _, ino in pairs})
        info = self._describe(inodes)
        listed: dict[Node, list[Entry]] = {}
        for node, pairs in children.items():
            entries = []
            for name, ino in pairs:
                core = info.get(ino, {})
                try:
                    mode = int(core["core.mode"], 8)
                    entries.append(Entry(name, ino, kind_of(mode), mode & 0o7777,
                                         int(core["core.uid"]), int(core["core.gid"]),
                                         int(core["core.size"])))
                except (KeyError, ValueError):
                    continue
            listed[node] = entries
        return listed

    def read_links(self, nodes: Sequence[Node]) -> dict[Node, str]:
        out = self._groups([[f"inode {n}", "print u3.symlink", "print u.symlink"]
                            for n in nodes])
        found: dict[Node, str] = {}
        remote: list[Node] = []
        for node, text in zip(nodes, out, strict=True):
            match = re.search(r'^u3?\.symlink = "(.*)"$', text, re.MULTILINE)
            if match:
                found[node] = match.group(1)
            else:
                remote.append(node)
        for node, data in self.read_files(remote).items():
            found[node] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        return found

    def extents(self, nodes: Sequence[Node]) -> dict[Node, list[tuple[int, int, int, bool]]]:
        out = self._groups([[f"inode {n}", "bmap"] for n in nodes])
        found = {}
        for node, text in zip(nodes, out, strict=True):
            found[node] = [(int(m.group(1)), int(m.group(2)) * self.agblocks + int(m.group(3)),
                            int(m.group(4)), m.group(5) == "1")
                           for m in map(_BMAP.match, text.splitlines()) if m]
        return found

    def content(self, fd: int, size: int, extents: list[tuple[int, int, int, bool]]
                 ) -> Iterator[bytes]:
        position = 0
        for logical, physical, count, unwritten in sorted(extents):
            start = logical * self.block
            if start >= size:
                break
            if start > position:
                yield bytes(start - position)
            want = min(count * self.block, size - start)
            if unwritten:
                yield bytes(want)
            else:
                at = self.offset + physical * self.block
                while want > 0:
                    chunk = os.pread(fd, min(want, 8 << 20), at)
                    if not chunk:
                        return
                    yield chunk
                    at += len(chunk)
                    want -= len(chunk)
            position = start + min(count * self.block, size - start)
        if position < size:
            yield bytes(size - position)

    def _sizes(self, nodes: Sequence[Node]) -> dict[Node, int]:
        info = self._describe([int(n) for n in nodes])
        return {n: int(info[int(n)].get("core.size", 0)) for n in nodes}

    def read_files(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        if not nodes:
            return {}
        sizes = self._sizes(nodes)
        extents = self.extents(nodes)
        fd = os.open(self.disk, os.O_RDONLY)
        try:
            return {n: b"".join(self.content(fd, sizes[n], extents[n])) for n in nodes}
        finally:
            os.close(fd)

    def contents(self, entries: Sequence[Entry]) -> Contents:
        return _XfsContents(self, entries)


class _XfsContents(Contents):
    def __init__(self, reader: XfsReader, entries: Sequence[Entry]) -> None:
        self.reader = reader
        self.sizes = {e.node: e.size for e in entries}
        self.extents = reader.extents([e.node for e in entries if e.size])
        self.fd = os.open(reader.disk, os.O_RDONLY)

    def chunks(self, node: Node) -> Iterator[bytes]:
        yield from self.reader.content(self.fd, self.sizes[node], self.extents.get(node, []))

    def close(self) -> None:
        os.close(self.fd)
