"""Owners and file writes inside an image tree, through
:class:`imagecomposer.foundation.rootfs.Root`.

Every path is an image path, resolved inside the tree (``/`` and absolute symlinks mean the
tree's root, ``..`` stops there) and every write acts through the resolved parent
directory: a symlink at the final name is replaced, never written through. See
docs/compose.md, "Writing into the image tree". ``write``, ``symlink`` and ``installed``
live in :mod:`imagecomposer.foundation.rootfs.paths` (the family modules use them too).
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.rootfs.paths import installed, symlink, write

__all__ = ["gid_of", "groups", "installed", "passwd", "symlink", "uid_of", "write"]


def _table(tree: Path, name: str) -> dict[str, list[str]]:
    with Root(tree) as root:
        if not root.is_file(f"/etc/{name}"):
            return {}
        text = root.read_text(f"/etc/{name}")
    rows = (line.split(":") for line in text.splitlines() if line.strip())
    return {row[0]: row for row in rows if len(row) >= 4}


def passwd(tree: Path) -> dict[str, list[str]]:
    """The image's /etc/passwd rows by user name (never the host's)."""
    return _table(tree, "passwd")


def groups(tree: Path) -> dict[str, list[str]]:
    """The image's /etc/group rows by group name."""
    return _table(tree, "group")


def uid_of(tree: Path, user: str) -> int:
    if user.isdigit():
        return int(user)
    row = passwd(tree).get(user)
    if row is None:
        raise ComposeError(f"user {user!r} does not exist in the image")
    return int(row[2])


def gid_of(tree: Path, group: str) -> int:
    if group.isdigit():
        return int(group)
    row = groups(tree).get(group)
    if row is None:
        raise ComposeError(f"group {group!r} does not exist in the image")
    return int(row[2])
