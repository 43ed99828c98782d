"""The Composer's steps that differ by package family (``lock.kind``: ``deb`` or ``rpm``).

Everything else the Composer does (users, files, services, fstab, the initramfs, the
bootloader, disk assembly) is the same for Debian and RPM-family trees. What differs:

* **installation**: dpkg in a namespaced chroot, or one ``rpm --root`` transaction into the
  database location the OS profile names (:mod:`.dpkg_install`, :mod:`.rpm_install`);
* **the image's repositories**: APT sources from the lock, or ``/etc/yum.repos.d`` files from
  the provider (:mod:`.configure.apt_sources`, :mod:`.rpm_repos`);
* **RPM-only configuration**: kernels exposed under ``/boot`` and systemd presets applied
  first, before any configuration step enables or disables a unit (the network step enables
  systemd-networkd; ``preset-all`` would disable it again); SELinux mode and relabel last
  (:mod:`.rpm_configure`).

The installed tree depends on the lock alone: the installed-tree cache is keyed by the lock's
hash. So an rpm install reads the database location from the profile the lock names (not
from the spec), and the repository keys -- which come from the spec and the global
configuration, not the lock -- are imported into the image's rpm database in the
configuration stage, next to the ``.repo`` files that name them. Two specs with the same lock
but different keys then never share a tree with the wrong keys in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagecomposer.compose import dpkg_install
from imagecomposer.compose.rpm_configure import apply_presets, configure_selinux, expose_kernels
from imagecomposer.compose.rpm_install import find_rpmdb, install_rpms, rpm_command
from imagecomposer.compose.rpm_repos import write_repo_files
from imagecomposer.config.model import Config
from imagecomposer.families import provider_for
from imagecomposer.families.rpm.profile import bare_profile, load_rpm_profile, profile_path
from imagecomposer.families.rpm.provider import RpmProvider
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.events import EventSink
from imagecomposer.lock import Lock
from imagecomposer.spec.model import Spec


def install(lock: Lock, packages: Mapping[str, Path], tree: Path, *,
            timeout: float | None = None, events: EventSink | None = None) -> None:
    """Install every package of ``lock`` into the empty ``tree`` with its family's tool."""
    if lock.kind == "rpm":

        dbpath, backend = rpmdb_location(lock)
        install_rpms(lock, packages, tree, dbpath=dbpath, db_backend=backend,
                     timeout=timeout)
        return

    dpkg_install.install(lock, packages, tree, timeout=timeout, events=events)


def rpmdb_location(lock: Lock) -> tuple[str, str]:
    """(path, backend) of the rpm database the lock's OS expects (its profile's ``rpmdb``;
    the sysimage location with sqlite for an OS without a shipped profile)."""

    profile = (load_rpm_profile(lock.os, lock.version)
               if profile_path(lock.os, lock.version).is_file()
               else bare_profile(lock.os, lock.version))
    return profile.rpmdb.path, profile.rpmdb.backend


def rpm_repositories(tree: Path, spec: Spec, config: Config, *,
                     timeout: float | None = None) -> list[Path]:
    """The dnf side of the image's repositories: ``.repo`` files and keys written
    (:func:`~imagecomposer.compose.rpm_repos.write_repo_files`), and the configured keys
    imported into the image's rpm database (``gpg-pubkey-*``) so that its own rpm and dnf
    trust what the build trusted. Returns the ``.repo`` files written."""

    provider = provider_for(spec, config)
    if not isinstance(provider, RpmProvider):
        raise ComposeError(f"the lock is an rpm lock but {spec.image.base.os} is configured "
                           f"with a {provider.kind} provider")
    found = find_rpmdb(tree)
    if found is None:
        raise ComposeError(f"no rpm database in {tree}: the tree was not installed by rpm")
    rpm = rpm_command(tree, *found)
    for key in provider.trusted_keys():
        runner.run([*rpm, "--import", str(key)], timeout=timeout, what=f"rpm --import {key}")
    return write_repo_files(tree, provider)


def after_install(tree: Path, lock: Lock, *, timeout: float | None = None) -> None:
    """RPM trees: kernels at ``/boot/vmlinuz-V`` and the distribution's systemd presets
    (``preset-all`` enables *and disables*), first in the configuration stage, so that the
    network step and the spec's services are applied over them. Nothing for deb."""
    if lock.kind != "rpm":
        return

    expose_kernels(tree)
    apply_presets(tree, timeout=timeout)


def finish(tree: Path, spec: Spec, lock: Lock, *, timeout: float | None = None) -> None:
    """RPM trees: the SELinux mode and relabel, after every file is written. The Debian
    path leaves SELinux alone."""
    if lock.kind != "rpm":
        return

    configure_selinux(tree, spec.customizations.security.selinux, timeout=timeout)
