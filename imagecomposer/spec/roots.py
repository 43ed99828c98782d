"""Which host files a spec may read: its own directory tree and explicitly allowed paths.

A spec names local files: ``files[].source``, scripts, repository keys, Secure Boot and
signing keys, and templates in ``extends:``. Each must resolve, *after following every
symlink*, to a path inside one of the spec's **roots**:

- the directory of the spec file (for ``Spec.from_text``, its ``base_dir``), with everything
  below it;
- ``build.allowed_paths`` of the spec file itself (relative entries are relative to the
  spec's directory; a template cannot widen them);
- ``core.allowed_paths`` of the global configuration.

So ``source: /etc/shadow``, ``extends: /etc/shadow`` or ``./link`` where ``link ->
/etc/shadow`` are refused, with a positioned problem, before anything is read (and without
saying whether the file exists). docs/spec.md ("Files a spec may read") states the rule.

:func:`is_within` is the pure check on resolved paths; :func:`resolve_roots` and
:func:`outside` do the file-system part (``os.path.realpath``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

ADVICE = ("add the path (or a directory above it) to build.allowed_paths in the spec or to "
          "core.allowed_paths in the configuration")


def real(path: Path) -> Path:
    """``path`` absolute with every symlink followed (also for a path that does not exist)."""
    return Path(os.path.realpath(path.expanduser()))


def resolve_roots(base_dir: Path, allowed: Iterable[Path] = ()) -> tuple[Path, ...]:
    """The resolved roots of a spec in ``base_dir`` (relative allowed paths are relative to
    it), without duplicates, in the order given."""
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


def outside(path: Path, roots: Sequence[Path], shown: str | None = None) -> str | None:
    """Why ``path`` may not be read, or None if it may.

    ``roots`` come from :func:`resolve_roots` (the spec's directory first). The message names
    the path and the roots, never anything read from the file.
    """
    resolved = real(path)
    if is_within(resolved, roots):
        return None
    name = shown if shown is not None else str(path)
    via = f" (it resolves to '{resolved}')" \
        if str(resolved) != os.path.normpath(path.expanduser().absolute()) else ""
    where = f"the spec's directory {roots[0]}" if roots else "the spec's directory"
    if len(roots) > 1:
        where += " and the allowed paths " + ", ".join(str(r) for r in roots[1:])
    return f"'{name}'{via} is outside {where}; {ADVICE}"
