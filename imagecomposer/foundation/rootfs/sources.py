"""Where host files a spec copies into the image may come from."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from imagecomposer.foundation.errors import SourceNotAllowed


def real(path: Path) -> Path:
    """``path`` absolute with every symlink followed (also for a path that does not exist)."""
    return Path(os.path.realpath(path.expanduser()))


def resolve_roots(base_dir: Path, allowed: Iterable[Path] = ()) -> tuple[Path, ...]:
    """The resolved roots of a spec in ``base_dir`` (relative allowed paths are relative to
    it), without duplicates, in the order given: the directory first."""
    out: list[Path] = []
    for root in (base_dir, *allowed):
        given = root.expanduser()
        resolved = real(given if given.is_absolute() else base_dir / given)
        if resolved not in out:
            out.append(resolved)
    return tuple(out)


def is_within(resolved: Path, roots: Iterable[Path]) -> bool:
    """Whether the resolved path ``resolved`` is one of the resolved ``roots`` or below one.

    Pure: both sides must already be resolved (see :func:`real`); ``/srv/specs-evil`` is not
    within ``/srv/specs``.
    """
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def allowed_source(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` with every symlink resolved, if that lies inside one of ``roots`` (also
    resolved); else :class:`~imagecomposer.foundation.errors.SourceNotAllowed` naming it.

    The rule for host files a spec copies into the image (``files[].source``): the spec's
    directory tree is what the spec may read, so a ``source`` that is -- or passes through --
    a symlink leading out of it (``shadow -> /etc/shadow``) is refused. Copy the returned
    path, not ``path``. Symlinks *inside* a copied directory are never followed at all
    (:meth:`Root.copy_tree_in` copies them as links). Shared by spec validation and the
    copy, so both apply the same rule. A ``path`` inside a root that names nothing is
    allowed (the copy then reports it missing).
    """
    try:
        resolved = Path(path).resolve()
        bases = [Path(root).resolve() for root in roots]
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise SourceNotAllowed(f"file source {path} cannot be resolved: {exc}") from exc
    if is_within(resolved, bases):
        return resolved
    allowed = ", ".join(str(r) for r in roots) or "none"
    shown = f"{path}" if resolved == Path(path) else f"{path} (resolves to {resolved})"
    raise SourceNotAllowed(f"file source {shown} is outside the directories sources may "
                           f"come from ({allowed})")
