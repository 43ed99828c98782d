"""OS profiles: what a base OS is made of, as data (``profiles/<os>-<version>.yml``).

A profile names the suites an OS version is published in, its components, the keyring its
metadata is signed with, the default kernel and the package sets behind ``base.type``. It
never names a mirror host: where to download from is the global configuration's business
(or the host's apt sources), so one profile serves every site.

``{arch}`` in a package name is replaced by the family's architecture name (amd64, arm64).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeVar

import attrs
import cattrs
from ruamel.yaml import YAML

from imagecomposer.foundation.convert import CONVERTER
from imagecomposer.foundation.errors import ConfigError, ProviderNotConfigured
from imagecomposer.foundation.settings import PackageFamily

PROFILE_DIR = Path(__file__).with_name("profiles")


@attrs.frozen
class ProfileRepository:
    suite: str
    mirror: Literal["main", "security"] = "main"


@attrs.frozen
class PackageSet:
    priorities: tuple[str, ...] = ()  # deb Priority values whose packages are all added
    packages: tuple[str, ...] = ()


@attrs.frozen
class Profile:
    os: str
    version: str
    kind: PackageFamily
    keyring: Path
    repositories: tuple[ProfileRepository, ...]
    architectures: dict[str, str]  # spec arch (x86_64) -> family arch (amd64)
    kernel: str
    package_sets: dict[str, PackageSet]
    components: tuple[str, ...] = ("main",)
    codename: str | None = None
    bootloader: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    # added when customizations.security.read_only_root is set: what the initrd needs to open
    # the dm-verity root (veritysetup)
    read_only_root: tuple[str, ...] = ()
    # added when the disk layout has a volume group (lvm2: its initramfs hook activates it)
    # or LUKS2 encryption (cryptsetup and the initramfs hooks that unlock at boot)
    lvm: tuple[str, ...] = ()
    encryption: tuple[str, ...] = ()
    # added when customizations.security.selinux is permissive or enforcing: the policy and
    # what labels and boots it (empty: the OS offers no SELinux, and validation says so)
    selinux: tuple[str, ...] = ()
    # glob patterns a kernel package of this OS matches (customizations.kernel.package)
    kernels: tuple[str, ...] = ("linux-image-*",)

    def layout_packages(self, features: tuple[str, ...]) -> tuple[str, ...]:
        """The packages the disk layout's ``features`` (spec.model.disk_features) need."""
        return (*(self.lvm if "lvm" in features else ()),
                *(self.encryption if "encryption" in features else ()))

    def family_arch(self, arch: str) -> str:
        return profile_arch(self.os, self.version, self.architectures, arch)

    def package_set(self, base_type: str) -> PackageSet:
        return profile_set(self.os, self.version, self.package_sets, base_type)

    def expand(self, name: str, arch: str) -> str:
        return name.replace("{arch}", self.family_arch(arch))


T = TypeVar("T")


def profile_arch(os_name: str, version: str, architectures: Mapping[str, str], arch: str) -> str:
    """The family's name for ``arch`` (amd64, x86_64), or a ConfigError naming the known."""
    if arch not in architectures:
        raise ConfigError(f"{os_name} {version} is not available for {arch} "
                          f"(profile architectures: {', '.join(sorted(architectures))})")
    return architectures[arch]


def profile_set(os_name: str, version: str, sets: Mapping[str, T], base_type: str) -> T:
    """The package set behind ``base.type``, or a ConfigError naming the known ones."""
    if base_type not in sets:
        raise ConfigError(f"{os_name} {version} has no package set for base type "
                          f"{base_type!r} (known: {', '.join(sorted(sets))})")
    return sets[base_type]




def available(kind: PackageFamily = "deb") -> list[tuple[str, str]]:
    """(os, version) of every shipped profile of the ``kind`` family."""
    found = []
    for path in sorted(PROFILE_DIR.glob("*.yml")):
        data = YAML(typ="safe").load(path.read_text())
        if isinstance(data, dict) and data.get("kind", "deb") == kind:
            found.append((str(data["os"]), str(data["version"])))
    return found


def codenames(os_name: str) -> set[str]:
    """Every codename the shipped deb profiles of ``os_name`` name (bookworm, trixie)."""
    found = set()
    for name, version in available():
        if name == os_name:
            codename = load_profile(name, version).codename
            if codename:
                found.add(codename)
    return found


@functools.cache
def load_profile(os_name: str, version: str) -> Profile:
    """The profile for ``os_name`` ``version``; a clear error naming the known ones."""
    path = PROFILE_DIR / f"{os_name}-{version}.yml"
    if not path.is_file():
        known = ", ".join(f"{o} {v}" for o, v in available())
        raise ProviderNotConfigured(
            f"No OS profile for {os_name} {version} (profiles shipped: {known})")
    data = YAML(typ="safe").load(path.read_text())
    try:
        return CONVERTER.structure(data, Profile)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(f"{path}: invalid OS profile: {exc}") from exc
