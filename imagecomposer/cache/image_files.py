"""How the image cache puts a build's outputs into an entry and back, and checks them:
reflink, else hard link, else sparse copy; the stat stamp of a checked file; what in a
restored staging directory is no longer what the lookup checked
(:mod:`imagecomposer.cache.images`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from imagecomposer.cache.image_entry import Entry
from imagecomposer.foundation.digest import content_known, sha256_known, sparse_sha256_of
from imagecomposer.foundation.errors import CommandError
from imagecomposer.foundation.runner import run


def file_digests(path: Path) -> tuple[str, str]:
    """The SHA256 and the sparse content digest of ``path`` (both known already when the
    build's finalize hashed this very file with its content digest: not read again)."""
    return sha256_known(path), content_known(path)


def stamp(st: os.stat_result) -> list[int]:
    """What must stay the same for a checked file to be the same bytes: the inode and its
    size, mtime and ctime (the kernel moves ctime on every write, truncation, utime and
    chmod; only root can set it)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def changed_since_checked(entry: Entry, stage: Path) -> str | None:
    """What in ``stage`` (the restored files) is not what the image cache's lookup checked,
    or None. A hard link must be the very inode that was hashed, unchanged (only this user
    can write it: :func:`link_or_copy` links nothing else); a reflink or a copy is hashed
    again."""
    for f in entry.files:
        path = stage / f.name
        st = path.lstat()
        seen = entry.checked.get(f.name)
        if seen is not None and (st.st_dev, st.st_ino) == (seen.dev, seen.ino):
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
                return f"{f.name} was modified"
            continue
        with path.open("rb") as fh:
            if sparse_sha256_of(fh) != f.content:
                return f"{f.name} does not match its stored digest"
    return None


def store_files(sources: list[Path], dest: Path) -> bool:
    """Put ``sources`` (a build's outputs) into the entry directory ``dest``: a reflink
    where the filesystem has them, else a hard link (O(1): never a second copy of a 2 GiB
    image) when this user owns the file and nobody else can write it, else a sparse copy.
    The entry's files are made read-only right after (so is the output a hard link shares
    its inode with: a restore links the same way); a write through one anyway breaks the
    entry's sealed digests, and the next lookup discards it. True when the files are hard
    links of ``sources``."""
    return bool(sources) and not _place(sources, dest,
                                        lambda st: private_to_user(st) and st.st_nlink == 1)


def link_or_copy(sources: list[Path], dest: Path) -> None:
    """Reflink when the filesystem can, else hard link (O(1) for any image size) when this
    user owns the file and nobody else can write it, else a sparse copy."""
    if _place(sources, dest, private_to_user):
        for path in dest.iterdir():
            path.chmod(0o644)


def private_to_user(st: os.stat_result) -> bool:
    """Owned by this user, and nobody else can write it."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _place(sources: list[Path], dest: Path, linkable: Callable[[os.stat_result], bool]
           ) -> bool:
    """Put ``sources`` into ``dest`` by reflink, else by hard link when every source is
    ``linkable``, else by a sparse copy; True when the files are new (reflink or copy),
    False when they are hard links sharing the sources' inodes."""
    if not sources:
        return False
    try:
        run(["cp", "--reflink=always", "-t", dest, *sources])
        return True
    except CommandError:
        _empty(dest)
    try:
        for src in sources:
            if not linkable(src.lstat()):
                raise PermissionError("another user or name could change it: copy it instead")
            os.link(src, dest / src.name)
        return False
    except OSError:
        _empty(dest)
    run(["cp", "--sparse=always", "-t", dest, *sources])
    return True


def _empty(directory: Path) -> None:
    for path in directory.iterdir():
        path.unlink()
