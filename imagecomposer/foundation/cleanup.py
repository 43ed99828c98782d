"""Removing work trees safely: never through a mount point.

Chroot mounts live in private namespaces and vanish with their process, so a work tree should
never hold a mount. This is the belt to those braces: before deleting, /proc/self/mountinfo
is checked and a tree with anything mounted below it is refused, not deleted (the reference
tool once wiped a host's /dev by deleting through a bind mount).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from imagecomposer.foundation.errors import ComposeError

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or below ``path`` in this process's mount namespace."""
    if not MOUNTINFO.exists():
        return []
    base = path.resolve()
    found = []
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = Path(_unescape(fields[4]))
        if point == base or base in point.parents:
            found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """``rm -rf path``, refusing if anything is mounted below it."""
    if not path.exists() and not path.is_symlink():
        return
    mounted = mounts_below(path)
    if mounted:
        raise ComposeError(f"refusing to remove {path}: {mounted[0]} is mounted below it")
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    shutil.rmtree(path)
