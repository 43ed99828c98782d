"""The package request: everything of a spec that decides which packages an image gets.

A provider and the resolver read a spec only through this value, and the packages stage
hashes exactly this value (with the provider's settings and a ``--locked`` lock) into its
key: a field that is not here cannot change the lock, and a field that is here reruns the
stage when it changes. ``security.read_only_root`` is here because a Debian image with a
dm-verity root needs cryptsetup-bin; whether SELinux is on (``selinux``, not the mode) because
it adds the policy packages: permissive and enforcing install the same packages, and the
configuration stage applies the mode.

The family of the base OS makes it (:meth:`Family.request
<imagecomposer.families.family.Family.request>`, reached through
:func:`imagecomposer.families.registry.request_for`); :func:`package_request` is the rule
every shipped family uses. A provider given a whole spec reads it through
:func:`as_request`.
"""

from __future__ import annotations

import attrs

from imagecomposer.spec.model import Base, Bootloader, Repository, Spec, disk_features


@attrs.frozen
class PackageRequest:
    """What to resolve: the base OS, the spec's package lists, and what adds packages."""

    base: Base
    install: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    recommends: bool = False
    kernel: str | None = None  # None: the OS profile's default kernel
    bootloader: Bootloader = "systemd-boot"
    read_only_root: bool = False  # dm-verity root: the profile's read_only_root packages
    selinux: bool = False  # permissive or enforcing: the profile's selinux packages
    disk_features: tuple[str, ...] = ()  # "lvm", "encryption": the profile's layout packages
    repositories: tuple[Repository, ...] = ()  # extra repositories; key files by content

    @property
    def os(self) -> str:
        return self.base.os


def package_request(spec: Spec) -> PackageRequest:
    """The request ``spec`` makes."""
    c = spec.customizations
    return PackageRequest(
        base=spec.image.base, install=c.packages.install, remove=c.packages.remove,
        recommends=c.packages.recommends, kernel=c.kernel.package, bootloader=c.bootloader,
        read_only_root=c.security.read_only_root,
        selinux=c.security.selinux != "disabled", disk_features=disk_features(spec.disk),
        repositories=spec.repositories)


def as_request(source: Spec | PackageRequest) -> PackageRequest:
    """``source`` itself, or the request of a spec."""
    return source if isinstance(source, PackageRequest) else package_request(source)
