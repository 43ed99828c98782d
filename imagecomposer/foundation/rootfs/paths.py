"""File writes into an image tree by image path, and the package-installed marker test.

Every path is an image path, resolved inside the tree by
:class:`~imagecomposer.foundation.rootfs.Root` (``/`` and absolute symlinks mean the tree's
root, ``..`` stops there); a write acts through the resolved parent directory, so a symlink
at the final name is replaced, never written through.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagecomposer.foundation.rootfs.root import Root


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
