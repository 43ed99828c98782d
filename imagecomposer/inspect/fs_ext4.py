"""ext2/3/4 through e2fsprogs' ``debugfs``, at the partition's offset in the disk file.

``debugfs -c -f CMDS 'disk.raw?offset=N'`` opens the filesystem read-only without its
bitmaps and runs a whole batch of requests in one process; every request is echoed as
``debugfs: REQUEST`` on standard output, which splits the answers. Everything is addressed
by inode number (``<123>``), so no path ever needs quoting. File contents are hashed
straight from the disk file: ``ex <ino>`` gives each file's extents (holes and
uninitialised extents read as zeros); a file without extents (block-mapped ext2/3, inline
data) is dumped by debugfs instead.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CorruptFilesystem
from imagecomposer.inspect.fsbase import Contents, Entry, FsReader, Node, kind_of

ROOT_INODE = 2
_OPEN_FAILED = ("Filesystem not open", "while trying to open", "Bad magic number",
                "superblock is corrupt", "Superblock checksum does not match")


class Ext4Reader(FsReader):
    fstype = "ext4"

    def __init__(self, disk: Path, offset: int, size: int, scratch: Path, where: str) -> None:
        runner.require("debugfs", "e2fsprogs")
        self.disk = disk
        self.offset = offset
        self.size = size
        self.scratch = scratch
        self.where = where  # "partition 2 (root) of IMAGE", for error messages
        self.device = f"{disk}?offset={offset}"
        self.block_size = superblock_block_size(disk, offset)

    # --- batches ------------------------------------------------------------------------

    def batch(self, requests: Sequence[str]) -> list[bytes]:
        """The standard output of each request, in order."""
        if not requests:
            return []
        with tempfile.NamedTemporaryFile("w", dir=self.scratch, suffix=".debugfs",
                                         delete=False) as handle:
            handle.write("\n".join(requests) + "\n")
            script = Path(handle.name)
        try:
            done = runner.run(["debugfs", "-c", "-f", script, self.device], capture=True,
                              what="debugfs")
        finally:
            script.unlink(missing_ok=True)
        if any(marker in done.output_tail for marker in _OPEN_FAILED):
            reason = next((line for line in done.output_tail.splitlines()
                           if any(m in line for m in _OPEN_FAILED[1:])),
                          done.output_tail.splitlines()[-1])
            raise CorruptFilesystem(f"Corrupt filesystem: ext4 in {self.where} cannot be "
                                    f"opened: {reason.strip()}")
        return _split(done.stdout, requests)

    # --- FsReader -----------------------------------------------------------------------

    def root(self) -> Entry:
        return Entry("", ROOT_INODE, "dir", 0o755, 0, 0, 0)

    def list_dirs(self, nodes: Sequence[Node]) -> dict[Node, list[Entry]]:
        outputs = self.batch([f"ls -p <{n}>" for n in nodes])
        listed: dict[Node, list[Entry]] = {}
        for node, out in zip(nodes, outputs, strict=True):
            entries = []
            for line in out.decode("utf-8", "surrogateescape").splitlines():
                entry = _parse_ls(line)
                if entry is not None and entry.name not in (".", ".."):
                    entries.append(entry)
            listed[node] = entries
        if nodes and ROOT_INODE in listed and not listed[ROOT_INODE]:
            raise CorruptFilesystem(f"Corrupt filesystem: the root directory of the ext4 "
                                    f"filesystem in {self.where} cannot be read")
        return listed

    def read_links(self, nodes: Sequence[Node]) -> dict[Node, str]:
        found: dict[Node, str] = {}
        slow: list[Node] = []
        for node, out in zip(nodes, self.batch([f"stat <{n}>" for n in nodes]), strict=True):
            match = re.search(rb'Fast link dest: "(.*)"\s*$', out, re.MULTILINE)
            if match:
                found[node] = match.group(1).decode("utf-8", "surrogateescape")
            elif out:
                slow.append(node)
        for node, data in self.read_files(slow).items():
            found[node] = data.decode("utf-8", "surrogateescape")
        return found

    def read_files(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        target = self.dump(nodes)
        try:
            return {n: (target / str(n)).read_bytes() for n in nodes
                    if (target / str(n)).is_file()}
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def dump(self, nodes: Sequence[Node]) -> Path:
        """A new directory holding each inode's content as a file named by its number."""
        target = Path(tempfile.mkdtemp(prefix="dump-", dir=self.scratch))
        if nodes:
            self.batch([f"dump <{n}> {target}/{n}" for n in nodes])
        return target

    def contents(self, entries: Sequence[Entry]) -> Contents:
        return _Ext4Contents(self, entries)

    def extent_chunks(self, fd: int, size: int, extents: list[tuple[int, int, int, bool]]
                      ) -> Iterator[bytes]:
        """The file's bytes: data read from the disk file, holes and uninitialised extents
        as zeros."""
        bs = self.block_size
        position = 0  # bytes of the file produced so far
        for logical, physical, length, uninit in sorted(extents):
            start = logical * bs
            if start >= size:
                break
            if start > position:
                yield from _zeros(start - position)
                position = start
            want = min(length * bs, size - start)
            if uninit:
                yield from _zeros(want)
            else:
                at = self.offset + physical * bs
                left = want
                while left:
                    chunk = os.pread(fd, min(left, 8 << 20), at)
                    if not chunk:
                        raise CorruptFilesystem(f"Corrupt filesystem: a file extent of the "
                                                f"ext4 filesystem in {self.where} lies beyond "
                                                "the end of the disk")
                    yield chunk
                    at += len(chunk)
                    left -= len(chunk)
            position += want
        if position < size:
            yield from _zeros(size - position)


class _Ext4Contents(Contents):
    """Extents of every file from one ``ex`` batch; files without extents (block-mapped
    ext2/3, inline data) dumped by debugfs into a temporary directory instead."""

    def __init__(self, reader: Ext4Reader, entries: Sequence[Entry]) -> None:
        self.reader = reader
        sized = [e for e in entries if e.kind == "file" and e.size]
        self.extents: dict[Node, tuple[int, list[tuple[int, int, int, bool]]]] = {}
        fallback: list[Node] = []
        for entry, out in zip(sized, reader.batch([f"ex <{e.node}>" for e in sized]),
                              strict=True):
            extents = _parse_extents(out)
            if extents is None:
                fallback.append(entry.node)
            else:
                self.extents[entry.node] = (entry.size, extents)
        self.dumped = reader.dump(fallback)
        self.fd = os.open(reader.disk, os.O_RDONLY)

    def chunks(self, node: Node) -> Iterator[bytes]:
        if node in self.extents:
            size, extents = self.extents[node]
            yield from self.reader.extent_chunks(self.fd, size, extents)
            return
        path = self.dumped / str(node)
        if path.is_file():
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk

    def close(self) -> None:
        os.close(self.fd)
        shutil.rmtree(self.dumped, ignore_errors=True)


def superblock_block_size(disk: Path, offset: int) -> int:
    with disk.open("rb") as handle:
        raw = os.pread(handle.fileno(), 1024, offset + 1024)
    if len(raw) < 1024 or struct.unpack_from("<H", raw, 0x38)[0] != 0xEF53:
        return 4096
    return int(1024 << struct.unpack_from("<I", raw, 0x18)[0])


_ZEROS = bytes(1 << 20)


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        step = min(count, len(_ZEROS))
        yield _ZEROS[:step] if step < len(_ZEROS) else _ZEROS
        count -= step


def _split(stdout: bytes, requests: Sequence[str]) -> list[bytes]:
    outputs: list[bytes] = []
    markers = [f"debugfs: {r}\n".encode() for r in requests]
    position = stdout.find(markers[0]) if markers else -1
    for index, marker in enumerate(markers):
        if position < 0:
            outputs.append(b"")
            continue
        begin = position + len(marker)
        following = (stdout.find(markers[index + 1], begin) if index + 1 < len(markers)
                     else len(stdout))
        end = following if following >= 0 else len(stdout)
        outputs.append(stdout[begin:end])
        position = following
    return outputs


def _parse_ls(line: str) -> Entry | None:
    # "/ino/mode/uid/gid/name/size/" (size empty for directories)
    if not line.startswith("/") or line.count("/") < 6:
        return None
    head, _, rest = line[1:].partition("/")
    mode_text, _, rest = rest.partition("/")
    uid, _, rest = rest.partition("/")
    gid, _, rest = rest.partition("/")
    name, _, size = rest[:-1].rpartition("/")
    try:
        mode = int(mode_text, 8)
        return Entry(name, int(head), kind_of(mode), mode & 0o7777, int(uid), int(gid),
                     int(size or 0))
    except ValueError:
        return None


def _parse_extents(out: bytes) -> list[tuple[int, int, int, bool]] | None:
    """Leaf extents (logical block, physical block, length, uninitialised); None when the
    inode has no extent tree (debugfs then prints no table).

    A leaf line reads ``1/ 1   2/  7   119 -   120 110663 - 110664      2 Uninit``: after
    "/" and "-" become spaces, eight numbers (level, depth, entry, entries, logical start
    and end, physical start and end, length) and the flags. Index lines have no physical
    end (seven numbers)."""
    if b"Level Entries" not in out:
        return None
    extents = []
    for line in out.splitlines()[1:]:
        words = line.replace(b"/", b" ").replace(b"-", b" ").split()
        if len(words) < 9 or not words[8].isdigit() or words[0] != words[1]:
            continue  # the header, an index node (level above the leaves), or noise
        extents.append((int(words[4]), int(words[6]), int(words[8]),
                        b"Uninit" in line))
    return extents
