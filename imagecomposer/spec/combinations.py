"""The matrix of legal setting combinations (seed: "Validate that the combination of
settings is valid"), as data, and the checks that apply it.

The tables below are the single source of truth; docs/validation.md explains each row.

Output format x compression
    Formats a hypervisor or cloud consumes *in place* must stay uncompressed: ``vhd`` and
    ``vhd-fixed`` (Azure / Hyper-V read the footer at the end of the file) and
    ``vmdk-stream`` (already deflate-compressed internally, made for upload). Every other
    format may be compressed with gzip, xz or zstd for transport.

Partition table x bootloader x firmware
    ``grub`` on ``mbr`` boots with BIOS (i386-pc); ``grub`` on ``gpt`` boots with UEFI and
    needs an ESP. ``systemd-boot`` is UEFI only: it needs ``gpt`` and an ESP (the kernel and
    initrd live on it, so it should be at least 256 MiB). ``none`` installs no bootloader
    (the image is booted by direct kernel boot or is not meant to boot). aarch64 has no BIOS:
    ``mbr`` with ``grub`` is refused there.

Security options
    ``secure_boot`` needs UEFI: ``gpt``, an ESP and ``systemd-boot`` or ``grub``.
    ``read_only_root`` (dm-verity) needs ``gpt`` (the hash tree partition is found by its
    GPT type) and a root filesystem among ext4, erofs and squashfs; ``squashfs``/``erofs``
    roots are read-only by nature and therefore *require* ``read_only_root``. A ``verity``
    partition only makes sense with ``read_only_root``.

Partition types x filesystems
    ``esp`` must be vfat; ``swap`` partitions have filesystem ``swap`` and nothing else
    does; ``xbootldr`` is vfat or ext4 and needs gpt; ``verity`` and ``generic`` partitions
    may have filesystem ``none``; explicit GPT type GUIDs need ``gpt``. MBR tables hold at
    most 4 (primary) partitions and disks up to 2 TiB (also when the size is ``auto``: the
    fixed partition sizes must fit). GPT tables hold at most 128 partitions (the entry
    array sfdisk writes; it silently drops the rest).
"""

from __future__ import annotations

import attrs

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.settings import COMPRESSIONS
from imagecomposer.foundation.units import format_size
from imagecomposer.spec.model import Spec

MiB = 1024 * 1024


@attrs.frozen
class FormatRule:
    compressions: tuple[str, ...]
    why: str = ""
    mib_aligned: bool = False  # the virtual size must be a whole number of MiB


FORMATS: dict[str, FormatRule] = {
    "raw": FormatRule(COMPRESSIONS),
    "qcow2": FormatRule(COMPRESSIONS),
    "vhd": FormatRule(("none",), "VHD is consumed in place (footer at the end of the file)",
                      mib_aligned=True),
    "vhd-fixed": FormatRule(("none",), "fixed VHD is uploaded as is (Azure needs it "
                            "uncompressed and MiB-aligned)", mib_aligned=True),
    "vhdx": FormatRule(COMPRESSIONS),
    "vmdk": FormatRule(COMPRESSIONS),
    "vmdk-stream": FormatRule(("none",), "streamOptimized VMDK is already compressed"),
    "vdi": FormatRule(COMPRESSIONS),
}


@attrs.frozen
class BootloaderRule:
    tables: tuple[str, ...]  # partition tables it can boot from
    needs_esp_on: tuple[str, ...]  # tables on which it needs an ESP
    secure_boot: bool  # can boot with Secure Boot
    firmware: str  # what boots it


BOOTLOADERS: dict[str, BootloaderRule] = {
    "systemd-boot": BootloaderRule(("gpt",), ("gpt",), True, "UEFI"),
    "grub": BootloaderRule(("gpt", "mbr"), ("gpt",), True, "UEFI on gpt, BIOS on mbr"),
    "none": BootloaderRule(("gpt", "mbr"), (), False, "none (direct kernel boot)"),
}

# partition type -> filesystems it may carry
PARTITION_FILESYSTEMS: dict[str, tuple[str, ...]] = {
    "esp": ("vfat",),
    "root": ("ext4", "xfs", "squashfs", "erofs"),
    "swap": ("swap",),
    "home": ("ext4", "xfs"),
    "var": ("ext4", "xfs"),
    "srv": ("ext4", "xfs"),
    "tmp": ("ext4", "xfs"),
    "xbootldr": ("vfat", "ext4"),
    "verity": ("none",),
    "generic": ("ext4", "xfs", "vfat", "squashfs", "erofs", "none"),
    "lvm": ("none",),  # an LVM physical volume: its logical volumes hold the filesystems
}
GPT_ONLY_TYPES = ("xbootldr", "verity")
READ_ONLY_ROOT_FILESYSTEMS = ("ext4", "erofs", "squashfs")
READ_ONLY_FILESYSTEMS = ("squashfs", "erofs")
MBR_MAX_PARTITIONS = 4
MBR_MAX_DISK = 2 * 1024**4  # 2^32 sectors of 512 bytes
GPT_MAX_PARTITIONS = 128  # entries of the standard GPT entry array
ESP_MIN = 64 * MiB
ESP_RECOMMENDED_SYSTEMD_BOOT = 256 * MiB


def check_output(spec: Spec) -> list[Problem]:
    out = spec.output
    where = spec.source_map
    problems: list[Problem] = []
    for i, fmt in enumerate(out.formats):
        rule = FORMATS[fmt]
        if out.compression not in rule.compressions:
            problems.append(where.problem(
                ("output", "compression"),
                f"Invalid combination of compression '{out.compression}' with format "
                f"'{fmt}': {rule.why}; use compression: none or another format"))
        if rule.mib_aligned and spec.disk.size is not None and spec.disk.size % MiB:
            problems.append(where.problem(
                ("output", "formats", i),
                f"format '{fmt}' needs a disk size that is a whole number of MiB, "
                f"not {spec.disk.size} bytes"))
    if len(set(out.formats)) != len(out.formats):
        problems.append(where.problem(("output", "formats"), "lists a format more than once"))
    if len(set(out.sbom)) != len(out.sbom):
        problems.append(where.problem(("output", "sbom"), "lists a format more than once"))
    sign = out.sign
    if sign is not None and sign.passphrase_env and sign.passphrase_file:
        problems.append(where.problem(("output", "sign"),
                                      "give passphrase_file or passphrase_env, not both"))
    return problems


def check_boot(spec: Spec) -> list[Problem]:
    """Partition table x bootloader x firmware x security."""
    c, disk, where = spec.customizations, spec.disk, spec.source_map
    problems: list[Problem] = []
    table, loader = disk.partition_table, c.bootloader
    rule = BOOTLOADERS[loader]
    esp = [p for p in disk.partitions if p.type == "esp"]
    partitions_given = bool(disk.partitions)
    if table not in rule.tables:
        problems.append(where.problem(
            ("customizations", "bootloader"),
            f"Invalid combination of bootloader '{loader}' with partition table '{table}': "
            f"{loader} boots with {rule.firmware} and needs {' or '.join(rule.tables)}"))
    elif partitions_given and table in rule.needs_esp_on and not esp:
        problems.append(where.problem(
            ("disk", "partitions"),
            f"bootloader '{loader}' on {table} boots with UEFI and needs an ESP partition "
            f"(type: esp, filesystem: vfat)"))
    if loader == "grub" and table == "mbr" and spec.image.base.arch == "aarch64":
        problems.append(where.problem(
            ("disk", "partition_table"),
            "Invalid combination of partition table 'mbr' with bootloader 'grub' on aarch64: "
            "aarch64 has no BIOS; use gpt with an ESP"))
    if table == "mbr" and disk.size is not None and disk.size > MBR_MAX_DISK:
        problems.append(where.problem(("disk", "size"),
                                      "an mbr partition table addresses at most 2TiB; use gpt"))
    sb = c.security.secure_boot
    if sb is not None:
        if not rule.secure_boot:
            problems.append(where.problem(
                ("customizations", "security", "secure_boot"),
                f"Invalid combination of secure_boot with bootloader '{loader}': Secure Boot "
                f"needs systemd-boot or grub"))
        elif table != "gpt" or (partitions_given and not esp):
            problems.append(where.problem(
                ("customizations", "security", "secure_boot"),
                "secure_boot needs UEFI: a gpt partition table with an ESP partition"))
    problems += _check_read_only_root(spec)
    return problems


def _check_read_only_root(spec: Spec) -> list[Problem]:
    security, disk, where = spec.customizations.security, spec.disk, spec.source_map
    problems: list[Problem] = []
    root = next(((i, p) for i, p in enumerate(disk.partitions) if p.type == "root"), None)
    if security.read_only_root:
        if disk.partition_table != "gpt":
            problems.append(where.problem(
                ("customizations", "security", "read_only_root"),
                "Invalid combination of read_only_root with partition table "
                f"'{disk.partition_table}': dm-verity needs gpt"))
        if root is not None and root[1].filesystem not in READ_ONLY_ROOT_FILESYSTEMS:
            problems.append(where.problem(
                ("disk", "partitions", root[0], "filesystem"),
                f"Invalid combination of read_only_root with root filesystem "
                f"'{root[1].filesystem}': use one of {', '.join(READ_ONLY_ROOT_FILESYSTEMS)}"))
    else:
        if root is not None and root[1].filesystem in READ_ONLY_FILESYSTEMS:
            problems.append(where.problem(
                ("disk", "partitions", root[0], "filesystem"),
                f"a {root[1].filesystem} root is read-only: set "
                f"customizations.security.read_only_root: true"))
        for i, p in enumerate(disk.partitions):
            if p.type == "verity":
                problems.append(where.problem(
                    ("disk", "partitions", i, "type"),
                    "a verity partition needs customizations.security.read_only_root: true"))
    return problems


def boot_warnings(spec: Spec) -> list[Problem]:
    warnings: list[Problem] = []
    if spec.customizations.bootloader != "systemd-boot":
        return warnings
    for i, p in enumerate(spec.disk.partitions):
        if p.type == "esp" and p.size is not None and p.size < ESP_RECOMMENDED_SYSTEMD_BOOT:
            warnings.append(spec.source_map.problem(
                ("disk", "partitions", i, "size"),
                f"systemd-boot keeps kernels and initrds on the ESP; {format_size(p.size)} may "
                f"be too small (recommended: at least "
                f"{format_size(ESP_RECOMMENDED_SYSTEMD_BOOT)})"))
    return warnings
