"""Checks of LVM volume groups, logical volumes and LUKS2 encryption in a spec's disk.

Kept apart from :mod:`imagecomposer.spec.semantics` (partitions, accounts, ...) so the two
evolve separately. Every problem is positioned at the field the user wrote. The rules are
explained in docs/disk.md ("LVM and LUKS2"):

- a partition holds a ``volume_group`` exactly when its type is ``lvm`` (GPT
  E6D6D379-F507-44C2-A23C-238F2A3DF928, MBR 8e); volume group names are unique, logical
  volume names are unique among all partitions and logical volumes (they name trees);
- logical volume sizes (whole 4 MiB extents) fit the partition after 1 MiB of LVM metadata
  and, when the partition is encrypted, 32 MiB for LUKS2; ``rest`` only for the last one;
- ``encryption`` needs a key source (``passphrase_file`` and/or ``key_file``); a volume the
  boot must open needs a passphrase or ``embed_key``; no encryption of what the firmware
  or the bootloader reads (ESP, xbootldr), of verity hashes, nor twice (a PV and an LV in it);
- the root is a partition of type root or a logical volume mounted at /, exactly one;
- a dm-verity root (``read_only_root``) must be a plain partition: refused on LVM or LUKS2;
- GRUB on mbr boots with BIOS and reads the kernel from the root filesystem: that root
  cannot be on LVM or LUKS2.
"""

from __future__ import annotations

from collections.abc import Iterator

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.units import format_size
from imagecomposer.foundation.yamldoc.sourcemap import PathKey
from imagecomposer.spec.model import Encryption, LogicalVolume, Partition, Spec

MiB = 1024 * 1024
EXTENT = 4 * MiB  # the extent size of the volume groups we write
LVM_METADATA = 1 * MiB  # label + metadata area before the first extent
LUKS_RESERVE = 32 * MiB  # LUKS2 header + room to encrypt in place
LVM_GUID = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
UNENCRYPTABLE = {"esp": "the firmware reads it", "xbootldr": "the bootloader reads it",
                 "verity": "it holds a dm-verity hash tree"}
RESERVED_LV = ("snapshot", "pvmove")
RESERVED_LV_PARTS = ("_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage",
                     "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata")
PBKDF_MEMORY = (8 * MiB, 1024 * MiB)


def is_lvm_type(type_: str) -> bool:
    return type_ == "lvm" or type_.upper() == LVM_GUID


def logical_volumes(spec: Spec) -> Iterator[tuple[PathKey, Partition, LogicalVolume]]:
    """(field path of the LV, its partition, the LV) for every logical volume."""
    for i, part in enumerate(spec.disk.partitions):
        if part.volume_group is None:
            continue
        for j, lv in enumerate(part.volume_group.logical_volumes):
            yield ("disk", "partitions", i, "volume_group", "logical_volumes", j), part, lv


def root_count(spec: Spec) -> int:
    """Partitions of type root plus logical volumes mounted at /."""
    return (sum(1 for p in spec.disk.partitions if p.type == "root")
            + sum(1 for _, _, lv in logical_volumes(spec) if lv.mountpoint == "/"))


def check_volumes(spec: Spec) -> list[Problem]:
    """Every LVM and LUKS2 problem of ``spec.disk``."""
    problems = [*_check_groups(spec), *_check_encryption(spec), *_check_names(spec),
                *_check_root(spec)]
    return problems


def _check_groups(spec: Spec) -> list[Problem]:
    where, table = spec.source_map, spec.disk.partition_table
    problems: list[Problem] = []
    for i, part in enumerate(spec.disk.partitions):
        at: PathKey = ("disk", "partitions", i)
        group = part.volume_group
        if part.type == "lvm" and group is None:
            problems.append(where.problem((*at, "type"),
                                          "a partition of type lvm needs a volume_group"))
        if group is None:
            continue
        if not is_lvm_type(part.type):
            code = "8e" if table == "mbr" else LVM_GUID
            problems.append(where.problem(
                (*at, "type"), f"a partition holding a volume group needs type: lvm "
                f"({table} type {code}), not '{part.type}'"))
        if group.name in (".", ".."):
            problems.append(where.problem((*at, "volume_group", "name"),
                                          f"'{group.name}' is not a volume group name"))
        lvs = group.logical_volumes
        for j, lv in enumerate(lvs):
            lv_at: PathKey = (*at, "volume_group", "logical_volumes", j)
            if lv.size is None and j != len(lvs) - 1:
                problems.append(where.problem((*lv_at, "size"), "only the last logical "
                                              "volume may have size: rest"))
            if lv.filesystem == "swap" and lv.mountpoint is not None:
                problems.append(where.problem((*lv_at, "mountpoint"),
                                              "a swap logical volume cannot be mounted"))
            if lv.size is not None and lv.size % 512:
                problems.append(where.problem((*lv_at, "size"), "must be a multiple of 512 "
                                              "bytes (the sector size)"))
        problems += _check_fit(spec, i, part)
    return problems


def _check_fit(spec: Spec, index: int, part: Partition) -> list[Problem]:
    """Logical volumes (whole extents) fit the partition when its size is known."""
    assert part.volume_group is not None
    if part.size is None:
        return []  # sized by the planner (rest of the disk, or from the content)
    where = spec.source_map
    at: PathKey = ("disk", "partitions", index, "volume_group", "logical_volumes")
    overhead = LVM_METADATA + (LUKS_RESERVE if part.encryption is not None else 0)
    extents = max(part.size - overhead, 0) // EXTENT
    lvs = part.volume_group.logical_volumes
    needed = sum(-(-lv.size // EXTENT) for lv in lvs if lv.size is not None)
    rest = any(lv.size is None for lv in lvs)
    if needed > extents or (rest and needed == extents):
        what = "the logical volumes need" if not rest else "the logical volumes before 'rest' need"
        luks = ", 32MiB for LUKS2" if part.encryption is not None else ""
        last = len(lvs) - 1
        return [where.problem((*at, last, "size"), (
            f"{what} {format_size(needed * EXTENT)} (whole 4MiB extents) but partition "
            f"'{part.name}' of {format_size(part.size)} holds "
            f"{format_size(extents * EXTENT)} of extents (1MiB LVM metadata{luks})"))]
    return []


def _encrypted(spec: Spec) -> Iterator[tuple[PathKey, str, Encryption, bool]]:
    """(field path of ``encryption``, what it encrypts, it, opened at boot)."""
    for i, part in enumerate(spec.disk.partitions):
        if part.encryption is not None:
            opened = (part.volume_group is not None or part.filesystem == "swap"
                      or part.mountpoint is not None or part.type == "root")
            yield ("disk", "partitions", i, "encryption"), part.name, part.encryption, opened
    for at, _, lv in logical_volumes(spec):
        if lv.encryption is not None:
            opened = lv.mountpoint is not None or lv.filesystem == "swap"
            yield (*at, "encryption"), lv.name, lv.encryption, opened


def _check_encryption(spec: Spec) -> list[Problem]:
    where = spec.source_map
    problems: list[Problem] = []
    for at, name, enc, opened in _encrypted(spec):
        if enc.passphrase_file is None and enc.key_file is None:
            problems.append(where.problem(at, f"encryption of '{name}' needs a key source: "
                                          "passphrase_file and/or key_file (never a "
                                          "passphrase in the spec)"))
        elif enc.embed_key and enc.key_file is None:
            problems.append(where.problem((*at, "embed_key"), "embed_key needs a key_file"))
        elif opened and enc.passphrase_file is None and not enc.embed_key:
            problems.append(where.problem(at, f"'{name}' is opened at boot but a key file "
                                          "cannot be typed at the console: add "
                                          "passphrase_file or set embed_key: true"))
        low, high = PBKDF_MEMORY
        if not low <= enc.pbkdf_memory <= high:
            problems.append(where.problem((*at, "pbkdf_memory"), (
                f"pbkdf_memory must be between {format_size(low)} and {format_size(high)} "
                f"(the machine unlocking it needs that much free memory)")))
    for i, part in enumerate(spec.disk.partitions):
        if part.encryption is None:
            continue
        at = ("disk", "partitions", i)
        if part.type in UNENCRYPTABLE:
            problems.append(where.problem((*at, "encryption"), f"a {part.type} partition "
                                          f"cannot be encrypted: {UNENCRYPTABLE[part.type]}"))
        elif part.volume_group is None and part.filesystem == "none":
            problems.append(where.problem((*at, "encryption"), "nothing to encrypt: the "
                                          "partition has no filesystem"))
        if part.size is not None and part.size <= LUKS_RESERVE:
            problems.append(where.problem((*at, "size"), (
                f"an encrypted partition needs more than {format_size(LUKS_RESERVE)} (16MiB "
                f"LUKS2 header, 16MiB to encrypt in place)")))
        if part.volume_group is not None:
            for j, lv in enumerate(part.volume_group.logical_volumes):
                if lv.encryption is not None:
                    problems.append(where.problem(
                        (*at, "volume_group", "logical_volumes", j, "encryption"),
                        f"logical volume '{lv.name}' is in the encrypted partition "
                        f"'{part.name}' already: encrypting it twice is not supported"))
    for at, _, lv in logical_volumes(spec):
        if lv.encryption is not None and lv.size is not None and lv.size <= LUKS_RESERVE:
            problems.append(where.problem((*at, "size"), (
                f"an encrypted logical volume needs more than {format_size(LUKS_RESERVE)} "
                f"(16MiB LUKS2 header, 16MiB to encrypt in place)")))
    return problems


def _check_names(spec: Spec) -> list[Problem]:
    where = spec.source_map
    problems: list[Problem] = []
    taken = {p.name for p in spec.disk.partitions}
    mounted = {p.mountpoint for p in spec.disk.partitions if p.mountpoint is not None}
    groups: set[str] = set()
    for i, part in enumerate(spec.disk.partitions):
        if part.volume_group is None:
            continue
        if part.volume_group.name in groups:
            problems.append(where.problem(("disk", "partitions", i, "volume_group", "name"),
                                          f"duplicate volume group name "
                                          f"'{part.volume_group.name}'"))
        groups.add(part.volume_group.name)
    for at, _, lv in logical_volumes(spec):
        if lv.name in taken:
            problems.append(where.problem((*at, "name"), f"name '{lv.name}' is already used "
                                          "by a partition or logical volume (names must be "
                                          "unique across both)"))
        taken.add(lv.name)
        if lv.name in RESERVED_LV or lv.name.startswith("pvmove") or \
                any(part in lv.name for part in RESERVED_LV_PARTS):
            problems.append(where.problem((*at, "name"), f"'{lv.name}' is reserved by LVM"))
        if lv.mountpoint is not None:
            if lv.mountpoint in mounted:
                problems.append(where.problem((*at, "mountpoint"),
                                              f"duplicate mount point '{lv.mountpoint}'"))
            mounted.add(lv.mountpoint)
    return problems


def _check_root(spec: Spec) -> list[Problem]:
    where, c = spec.source_map, spec.customizations
    problems: list[Problem] = []
    root_lv = next(((at, lv) for at, _, lv in logical_volumes(spec) if lv.mountpoint == "/"),
                   None)
    root_part = next(((("disk", "partitions", i), p) for i, p in enumerate(spec.disk.partitions)
                      if p.type == "root"), None)
    layered_at: PathKey | None = None
    if root_lv is not None:
        at, lv = root_lv
        layered_at = (*at, "mountpoint")
        if lv.filesystem in ("squashfs", "erofs", "swap", "vfat"):
            problems.append(where.problem((*at, "filesystem"), f"the root logical volume "
                                          f"cannot be {lv.filesystem}: use ext4 or xfs"))
    elif root_part is not None and root_part[1].encryption is not None:
        layered_at = (*root_part[0], "encryption")
    if layered_at is None:
        return problems
    if c.security.read_only_root:
        problems.append(where.problem(layered_at, (
            "read_only_root (dm-verity) needs the root on a plain partition: the verity "
            "data and hash partitions are found by PARTUUID, which a root on LVM or LUKS2 "
            "does not have")))
    esp = any(p.type == "esp" for p in spec.disk.partitions)
    if c.bootloader == "grub" and spec.disk.partition_table == "mbr" and not esp:
        problems.append(where.problem(layered_at, (
            "GRUB on mbr boots with BIOS and reads the kernel from the root filesystem, "
            "which cannot be on LVM or LUKS2: use gpt with an ESP")))
    return problems
