"""Files and directories from the spec, applied in spec order (a later entry wins).

An entry with ``content`` writes that text; with ``source`` it copies a file, or a directory
recursively; with neither it creates a directory. ``mode`` applies to the file or to the top
directory; ``owner``/``group`` are looked up in the image's passwd/group (never the host's)
and apply to everything the entry creates.

Everything is written through :class:`imagecomposer.foundation.rootfs.Root`: destinations resolve
inside the tree, a symlink at a written file's name is replaced (never written through),
and symlinks inside a copied directory are copied as symlinks. A ``source`` must lie inside
``source_roots`` (the spec's directory) once its own symlinks are resolved
(:func:`imagecomposer.foundation.rootfs.allowed_source`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root, allowed_source
from imagecomposer.foundation.rootfs.sources import resolve_roots
from imagecomposer.spec.model import File, Spec


def apply(tree: Path, files: tuple[File, ...], *, source_roots: Sequence[Path]) -> list[Path]:
    """Apply every entry in order; return the host paths written. ``source_roots``: the
    host directories ``source`` files may come from."""
    with Root(tree) as root:
        return [apply_one(root, f, source_roots=source_roots) for f in files]


def apply_one(root: Root | Path, entry: File, *, source_roots: Sequence[Path]) -> Path:
    if isinstance(root, Path):
        with Root(root) as opened:
            return apply_one(opened, entry, source_roots=source_roots)
    if not entry.destination.startswith("/"):
        raise ComposeError(f"file destination {entry.destination!r} must be absolute")
    uid = paths.uid_of(root.path, entry.owner)
    gid = paths.gid_of(root.path, entry.group)
    owner, group = (uid, gid) if _chown_needed(uid, gid) else (None, None)
    mode = int(entry.mode, 8) if entry.mode is not None else None
    if entry.content is not None and entry.source is not None:
        raise ComposeError(f"{entry.destination}: give either content or source, not both")
    if entry.content is not None:
        return root.write(entry.destination, entry.content,
                          mode=0o644 if mode is None else mode, uid=owner, gid=group)
    if entry.source is None:
        return root.mkdir(entry.destination, 0o755 if mode is None else mode, uid=owner,
                          gid=group)
    source = allowed_source(entry.source, source_roots)
    if not source.exists():
        raise ComposeError(f"{entry.destination}: source {entry.source} does not exist")
    if source.is_dir():
        return root.copy_tree_in(source, entry.destination, mode=mode, uid=owner, gid=group)
    return root.copy_file_in(source, entry.destination, mode=mode, uid=owner, gid=group)


def source_roots(spec: Spec, config_allowed: Sequence[Path] = ()) -> tuple[Path, ...]:
    """The host directories a spec's ``files[].source`` may come from: its own directory
    tree, its ``build.allowed_paths`` and the configuration's ``core.allowed_paths`` -- the
    same roots the validate stage checks (docs/spec.md, "Files a spec may read")."""
    return resolve_roots(spec.directory, (*spec.build.allowed_paths, *config_allowed))


def _chown_needed(uid: int, gid: int) -> bool:
    return (uid, gid) != (os.geteuid(), os.getegid()) or os.geteuid() == 0
