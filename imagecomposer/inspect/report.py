"""The result of ``inspect``: frozen attrs classes whose field names are the JSON names.

The JSON form (``InspectReport.to_dict()``) is documented in docs/inspect.md and described
by ``imagecomposer/inspect/schemas/inspect.schema.json`` (``imagecomposer schema
--inspect``). Field names only ever get added; ``schema_version`` changes if one changes
meaning.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs

from imagecomposer.inspect.render import inspect_html, inspect_text

SCHEMA_VERSION = 1
converter = cattrs.Converter()


@attrs.frozen
class ImageFile:
    path: str
    format: str  # raw, qcow2, vhd, vhd-fixed, vhdx, vmdk, vdi
    compression: str  # none, gzip, xz, zstd
    file_size: int  # bytes of the file as stored
    disk_size: int  # bytes of the disk it holds
    sha256: str | None = None  # of the disk's bytes (with --hash)


@attrs.frozen
class FilesystemInfo:
    type: str
    uuid: str | None
    label: str | None
    size: int | None
    used: int | None
    mountpoint: str | None  # where the image's fstab (or its root) mounts it


@attrs.frozen
class PartitionInfo:
    number: int
    name: str
    type: str  # esp, root, verity, var, swap, linux, ...
    type_id: str  # GPT type GUID or MBR type code
    uuid: str | None  # PARTUUID: GPT partition UUID, or MBR SIGNATURE-NN
    start: int
    size: int
    bootable: bool
    filesystem: FilesystemInfo | None


@attrs.frozen
class PartitionTableInfo:
    type: str  # gpt, mbr, none
    id: str | None
    sector_size: int
    disk_size: int
    partitions: tuple[PartitionInfo, ...]


@attrs.frozen
class OsInfo:
    id: str | None
    version_id: str | None
    name: str | None
    pretty_name: str | None
    version_codename: str | None
    os_release: dict[str, str]


@attrs.frozen
class Kernel:
    version: str
    image: str | None  # where the kernel image is (/boot/vmlinuz-V, or esp:/PATH)
    initrds: tuple[str, ...]
    modules: bool  # /usr/lib/modules/VERSION exists


@attrs.frozen
class BootEntry:
    id: str
    title: str | None
    kind: str  # type1 (loader entry), uki, grub, syslinux
    linux: str | None
    initrds: tuple[str, ...]
    options: str | None  # the kernel command line
    path: str  # where the entry is defined (partition-qualified)


@attrs.frozen
class Bootloader:
    type: str  # systemd-boot, grub, shim, syslinux, unknown, none
    files: tuple[str, ...]  # boot loader binaries found (partition-qualified)
    default: str | None
    entries: tuple[BootEntry, ...]


@attrs.frozen
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: tuple[str, ...]  # supplementary groups
    password: str  # set, locked, none, unknown (never the hash)


@attrs.frozen
class Group:
    name: str
    gid: int
    members: tuple[str, ...]


@attrs.frozen
class Services:
    enabled: tuple[str, ...]  # units with a symlink in a *.wants/ or *.requires/ directory
    masked: tuple[str, ...]  # units linked to /dev/null in /etc/systemd/system
    default_target: str | None


@attrs.frozen
class Package:
    name: str
    version: str
    arch: str
    source: str | None = None


@attrs.frozen
class Packages:
    manager: str | None  # the family's manager (dpkg, rpm), None: no package database
    count: int
    items: tuple[Package, ...]


@attrs.frozen
class VeritySuperblock:
    version: int
    hash_type: int
    uuid: str
    algorithm: str
    data_block_size: int
    hash_block_size: int
    data_blocks: int
    salt: str


@attrs.frozen
class VerityInfo:
    data_partition: int | None
    hash_partition: int
    roothash: str | None  # from the kernel command line (roothash= or usrhash=)
    superblock: VeritySuperblock | None
    status: str  # verified, mismatch, no-roothash, no-data, unchecked
    detail: str | None


@attrs.frozen
class Certificate:
    subject: str
    issuer: str
    serial: str
    sha256: str  # fingerprint of the DER certificate
    not_before: str
    not_after: str


@attrs.frozen
class EfiBinary:
    path: str  # partition-qualified: "esp:/EFI/BOOT/BOOTX64.EFI"
    signed: bool
    signers: tuple[Certificate, ...]  # the certificates that signed it (first: outermost)
    verified: bool | None  # the signature matches the binary's digest (None if unsigned)


@attrs.frozen
class SbomInfo:
    path: str
    format: str  # spdx, cyclonedx, unknown
    packages: int


@attrs.frozen
class Sidecar:
    manifest: str | None  # path of the manifest.json that lists this image
    lock: str | None
    name: str | None
    image_version: str | None
    built_at: str | None
    sha256: str | None  # the image's sha256 as the manifest records it
    hash_matches: bool | None  # the image's bytes still have it (with --hash)
    lock_packages: int | None
    lock_matches: bool | None  # the lock's packages are what the image has installed


@attrs.frozen
class InspectReport:
    schema_version: int
    image: ImageFile
    partition_table: PartitionTableInfo
    os: OsInfo | None
    hostname: str | None
    timezone: str | None
    locale: str | None
    machine_id: str | None
    kernels: tuple[Kernel, ...]
    bootloader: Bootloader
    kernel_cmdline: tuple[str, ...]  # every command line the boot entries pass
    users: tuple[User, ...]
    groups: tuple[Group, ...]
    services: Services
    packages: Packages
    verity: tuple[VerityInfo, ...]
    secure_boot: tuple[EfiBinary, ...]
    sboms: tuple[SbomInfo, ...]
    sidecar: Sidecar | None
    problems: tuple[str, ...]  # what could not be read, one sentence each

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = converter.unstructure(self)
        return data

    def _repr_html_(self) -> str:
        return inspect_html(self)

    def text(self) -> str:
        return inspect_text(self)
