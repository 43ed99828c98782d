"""A partition's content tree: how many bytes it needs in a filesystem, and its times.

:func:`plan_layout` sizes auto partitions from :func:`tree_size` and :func:`assemble` checks
free space with it. Allocated blocks are counted (not apparent sizes) plus one inode's
worth per entry, and hard links once. :func:`clamp_times` bounds the tree's file times by the
build epoch before a filesystem is made from it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

INODE_COST = 256
MIN_FILE = 4096


def tree_size(tree: Path) -> int:
    """Bytes ``tree`` occupies: data blocks rounded to 4 KiB, plus inode overhead."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(tree)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += INODE_COST
                if entry.is_dir(follow_symlinks=False):
                    total += MIN_FILE
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and st.st_size:
                    total += max(-(-st.st_size // MIN_FILE) * MIN_FILE, MIN_FILE)
    return total


def clamp_times(tree: Path, epoch: int) -> int:
    """Give every entry of ``tree`` newer than ``epoch`` (or with a fraction of a second) the
    time ``min(mtime, epoch)`` in whole seconds, as mtime and atime, the way mkosi and
    ``tar --clamp-mtime`` do; return how many entries changed. (Atimes are not stable:
    reading moves them. The filesystem builders store mtimes only, or set atime = mtime.)

    Files from packages keep their packaged times when those are older; everything the build
    wrote gets the epoch. The walk holds directory descriptors and never follows a symlink
    (a link's own time is set), so nothing outside the tree is touched. It goes bottom-up: a
    directory's time is set after the walk has read it (reading moves its atime), and setting
    a time never changes the parent's.
    """
    changed = 0
    limit = epoch * 1_000_000_000

    def clamp(name: str, dir_fd: int | None) -> None:
        nonlocal changed
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if st.st_mtime_ns > limit or st.st_mtime_ns % 1_000_000_000:
            stamp = min(st.st_mtime_ns // 1_000_000_000 * 1_000_000_000, limit)
            os.utime(name, ns=(stamp, stamp), dir_fd=dir_fd, follow_symlinks=False)
            changed += 1

    for _top, dirs, files, dir_fd in os.fwalk(tree, topdown=False, follow_symlinks=False):
        for name in (*dirs, *files):
            clamp(name, dir_fd)
    if not stat.S_ISLNK(os.lstat(tree).st_mode):
        clamp(str(tree), None)
    return changed
