"""Files and directories from the spec, applied in spec order (a later entry wins).

An entry with ``content`` writes that text; with ``source`` it copies a file, or a directory
recursively; with neither it creates a directory. ``mode`` applies to the file or to the top
directory; ``owner``/``group`` are looked up in the image's passwd/group (never the host's)
and apply to everything the entry creates.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.errors import ComposeError
from imagecomposer.spec.model import File


def apply(tree: Path, files: tuple[File, ...]) -> list[Path]:
    """Apply every entry in order; return the host paths written."""
    return [apply_one(tree, f) for f in files]


def apply_one(tree: Path, entry: File) -> Path:
    if not entry.destination.startswith("/"):
        raise ComposeError(f"file destination {entry.destination!r} must be absolute")
    uid = paths.uid_of(tree, entry.owner)
    gid = paths.gid_of(tree, entry.group)
    mode = int(entry.mode, 8) if entry.mode is not None else None
    if entry.content is not None and entry.source is not None:
        raise ComposeError(f"{entry.destination}: give either content or source, not both")
    if entry.content is not None:
        return paths.write(tree, entry.destination, entry.content,
                           mode=0o644 if mode is None else mode, uid=uid, gid=gid)
    dest = paths.inside(tree, entry.destination)
    if entry.source is None:
        dest.mkdir(parents=True, exist_ok=True)
        _own(dest, uid, gid, 0o755 if mode is None else mode)
        return dest
    source = entry.source
    if not source.exists():
        raise ComposeError(f"{entry.destination}: source {source} does not exist")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
        for root, dirs, names in os.walk(dest):
            for name in dirs + names:
                os.lchown(Path(root) / name, uid, gid)
        _own(dest, uid, gid, mode if mode is not None else 0o755)
        return dest
    if dest.is_symlink():
        dest.unlink()
    shutil.copyfile(source, dest)
    _own(dest, uid, gid, mode if mode is not None else (source.stat().st_mode & 0o7777))
    return dest


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    if (uid, gid) != (os.geteuid(), os.getegid()) or os.geteuid() == 0:
        os.chown(path, uid, gid)
    path.chmod(mode)
