"""Plan what sits inside a partition besides a plain filesystem: an LVM2 volume group (the
partition is its one physical volume) and LUKS2 containers (around a partition's or a
logical volume's content).

Sizes, all whole MiB:

* a physical volume keeps :data:`PE_START` (1 MiB: label and metadata area) before its
  first extent; extents are :data:`EXTENT` (4 MiB, lvm2's default); a logical volume is
  one linear segment of whole extents, allocated in spec order from extent 0, the ``rest``
  one taking what is left;
* a LUKS2 container costs :data:`~imagecomposer.compose.disk.luks.RESERVE` (32 MiB): its
  content (filesystem or PV) is that much smaller than the container, the opened device
  half of it (the header). An encrypted PV therefore reports the opened size to LVM and
  its last extents stay free (they lie where the content could not be written).

Identifiers come from the layout seed like every other one: LVM ids from
:func:`imagecomposer.compose.disk.lvm.derive_id`, LUKS2 UUIDs and filesystem UUIDs from
:func:`~imagecomposer.compose.disk.sizing.derive_uuid`.
"""

from __future__ import annotations

from collections.abc import Mapping

from imagecomposer.compose.disk import lvm
from imagecomposer.compose.disk.luks import DATA_OFFSET, RESERVE
from imagecomposer.compose.disk.sizing import (
    MIB,
    align_up,
    auto_size,
    derive_fsuuid,
    derive_uuid,
    filesystem_of,
    minimum,
)
from imagecomposer.compose.layout import (
    PlannedEncryption,
    PlannedLogicalVolume,
    PlannedVolumeGroup,
)
from imagecomposer.foundation.errors import Problem, ValidationError
from imagecomposer.spec.model import Encryption, LogicalVolume, Partition

EXTENT = 4 * MIB
PE_START = 1 * MIB


def holds_root(part: Partition) -> bool:
    """The partition is the root, or its volume group holds the root logical volume."""
    if part.type == "root" or part.mountpoint == "/":
        return True
    group = part.volume_group
    return group is not None and any(lv.mountpoint == "/" for lv in group.logical_volumes)


def minimum_size(part: Partition) -> int:
    """The smallest partition that can hold ``part``'s content."""
    # for a PV, whether its LVs fit is checked per LV (plan_group)
    smallest = (PE_START + EXTENT if part.volume_group is not None
                else minimum(filesystem_of(part)))
    return smallest + (RESERVE if part.encryption is not None else 0)


def auto_partition_size(part: Partition, content: Mapping[str, int], path: str,
                        problems: list[Problem]) -> int:
    """Size of a partition when ``disk.size`` is auto: its content plus the margins, plus
    the LVM metadata and the LUKS2 reserve."""
    extra = RESERVE if part.encryption is not None else 0
    group = part.volume_group
    if group is None:
        if part.name not in content:
            problems.append(Problem(f"disk.size is auto but the content size of partition "
                                    f"'{part.name}' is unknown", path=f"{path}.size"))
            return 0
        return align_up(auto_size(filesystem_of(part), content[part.name]) + extra)
    total = 0
    for j, lv in enumerate(group.logical_volumes):
        total += _lv_size(lv, content, f"{path}.volume_group.logical_volumes[{j}]", problems,
                          auto=True)
    return align_up(PE_START + total + extra)


def _lv_size(lv: LogicalVolume, content: Mapping[str, int], path: str,
             problems: list[Problem], *, auto: bool) -> int:
    """Bytes (whole extents) of an LV with an explicit size, or sized from its content."""
    extra = RESERVE if lv.encryption is not None else 0
    if lv.size is not None:
        size = align_up(lv.size, EXTENT)
    elif not auto:
        return 0  # "rest": the caller gives it what is left
    elif lv.filesystem == "swap":
        problems.append(Problem("a swap logical volume needs an explicit size when disk.size "
                                "is auto", path=f"{path}.size"))
        return 0
    elif lv.name not in content:
        problems.append(Problem(f"disk.size is auto but the content size of logical volume "
                                f"'{lv.name}' is unknown", path=f"{path}.size"))
        return 0
    else:
        size = align_up(auto_size(lv.filesystem, content[lv.name]) + extra, EXTENT)
    smallest = minimum(lv.filesystem) + extra
    if size < smallest:
        problems.append(Problem(f"logical volume '{lv.name}' needs at least "
                                f"{smallest // MIB} MiB", path=f"{path}.size"))
    return size


def plan_encryption(enc: Encryption, *, seed: str, name: str, container: int,
                    initramfs: bool) -> PlannedEncryption:
    """The LUKS2 container of volume ``name`` (``container`` bytes)."""
    return PlannedEncryption(
        uuid=derive_uuid(seed, "luks", name), mapper=f"{name}_crypt", data_offset=DATA_OFFSET,
        capacity=container - RESERVE, opened_size=container - DATA_OFFSET,
        unlock="key-file" if enc.embed_key else "passphrase", initramfs=initramfs, type=enc.type)


def plan_group(part: Partition, size: int, *, seed: str, path: str) -> PlannedVolumeGroup:
    """The volume group of lvm partition ``part`` of ``size`` bytes, its LVs allocated in
    order, the one without a size (the last) taking the rest. An auto-sized partition was
    made exactly large enough (:func:`auto_partition_size`), so its rest is the LV's
    content size."""
    group = part.volume_group
    assert group is not None
    pv_size = size - DATA_OFFSET if part.encryption is not None else size
    writable = size - RESERVE if part.encryption is not None else size
    pe_count = (pv_size - PE_START) // EXTENT
    free = (writable - PE_START) // EXTENT  # extents we can write (below the LUKS2 reserve)
    problems: list[Problem] = []
    planned: list[PlannedLogicalVolume] = []
    start = 0
    for j, lv in enumerate(group.logical_volumes):
        lv_path = f"{path}.volume_group.logical_volumes[{j}]"
        count = _lv_size(lv, {}, lv_path, problems, auto=False) // EXTENT
        if lv.size is None:
            count = free - start
            smallest = minimum(lv.filesystem) + (RESERVE if lv.encryption else 0)
            if count * EXTENT < smallest:
                problems.append(Problem(
                    f"logical volume '{lv.name}' (size: rest) gets {max(count, 0) * 4} MiB of "
                    f"partition '{part.name}', too little", path=f"{lv_path}.size"))
        if start + count > free:
            problems.append(Problem(
                f"logical volume '{lv.name}' does not fit partition '{part.name}': it needs "
                f"extents {start}-{start + count - 1} of 4 MiB but only {free} are writable "
                f"(1 MiB LVM metadata{', 32 MiB LUKS2' if part.encryption else ''})",
                path=f"{lv_path}.size"))
        if problems:
            start += max(count, 0)
            continue
        enc = None
        if lv.encryption is not None:
            enc = plan_encryption(lv.encryption, seed=seed, name=lv.name,
                                  container=count * EXTENT, initramfs=lv.mountpoint == "/")
        planned.append(PlannedLogicalVolume(
            name=lv.name, vg=group.name, lvid=lvm.derive_id(seed, "lv", f"{group.name}/{lv.name}"),
            filesystem=lv.filesystem, offset=PE_START + start * EXTENT, size=count * EXTENT,
            start_extent=start, extent_count=count,
            fsuuid=derive_fsuuid(seed, lv.name, lv.filesystem), mountpoint=lv.mountpoint,
            label=lv.label, mount_options=lv.mount_options, encryption=enc))
        start += count
    if problems:
        raise ValidationError(problems)
    return PlannedVolumeGroup(
        name=group.name, vgid=lvm.derive_id(seed, "vg", group.name),
        pvid=lvm.derive_id(seed, "pv", part.name), extent_size=EXTENT, pe_start=PE_START,
        pv_size=pv_size, pe_count=pe_count, logical_volumes=tuple(planned))
