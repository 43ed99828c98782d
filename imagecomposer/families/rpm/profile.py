"""RPM-family OS profiles: what a base OS is made of, as data (``profiles/<os>-<version>.yml``).

The files share the directory, file naming and top-level field names with the Debian
profiles (``os``, ``version``, ``kind``, ``keyring``, ``architectures``, ``kernel``,
``package_sets``, ``bootloader``); ``kind: rpm`` selects this schema, whose repositories are
rpm-md ones. A profile never names a mirror host: each repository is a *path* below the mirror
the global configuration gives (``providers.<os>.mirror``), with dnf's ``$releasever`` and
``$basearch`` variables, so one profile serves every site.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import attrs
import cattrs
from ruamel.yaml import YAML

from imagecomposer.families.profile import available, profile_arch, profile_set
from imagecomposer.foundation.convert import CONVERTER
from imagecomposer.foundation.errors import ConfigError, ProviderNotConfigured
from imagecomposer.foundation.settings import ARCHITECTURES, BASE_TYPES

PROFILE_DIR = Path(__file__).parent.parent / "profiles"

DEFAULT_PRIORITY = 99  # dnf's default repository priority


@attrs.frozen
class RpmProfileRepository:
    """One rpm-md repository of a base OS, relative to the configured mirror."""

    name: str
    path: str  # below the mirror URL; may use $releasever and $basearch
    priority: int = DEFAULT_PRIORITY  # dnf semantics: lower number wins
    gpgcheck: bool = True  # every package's header signature is checked
    repo_gpgcheck: bool = False  # repodata/repomd.xml carries a detached repomd.xml.asc
    enabled: bool = True


@attrs.frozen
class RpmPackageSet:
    packages: tuple[str, ...] = ()


@attrs.frozen
class RpmDb:
    """Where and how the target distribution keeps its rpm database."""

    path: str = "/usr/lib/sysimage/rpm"
    backend: Literal["sqlite", "ndb", "bdb"] = "sqlite"


@attrs.frozen
class RpmProfile:
    os: str
    version: str
    kind: Literal["rpm"]
    releasever: str
    keyring: Path | None  # default signing key(s) on the host; providers.<os>.keyring overrides
    repositories: tuple[RpmProfileRepository, ...]
    architectures: dict[str, str]  # spec arch -> $basearch
    kernel: str | None
    package_sets: dict[str, RpmPackageSet]
    rpmdb: RpmDb = RpmDb()
    bootloader: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    # added when the disk layout has a volume group / LUKS2 encryption (dracut's lvm and
    # crypt modules use them)
    lvm: tuple[str, ...] = ()
    encryption: tuple[str, ...] = ()
    # added when customizations.security.selinux is permissive or enforcing
    selinux: tuple[str, ...] = ()
    # glob patterns a kernel package of this OS matches (customizations.kernel.package)
    kernels: tuple[str, ...] = ("kernel", "kernel-*")

    def layout_packages(self, features: tuple[str, ...]) -> tuple[str, ...]:
        """The packages the disk layout's ``features`` (spec.model.disk_features) need."""
        return (*(self.lvm if "lvm" in features else ()),
                *(self.encryption if "encryption" in features else ()))

    def basearch(self, arch: str) -> str:
        return profile_arch(self.os, self.version, self.architectures, arch)

    def package_set(self, base_type: str) -> RpmPackageSet:
        return profile_set(self.os, self.version, self.package_sets, base_type)


def bare_profile(os_name: str, version: str) -> RpmProfile:
    """The profile of an RPM OS that ships none: the spec's repositories are everything.

    Used only when the global configuration explicitly declares ``providers.<os>`` with
    ``kind: rpm`` (so a typo in ``base.os`` is still an error).
    """
    return RpmProfile(
        os=os_name, version=version, kind="rpm", releasever=version, keyring=None,
        repositories=(), architectures={arch: arch for arch in ARCHITECTURES},
        kernel=None, package_sets={t: RpmPackageSet() for t in BASE_TYPES})




def profile_path(os_name: str, version: str) -> Path:
    return PROFILE_DIR / f"{os_name}-{version}.yml"


def rpm_profiles() -> list[tuple[str, str]]:
    """(os, version) of every shipped RPM-family profile."""
    return available("rpm")


@functools.cache
def load_rpm_profile(os_name: str, version: str) -> RpmProfile:
    """The shipped profile for ``os_name`` ``version``; a clear error naming the known ones."""
    path = profile_path(os_name, version)
    if not path.is_file():
        known = ", ".join(f"{o} {v}" for o, v in rpm_profiles())
        raise ProviderNotConfigured(
            f"No RPM OS profile for {os_name} {version} (profiles shipped: {known})")
    return parse_rpm_profile(path.read_text(), source=str(path))


def parse_rpm_profile(text: str, *, source: str = "<profile>") -> RpmProfile:
    data = YAML(typ="safe").load(text)
    if not isinstance(data, dict) or data.get("kind") != "rpm":
        raise ConfigError(f"{source}: not an RPM-family profile (kind: rpm)")
    try:
        return CONVERTER.structure(data, RpmProfile)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(f"{source}: invalid OS profile: "
                          f"{'; '.join(cattrs.transform_error(exc))}") from exc
