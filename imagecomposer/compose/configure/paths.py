"""Owners and file writes inside an image tree, through
:class:`imagecomposer.foundation.rootfs.Root`.

Every path is an image path, resolved inside the tree (``/`` and absolute symlinks mean the
tree's root, ``..`` stops there) and every write acts through the resolved parent
directory: a symlink at the final name is replaced, never written through. See
docs/compose.md, "Writing into the image tree".
"""

from __future__ import annotations

import os
from pathlib import Path

from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root


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


def write(tree: Path, path: str, content: str | bytes, *, mode: int = 0o644, uid: int = 0,
          gid: int = 0) -> Path:
    """Write ``content`` to the image path ``path`` atomically (parents created 0755); a
    symlink there is replaced. Returns the host path written."""
    owner = (uid, gid) != (os.geteuid(), os.getegid())
    with Root(tree) as root:
        return root.write(path, content, mode=mode, uid=uid if owner else None,
                          gid=gid if owner else None)


def symlink(tree: Path, path: str, target: str) -> Path:
    """Make the image path ``path`` a symlink to ``target`` (replacing what was there)."""
    with Root(tree) as root:
        return root.symlink(path, target)


def installed(tree: Path, *candidates: str) -> bool:
    """Whether any of the image paths ``candidates`` exists (a package-installed marker)."""
    with Root(tree) as root:
        return any(root.exists(c) for c in candidates)
