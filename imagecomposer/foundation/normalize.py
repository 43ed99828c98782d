"""What a finished image tree must not carry: files that differ from build to build and that
the system does not need, or remakes itself.

Removed after every configuration step (and after package installation, for the
installed-tree cache), as mmdebstrap and mkosi do. What every image may hold is here
(:data:`LEFTOVERS`):

* ldconfig's auxiliary cache, which records the inode numbers and change times of the build
  tree's libraries (``ld.so.cache`` itself is deterministic and stays);
* man-db's ``index.db`` databases (gdbm files with the times of their making;
  ``man-db.timer`` remakes them);
* systemd's random seed and credential secret: per machine, made at first boot.

What one package family leaves is that family's
(:attr:`imagecomposer.families.family.Family.leftovers`, passed as ``paths``): the deb
family's ``*-old`` databases of dpkg and debconf, the dpkg and apt logs (they record the
wall-clock time of every action) and apt's binary package caches; the rpm family's dnf logs.

``/etc/machine-id`` (empty: systemd makes one at boot) and the SSH host keys (made at first
boot by ``ssh.service``) are the business of :mod:`.configure.system` and :mod:`.configure.ssh`.
File times are clamped to the build epoch when the filesystems are made
(:func:`imagecomposer.compose.disk.content.clamp_times`). This module is in the foundation
layer so that a family's installer (below compose) can use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from imagecomposer.foundation.rootfs import Root

LEFTOVERS = (
    "/var/cache/ldconfig/aux-cache",
    "/var/lib/systemd/random-seed", "/var/lib/systemd/credential.secret",
)


MAN_CACHE = "/var/cache/man"


def remove_leftovers(tree: Path, paths: Iterable[str] = ()) -> list[str]:
    """Remove :data:`LEFTOVERS`, ``paths`` (a family's leftovers) and man-db's databases from
    ``tree`` (paths resolved inside it); return those that were there."""
    with Root(tree) as root:
        removed = [path for path in (*LEFTOVERS, *paths) if root.remove(path)]
        if root.is_dir(MAN_CACHE) and not root.is_symlink(MAN_CACHE):
            databases = [f"{MAN_CACHE}/index.db"]
            databases += [f"{MAN_CACHE}/{name}/index.db" for name in root.listdir(MAN_CACHE)]
            removed += [path for path in databases if root.remove(path)]
    return removed
