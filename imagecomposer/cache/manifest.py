"""Content manifests of directory trees: what the installed-tree cache seals and checks.

A manifest lists every path of a tree (the top directory is ``.``) with what makes it what
it is: its type, permission bits (setuid included), owner and group, and

- a regular file: its size and the SHA256 of its bytes,
- a symbolic link: its target,
- a character or block device: its major and minor numbers,

plus its extended attributes (file capabilities, ACLs, security labels). Modification
times are not part of it: a file rewritten with its time put back differs by content.

Entries are lists ``[path, kind, mode, uid, gid, detail, xattrs]`` sorted by path, so two
manifests compare line by line and :func:`first_difference` names the first path that
differs. Regular files are hashed by a few threads (``hashlib`` and ``os.read`` release the
GIL) while the walk goes on.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imagecomposer.foundation.digest import workers

Record = list[Any]  # [path, kind, mode, uid, gid, detail, xattrs]
FORMAT = 1
_BATCH_FILES = 64  # regular files per hashing task
_BATCH_BYTES = 8 << 20  # or this many bytes, whichever comes first
_READ = 1 << 20
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "link",
          stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket"}
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)


def _sha256(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        digest = hashlib.sha256()
        while block := os.read(fd, _READ):
            digest.update(block)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _hash_batch(batch: Sequence[tuple[Record, str]]) -> None:
    for record, path in batch:
        try:
            record[5] = f"{record[5]}:{_sha256(path)}"
        except OSError as exc:
            record[5] = f"{record[5]}:unreadable ({exc.strerror or exc})"


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return {}
        raise
    found = {}
    for name in sorted(names):
        try:
            found[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError as exc:
            if exc.errno not in _NO_XATTRS:
                raise
    return found


def _walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, host path, lstat) of ``root`` and everything below it, without
    following any symbolic link."""
    yield ".", root, os.lstat(root)
    stack = [("", root)]
    while stack:
        rel, host = stack.pop()
        with os.scandir(host) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            yield child, entry.path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((child, entry.path))


def of_tree(root: Path, *, parallel: int = 8) -> list[Record]:
    """The manifest of the tree at ``root`` (regular files hashed by up to ``parallel``
    threads, capped at the CPUs)."""
    records: list[Record] = []
    batch: list[tuple[Record, str]] = []
    batch_bytes = 0
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=workers(parallel),
                            thread_name_prefix="manifest") as pool:
        try:
            for rel, host, st in _walk(os.fsdecode(root)):
                kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
                detail: Any = ""
                if kind == "link":
                    detail = os.fsdecode(Path(host).readlink())
                elif kind in ("char", "block"):
                    detail = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
                elif kind == "file":
                    detail = str(st.st_size)
                record: Record = [rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                  detail, _xattrs(host)]
                records.append(record)
                if kind == "file":
                    batch.append((record, host))
                    batch_bytes += st.st_size
                    if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
                        futures.append(pool.submit(_hash_batch, batch))
                        batch, batch_bytes = [], 0
            if batch:
                futures.append(pool.submit(_hash_batch, batch))
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    records.sort(key=lambda r: r[0])
    return records


def encode(records: Sequence[Record]) -> bytes:
    """The manifest as the bytes that are stored and sealed."""
    return json.dumps({"format": FORMAT, "entries": list(records)}, separators=(",", ":"),
                      ensure_ascii=True).encode()


def decode(data: bytes) -> list[Record]:
    """The records of an encoded manifest; ValueError when it is not one."""
    parsed = json.loads(data)
    if not isinstance(parsed, dict) or parsed.get("format") != FORMAT or \
            not isinstance(parsed.get("entries"), list):
        raise ValueError("not a tree manifest of this version")
    records: list[Record] = parsed["entries"]
    if not all(isinstance(r, list) and len(r) == 7 and isinstance(r[0], str)
               for r in records):
        raise ValueError("not a tree manifest of this version")
    return records


_FIELDS = ("type", "mode", "owner", "group")


def _describe(want: Record, got: Record) -> str:
    path = want[0]
    if want[1] != got[1]:
        return f"{path}: a {got[1]}, the sealed manifest has a {want[1]}"
    for index, field in enumerate(_FIELDS[1:], start=2):
        if want[index] != got[index]:
            value = (lambda v: f"{v:04o}") if field == "mode" else str
            return f"{path}: {field} {value(got[index])}, sealed {value(want[index])}"
    if want[5] != got[5]:
        what = {"file": "content", "link": "link target", "char": "device number",
                "block": "device number"}.get(want[1], "details")
        return f"{path}: {what} differs from the sealed manifest"
    return f"{path}: extended attributes differ from the sealed manifest"


def first_difference(want: Sequence[Record], got: Sequence[Record]) -> str | None:
    """The first path (in path order) where the tree described by ``got`` differs from
    ``want``, with what differs; None when they are the same."""
    i = j = 0
    while i < len(want) or j < len(got):
        if j == len(got) or (i < len(want) and want[i][0] < got[j][0]):
            return f"{want[i][0]}: missing"
        if i == len(want) or got[j][0] < want[i][0]:
            return f"{got[j][0]}: not in the sealed manifest"
        if want[i] != got[j]:
            return _describe(want[i], got[j])
        i += 1
        j += 1
    return None
