"""The typed build spec: frozen attrs classes that mirror the JSON Schema (``schema.json``).

These classes are what every other part of imagecomposer reads. They are produced by
:func:`imagecomposer.spec.loader.load_spec` after YAML parsing, template merging, variable
substitution and schema validation, so a value here is always well-formed; relative paths
are already resolved against the spec file's directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.foundation import display
from imagecomposer.foundation.fingerprint import BY_NAME, SECRET
from imagecomposer.foundation.settings import (
    STAGES,
    Arch,
    BaseType,
    Bootloader,
    Compression,
    EncryptionType,
    Filesystem,
    Format,
    PackageFamily,
    PartitionTable,
    SbomFormat,
    SelinuxMode,
    SignAlgorithm,
    StageName,
    VolumeFilesystem,
)
from imagecomposer.foundation.yamldoc.sourcemap import SourceMap
from imagecomposer.spec import export, loader, render

# The enumerations live in the settings registry (imagecomposer.foundation.settings); these
# names stay importable from here.
__all__ = ["STAGES", "Arch", "BaseType", "Bootloader", "Compression", "Filesystem", "Format",
           "PartitionTable", "PartitionType", "SbomFormat", "StageName"]

# One of settings.PARTITION_TYPES (esp, root, swap, ...) or an explicit GPT type GUID.
PartitionType = str


@attrs.frozen
class Base:
    os: str  # provider profile family: debian | ubuntu | azurelinux | fedora | rocky | ...
    version: str  # "12", "22.04", "3.0"
    type: BaseType = "minimal"
    arch: Arch = "x86_64"


@attrs.frozen
class Image:
    name: str
    base: Base
    version: str = "0.0.0"


@attrs.frozen
class Repository:
    """An extra package repository (deb or rpm-md), besides the base OS ones."""

    name: str
    # http(s)://, file://, or a local directory of packages (repr: credentials removed)
    url: str = attrs.field(repr=display.url)
    suite: str | None = None  # deb: distribution (bookworm); None for flat repositories
    components: tuple[str, ...] = ("main",)
    key: Path | None = None  # OpenPGP key file (armored or binary)
    priority: int = 500  # APT semantics: <0 never, 500 default, 990 preferred, >=1000 downgrades
    packages: tuple[str, ...] = ()  # allow-list of name globs; empty means all
    trusted: bool = False  # explicit, loudly logged opt-out of signature checks
    kind: PackageFamily | None = None  # None: the base OS family


@attrs.frozen
class Packages:
    install: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    recommends: bool = False


@attrs.frozen
class User:
    name: str
    uid: int | None = None
    groups: tuple[str, ...] = ()
    # crypt(3) hash; plaintext is refused at load. Secrets: repr says only whether set.
    password_hash: str | None = attrs.field(default=None, repr=display.secret, metadata=SECRET)
    ssh_keys: tuple[str, ...] = attrs.field(default=(), repr=display.secret)
    shell: str = "/bin/bash"
    home: str | None = None
    sudo: bool = False  # passwordless sudo via /etc/sudoers.d


@attrs.frozen
class Services:
    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()


@attrs.frozen
class File:
    destination: str  # absolute path inside the image
    source: Path | None = None  # a file or directory next to the spec
    # inline content instead of a source (may be a secret: never in the repr)
    content: str | None = attrs.field(default=None, repr=display.secret)
    mode: str | None = None  # octal string "0644"
    owner: str = "root"
    group: str = "root"


@attrs.frozen
class Interface:
    match: str = "en*"
    dhcp4: bool = True
    dhcp6: bool = False
    addresses: tuple[str, ...] = ()  # CIDR, e.g. "192.0.2.10/24"
    gateway: str | None = None
    dns: tuple[str, ...] = ()


@attrs.frozen
class Network:
    interfaces: tuple[Interface, ...] = (Interface(),)


@attrs.frozen
class Scripts:
    pre_install: tuple[Path, ...] = ()
    post_install: tuple[Path, ...] = ()
    network: bool = False  # share the host's network with the scripts (default: none)


@attrs.frozen
class Kernel:
    package: str | None = None  # None: the OS profile's default kernel
    cmdline: str = ""
    serial_console: bool = True


@attrs.frozen
class Ssh:
    permit_root_login: bool = False
    password_authentication: bool = False


@attrs.frozen
class SecureBoot:
    key: Path = attrs.field(metadata=SECRET)
    cert: Path


@attrs.frozen
class Security:
    read_only_root: bool = False  # dm-verity protected root; writable /var
    selinux: SelinuxMode = "disabled"
    secure_boot: SecureBoot | None = None


@attrs.frozen
class Customizations:
    hostname: str | None = None
    timezone: str = "UTC"
    locale: str = "C.UTF-8"
    keyboard: str | None = None
    packages: Packages = Packages()
    users: tuple[User, ...] = ()
    # None: root account locked. A secret: repr says only whether set.
    root_password_hash: str | None = attrs.field(default=None, repr=display.secret,
                                                 metadata=SECRET)
    ssh: Ssh = Ssh()
    services: Services = Services()
    files: tuple[File, ...] = ()
    network: Network = Network()
    scripts: Scripts = Scripts()
    kernel: Kernel = Kernel()
    bootloader: Bootloader = "systemd-boot"
    security: Security = Security()


# --- LVM and LUKS2 (docs/disk.md "LVM and LUKS2") -----------------------------------------


@attrs.frozen
class Encryption:
    """LUKS2 around a partition's or logical volume's content. Key material only by file:
    never a passphrase in the spec."""

    type: EncryptionType = "luks2"
    # first line: a key slot, typed at the console
    passphrase_file: Path | None = attrs.field(default=None, metadata=SECRET)
    key_file: Path | None = attrs.field(default=None, metadata=SECRET)  # all bytes: a key slot
    embed_key: bool = False  # copy key_file into the image: unlocks unattended (tests)
    pbkdf_memory: int = 64 * 1024 * 1024  # argon2id memory cost, bytes
    pbkdf_iterations: int | None = None  # argon2id time cost; None: benchmark 2 s


@attrs.frozen
class LogicalVolume:
    name: str
    size: int | None  # bytes; None means "rest" of the volume group (last LV only)
    filesystem: VolumeFilesystem = "ext4"
    mountpoint: str | None = None
    label: str | None = None
    mount_options: str = "defaults"
    encryption: Encryption | None = None


@attrs.frozen
class VolumeGroup:
    name: str
    logical_volumes: tuple[LogicalVolume, ...] = ()


@attrs.frozen
class Partition:
    name: str
    type: PartitionType
    size: int | None  # bytes; None means "rest"
    filesystem: Filesystem = "ext4"
    mountpoint: str | None = None
    label: str | None = None
    mount_options: str = "defaults"
    uuid: str | None = None  # partition UUID; None: derived deterministically
    encryption: Encryption | None = None  # LUKS2 around the filesystem or the LVM PV
    volume_group: VolumeGroup | None = None  # type lvm: the partition is an LVM PV


@attrs.frozen
class Disk:
    size: int | None = None  # bytes; None means "auto" (content plus margin)
    partition_table: PartitionTable = "gpt"
    partitions: tuple[Partition, ...] = ()


@attrs.frozen
class Sign:
    key: Path = attrs.field(metadata=SECRET)
    cert: Path | None = None
    passphrase_file: Path | None = attrs.field(default=None, metadata=SECRET)
    passphrase_env: str | None = None
    algorithm: SignAlgorithm = "auto"


@attrs.frozen
class Output:
    formats: tuple[Format, ...] = ("raw",)
    compression: Compression = "none"
    sbom: tuple[SbomFormat, ...] = ("spdx",)
    sign: Sign | None = None
    # None: ./output/<image name> next to the spec
    directory: Path | None = attrs.field(default=None, metadata=BY_NAME)


@attrs.frozen
class BuildCache:
    use_package_cache: bool = True
    use_image_cache: bool = True


@attrs.frozen
class Build:
    cache: BuildCache = BuildCache()
    stages: tuple[StageName, ...] = STAGES
    # Host paths the spec may read files from besides its own directory tree
    # (imagecomposer.spec.roots); only honoured in the spec file itself, not in templates.
    allowed_paths: tuple[Path, ...] = attrs.field(default=(), metadata=BY_NAME)


@attrs.frozen
class Spec:
    """A loaded, validated build spec.

    ``path`` is the spec file (None for specs built in memory); ``source`` keeps the merged
    document as plain data, with secrets, for hashing into the image cache key.
    """

    image: Image
    customizations: Customizations = Customizations()
    repositories: tuple[Repository, ...] = ()
    disk: Disk = Disk()
    output: Output = Output()
    build: Build = Build()
    variables: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=display.secret)
    path: Path | None = attrs.field(default=None, eq=False)
    # The directory relative paths were resolved against, for specs loaded from text.
    base_dir: Path | None = attrs.field(default=None, eq=False, repr=False)
    # Where each field was written (file:line:column, maybe in a template), for messages.
    source_map: SourceMap = attrs.field(factory=SourceMap, eq=False, repr=False)

    @classmethod
    def load(cls, path: str | Path, *, variables: Mapping[str, str] | None = None,
             allowed_paths: Iterable[Path] = ()) -> Spec:
        """Load, merge templates, substitute variables and check a spec file.

        ``allowed_paths`` are the configuration's ``core.allowed_paths``: template files
        there may be read besides the spec's own tree (docs/spec.md, "Files a spec may
        read"). Raises :class:`~imagecomposer.foundation.errors.ValidationError` with every problem.
        """
        return loader.load_spec(Path(path), into=cls, variables=variables,
                                allowed_paths=allowed_paths)

    @classmethod
    def from_text(cls, text: str, *, name: str = "<spec>", base_dir: Path | None = None,
                  variables: Mapping[str, str] | None = None,
                  allowed_paths: Iterable[Path] = ()) -> Spec:
        """Like :meth:`load` for YAML text (``name`` is used in messages)."""
        return loader.load_text(text, into=cls, name=name, base_dir=base_dir,
                                variables=variables, allowed_paths=allowed_paths)

    def __repr__(self) -> str:
        """One short line without secrets (:func:`imagecomposer.spec.render.spec_repr`)."""
        return render.spec_repr(self)

    def _repr_html_(self) -> str:  # Jupyter
        return render.spec_html(self)

    def to_data(self) -> dict[str, Any]:
        """Normalized plain data for manifests: secrets removed, paths relative to the spec."""
        return export.spec_data(self, secrets=False)

    def canonical_json(self) -> str:
        """Stable JSON of the whole spec, secrets included: the input of cache keys."""
        return json.dumps(export.spec_data(self, secrets=True), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)

    def digest(self) -> str:
        """sha256 of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def directory(self) -> Path:
        """The directory relative paths in the spec were resolved against."""
        if self.base_dir is not None:
            return self.base_dir
        return self.path.parent if self.path is not None else Path.cwd()

    def referenced_files(self) -> tuple[Path, ...]:
        """Every local file the spec refers to (their contents key the image cache)."""
        c = self.customizations
        found: list[Path] = [f.source for f in c.files if f.source is not None]
        found += c.scripts.pre_install + c.scripts.post_install
        found += [r.key for r in self.repositories if r.key is not None]
        if c.security.secure_boot is not None:
            found += [c.security.secure_boot.key, c.security.secure_boot.cert]
        if self.output.sign is not None:
            found.append(self.output.sign.key)
            if self.output.sign.cert is not None:
                found.append(self.output.sign.cert)
        return tuple(found)


def encryptions(disk: Disk) -> list[Encryption]:
    """Every ``encryption:`` of the disk (partitions and logical volumes)."""
    found = []
    for part in disk.partitions:
        if part.encryption is not None:
            found.append(part.encryption)
        for lv in part.volume_group.logical_volumes if part.volume_group else ():
            if lv.encryption is not None:
                found.append(lv.encryption)
    return found


def key_material(disk: Disk) -> list[Path]:
    """The passphrase and key files the disk's encryption reads. Not among
    :meth:`Spec.referenced_files`: their plain hashes would sit in caches (fingerprints hash
    them slowly, see ``foundation.fingerprint.SECRET``)."""
    return [path for enc in encryptions(disk)
            for path in (enc.passphrase_file, enc.key_file) if path is not None]


def disk_features(disk: Disk) -> tuple[str, ...]:
    """What the disk layout needs from the image's packages: "lvm" (a volume group: lvm2
    in the initramfs) and "encryption" (LUKS2: cryptsetup and its initramfs hooks)."""
    features = []
    if any(p.volume_group is not None for p in disk.partitions):
        features.append("lvm")
    if encryptions(disk):
        features.append("encryption")
    return tuple(features)
