"""Paths, owners and file writes inside an image tree, with chroot semantics."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from imagecomposer.errors import ComposeError

MAX_SYMLINKS = 40


def inside(tree: Path, path: str | PurePosixPath, *, follow_last: bool = True) -> Path:
    """The host path of the image path ``path``, following symlinks as if chrooted in ``tree``.

    ``..`` never climbs above the tree root and absolute symlink targets are taken relative to
    the tree, so the result is always inside ``tree``.
    """
    parts = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = tree.joinpath(*resolved, part)
        if candidate.is_symlink() and (parts or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise ComposeError(f"too many levels of symbolic links in image path {path}")
            target = PurePosixPath(candidate.readlink())
            if target.is_absolute():
                resolved = []
            parts = [p for p in target.parts if p != "/"] + parts
            continue
        resolved.append(part)
    return tree.joinpath(*resolved)


def _table(tree: Path, name: str) -> dict[str, list[str]]:
    path = inside(tree, f"/etc/{name}")
    if not path.is_file():
        return {}
    rows = (line.split(":") for line in path.read_text().splitlines() if line.strip())
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
    """Write ``content`` to the image path ``path`` (parents created root-owned 0755)."""
    host = inside(tree, path)
    host.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    if host.is_symlink():
        host.unlink()
    tmp = host.with_name(f".{host.name}.imagecomposer-tmp")
    tmp.write_bytes(data)
    if (uid, gid) != (os.geteuid(), os.getegid()):
        os.chown(tmp, uid, gid)
    tmp.chmod(mode)
    tmp.replace(host)
    return host


def symlink(tree: Path, path: str, target: str) -> Path:
    """Make the image path ``path`` a symlink to ``target`` (replacing what was there)."""
    host = inside(tree, path, follow_last=False)
    host.parent.mkdir(parents=True, exist_ok=True)
    if host.is_symlink() or host.exists():
        host.unlink()
    host.symlink_to(target)
    return host


def installed(tree: Path, *candidates: str) -> bool:
    """Whether any of the image paths ``candidates`` exists (a package-installed marker)."""
    return any(inside(tree, c).exists() for c in candidates)
