"""Plan a disk layout from the spec: offsets, sizes, type GUIDs and every identifier.

Planning runs before the root tree is configured, because fstab, ``root=`` and the
bootloader entries need the partition and filesystem UUIDs. It is a pure function of the
spec's ``disk`` section, the content sizes and a seed (the caller passes a hash of the spec
and the lock), so the same inputs always give the same layout: identifiers are UUIDv5 of
the seed and the partition name, never random.

Sizes are aligned to 1 MiB. On GPT the last MiB stays free for the backup header (33
sectors); on MBR the last partition may run to the end of the disk.
"""

from __future__ import annotations

from collections.abc import Mapping

from imagecomposer.compose.disk import types, volumes
from imagecomposer.compose.disk.sizing import (
    ALIGN,
    DEFAULT_MOUNTPOINTS,
    LABEL_LIMITS,
    MIB,
    align_down,
    align_up,
    derive_disk_id,
    derive_fsuuid,
    derive_uuid,
    filesystem_of,
    verity_size,
)
from imagecomposer.compose.layout import SECTOR, Layout, PlannedPartition
from imagecomposer.foundation.errors import Problem, ValidationError
from imagecomposer.spec.combinations import GPT_MAX_PARTITIONS
from imagecomposer.spec.model import Disk, Partition


def plan_layout(disk: Disk, *, seed: str, content_sizes: Mapping[str, int] | None = None,
                arch: str = "x86_64") -> Layout:
    """Plan ``disk``: every partition's place, type and identifiers.

    ``content_sizes`` maps a partition name to the bytes of the tree that will fill it; it is
    needed for partitions without an explicit size when ``disk.size`` is auto (None).
    Raises :class:`ValidationError` with one problem per mistake.
    """
    content = dict(content_sizes or {})
    _check(disk, arch)
    table = disk.partition_table
    reserve_end = ALIGN if table == "gpt" else 0
    sizes: dict[str, int] = {}
    problems: list[Problem] = []
    rest: Partition | None = None
    for index, part in enumerate(disk.partitions):
        path = f"disk.partitions[{index}]"
        fs = filesystem_of(part)
        if part.type == "verity":
            continue  # sized from its data partition below
        if part.size is not None:
            sizes[part.name] = align_up(part.size)
            smallest = volumes.minimum_size(part)
            if sizes[part.name] < smallest:
                what = (f"a {fs} filesystem" if part.volume_group is None
                        else "an LVM physical volume")
                if part.encryption is not None:
                    what += " with LUKS2 (32 MiB)"
                problems.append(Problem(f"{what} needs at least {smallest // MIB} MiB",
                                        path=f"{path}.size"))
        elif disk.size is not None:
            rest = part
        elif fs == "swap":
            problems.append(Problem("a swap partition needs an explicit size when disk.size "
                                    "is auto", path=f"{path}.size"))
        else:
            sizes[part.name] = volumes.auto_partition_size(part, content, path, problems)
    if problems:
        raise ValidationError(problems)

    verity = next((p for p in disk.partitions if p.type == "verity"), None)
    data = _verity_data(disk) if verity is not None else None
    fixed = sum(sizes.values())
    if rest is not None:
        assert disk.size is not None
        available = align_down(disk.size) - ALIGN - reserve_end - fixed
        if verity is not None and verity.size is not None:
            available -= align_up(verity.size)
        if verity is not None and verity.size is None and data is rest:
            available -= verity_size(available)
        if available < max(ALIGN, volumes.minimum_size(rest)):
            raise ValidationError([Problem(
                f"disk.size {disk.size} B leaves {max(available, 0)} B for partition "
                f"'{rest.name}' (size: rest), too little", path="disk.size")])
        sizes[rest.name] = align_down(available)
    if verity is not None and data is not None:
        needed = verity_size(sizes[data.name])
        if verity.size is not None:
            if align_up(verity.size) < needed:
                raise ValidationError([Problem(
                    f"verity partition '{verity.name}' needs {needed} B for the hash tree of "
                    f"'{data.name}'", path="disk.partitions.size")])
            sizes[verity.name] = align_up(verity.size)
        else:
            sizes[verity.name] = needed

    total_needed = ALIGN + sum(sizes.values()) + reserve_end
    if disk.size is None:
        disk_size = total_needed
    else:
        disk_size = align_up(disk.size)
        if total_needed > disk_size:
            raise ValidationError([Problem(
                f"the partitions need {total_needed} B but disk.size is {disk.size} B",
                path="disk.size")])

    disk_id = derive_disk_id(seed, table)
    planned: list[PlannedPartition] = []
    offset = ALIGN
    for number, part in enumerate(disk.partitions, start=1):
        fs = filesystem_of(part)
        size = sizes[part.name]
        path = f"disk.partitions[{number - 1}]"
        group = (volumes.plan_group(part, size, seed=seed, path=path)
                 if part.volume_group is not None else None)
        enc = (volumes.plan_encryption(part.encryption, seed=seed, name=part.name,
                                       container=size, initramfs=volumes.holds_root(part))
               if part.encryption is not None else None)
        type_guid = (types.gpt_type(part.type, arch) if table == "gpt"
                     else types.mbr_type(part.type))
        if table == "gpt":
            partuuid = (part.uuid or derive_uuid(seed, "partition", part.name)).lower()
        else:
            partuuid = f"{disk_id.removeprefix('0x')}-{number:02x}"
        planned.append(PlannedPartition(
            name=part.name, type=part.type, type_guid=type_guid, filesystem=fs,
            start=offset, size=size, partuuid=partuuid,
            fsuuid=derive_fsuuid(seed, part.name, fs), number=number,
            mountpoint=part.mountpoint or DEFAULT_MOUNTPOINTS.get(part.type),
            label=part.label, mount_options=part.mount_options, encryption=enc,
            volume_group=group))
        offset += size
    return Layout(table=table, size=disk_size, disk_id=disk_id, partitions=tuple(planned))


def _verity_data(disk: Disk) -> Partition:
    root = next((p for p in disk.partitions if p.type == "root"), None)
    if root is None:
        raise ValidationError([Problem("a verity partition needs a root partition to protect",
                                       path="disk.partitions")])
    return root


def _check(disk: Disk, arch: str) -> None:
    problems: list[Problem] = []
    if not disk.partitions:
        problems.append(Problem("the disk has no partitions", path="disk.partitions"))
    names = [p.name for p in disk.partitions]
    for index, part in enumerate(disk.partitions):
        path = f"disk.partitions[{index}]"
        if names.count(part.name) > 1 and names.index(part.name) == index:
            problems.append(Problem(f"partition name '{part.name}' is used twice",
                                    path=f"{path}.name"))
        if part.size is None and index != len(disk.partitions) - 1:
            problems.append(Problem("only the last partition may have size 'rest'",
                                    path=f"{path}.size"))
        if part.size is None and part.type == "verity":
            problems.append(Problem("a verity partition cannot be 'rest' (its size follows "
                                    "from the data it protects)", path=f"{path}.size"))
        fs = filesystem_of(part)
        if (part.type == "swap") != (fs == "swap"):
            problems.append(Problem("swap partitions take filesystem 'swap' and vice versa",
                                    path=f"{path}.filesystem"))
        if part.type == "esp" and fs != "vfat":
            problems.append(Problem("an ESP must be vfat", path=f"{path}.filesystem"))
        limit = 36 if part.volume_group is not None else LABEL_LIMITS.get(fs, 36)
        if part.label is not None and len(part.label) > limit:
            problems.append(Problem(f"label '{part.label}' is longer than {fs} allows "
                                    f"({limit} characters)", path=f"{path}.label"))
        if part.uuid is not None and disk.partition_table == "mbr":
            problems.append(Problem("MBR partitions have no UUID of their own (PARTUUID is "
                                    "derived from the disk id)", path=f"{path}.uuid"))
        if part.uuid is not None and not types.is_guid(part.uuid):
            problems.append(Problem(f"'{part.uuid}' is not a UUID", path=f"{path}.uuid"))
        try:
            if disk.partition_table == "gpt":
                types.gpt_type(part.type, arch, path=f"{path}.type")
            else:
                types.mbr_type(part.type, path=f"{path}.type")
        except ValidationError as exc:
            problems.extend(exc.problems)
    if disk.partition_table == "mbr" and len(disk.partitions) > 4:
        problems.append(Problem("an MBR disk holds at most 4 partitions (no extended "
                                "partitions); use GPT", path="disk.partitions"))
    if disk.partition_table == "gpt" and len(disk.partitions) > GPT_MAX_PARTITIONS:
        # sfdisk writes the standard 128-entry array and silently drops the rest
        problems.append(Problem(f"a GPT disk holds at most {GPT_MAX_PARTITIONS} partitions",
                                path="disk.partitions"))
    problems += _check_volumes(disk)
    if sum(1 for p in disk.partitions if p.type == "verity") > 1:
        problems.append(Problem("only one verity partition is supported",
                                path="disk.partitions"))
    if disk.size is not None and disk.size <= 0:
        problems.append(Problem("disk.size must be positive", path="disk.size"))
    if problems:
        raise ValidationError(problems)


def _check_volumes(disk: Disk) -> list[Problem]:
    """What planning needs of volume groups and encryption (the spec's validation says
    more, see imagecomposer.spec.volumes): a volume group exactly on lvm partitions, names
    unique among partitions and logical volumes (trees are keyed by them), 'rest' last,
    no encrypted or LVM verity root."""
    problems: list[Problem] = []
    names = [p.name for p in disk.partitions]
    for index, part in enumerate(disk.partitions):
        path = f"disk.partitions[{index}]"
        lvm_type = part.type == "lvm" or part.type.upper() == types.LVM
        if lvm_type != (part.volume_group is not None):
            problems.append(Problem("a partition of type lvm holds a volume_group, and only "
                                    "it", path=f"{path}.type"))
        if part.encryption is not None and part.type in ("esp", "xbootldr", "verity"):
            problems.append(Problem(f"a {part.type} partition cannot be encrypted",
                                    path=f"{path}.encryption"))
        lvs = part.volume_group.logical_volumes if part.volume_group is not None else ()
        for j, lv in enumerate(lvs):
            lv_path = f"{path}.volume_group.logical_volumes[{j}]"
            if lv.name in names:
                problems.append(Problem(f"name '{lv.name}' is used twice (partition and "
                                        f"logical volume names share one namespace)",
                                        path=f"{lv_path}.name"))
            names.append(lv.name)
            if lv.size is None and j != len(lvs) - 1:
                problems.append(Problem("only the last logical volume may have size 'rest'",
                                        path=f"{lv_path}.size"))
            limit = LABEL_LIMITS.get(lv.filesystem, 36)
            if lv.label is not None and len(lv.label) > limit:
                problems.append(Problem(f"label '{lv.label}' is longer than {lv.filesystem} "
                                        f"allows ({limit} characters)", path=f"{lv_path}.label"))
            if lv.encryption is not None and part.encryption is not None:
                problems.append(Problem("a logical volume in an encrypted partition cannot "
                                        "be encrypted again", path=f"{lv_path}.encryption"))
    if any(p.type == "verity" for p in disk.partitions):
        root = next((p for p in disk.partitions if p.type == "root"), None)
        if root is not None and root.encryption is not None:
            problems.append(Problem("a dm-verity root cannot be encrypted",
                                    path="disk.partitions"))
    return problems


def sectors(value: int) -> int:
    """Bytes to 512-byte sectors (sizes here are always sector multiples)."""
    return value // SECTOR
