"""What a finished image tree must not carry: files that differ from build to build and that
the system does not need, or remakes itself.

Removed after every configuration step (and after package installation, for the
installed-tree cache), as mmdebstrap and mkosi do:

* the previous versions of dpkg's and debconf's databases (``*-old``);
* ldconfig's auxiliary cache, which records the inode numbers and change times of the build
  tree's libraries (``ld.so.cache`` itself is deterministic and stays);
* the package managers' logs, which record the wall-clock time of every action;
* apt's binary package caches (rebuilt by the first apt run) and man-db's ``index.db``
  databases (gdbm files with the times of their making; ``man-db.timer`` remakes them);
* systemd's random seed and credential secret: per machine, made at first boot.

``/etc/machine-id`` (empty: systemd makes one at boot) and the SSH host keys (made at first
boot by ``ssh.service``) are the business of :mod:`.configure.system` and :mod:`.configure.ssh`.
File times are clamped to the build epoch when the filesystems are made
(:func:`imagecomposer.compose.disk.content.clamp_times`).
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.foundation.rootfs import Root

LEFTOVERS = (
    "/var/lib/dpkg/status-old", "/var/lib/dpkg/available-old", "/var/lib/dpkg/diversions-old",
    "/var/lib/dpkg/statoverride-old",
    "/var/cache/debconf/config.dat-old", "/var/cache/debconf/templates.dat-old",
    "/var/cache/debconf/passwords.dat-old",
    "/var/cache/ldconfig/aux-cache",
    "/var/log/dpkg.log", "/var/log/alternatives.log", "/var/log/bootstrap.log",
    "/var/log/apt/history.log", "/var/log/apt/term.log", "/var/log/apt/eipp.log.xz",
    "/var/log/dnf.log", "/var/log/dnf.librepo.log", "/var/log/dnf.rpm.log",
    "/var/log/hawkey.log",
    "/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin",
    "/var/lib/systemd/random-seed", "/var/lib/systemd/credential.secret",
)


MAN_CACHE = "/var/cache/man"


def remove_leftovers(tree: Path) -> list[str]:
    """Remove :data:`LEFTOVERS` and man-db's databases from ``tree`` (paths resolved inside
    it); return those that were there."""
    with Root(tree) as root:
        removed = [path for path in LEFTOVERS if root.remove(path)]
        if root.is_dir(MAN_CACHE) and not root.is_symlink(MAN_CACHE):
            databases = [f"{MAN_CACHE}/index.db"]
            databases += [f"{MAN_CACHE}/{name}/index.db" for name in root.listdir(MAN_CACHE)]
            removed += [path for path in databases if root.remove(path)]
    return removed
