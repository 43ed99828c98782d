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

:func:`~imagecomposer.foundation.rootfs.sources.is_within` is the pure check on resolved paths and
:func:`~imagecomposer.foundation.rootfs.sources.resolve_roots` computes the roots; both live in the
foundation layer so that the copy into the image (:func:`allowed_source`) applies exactly the
same rule. :func:`outside` words the refusal for a spec problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from imagecomposer.foundation.rootfs.sources import is_within, real, resolve_roots

__all__ = ["ADVICE", "is_within", "outside", "real", "resolve_roots"]

ADVICE = ("add the path (or a directory above it) to build.allowed_paths in the spec or to "
          "core.allowed_paths in the configuration")


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
