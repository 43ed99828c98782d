"""Write one partition's content into the disk file, whatever is stacked in it.

A partition holds a filesystem, a LUKS2 container, or an LVM physical volume whose
logical volumes hold filesystems or LUKS2 containers in turn. Each layer is written the
way the layer below can take it, still without a loop device, a mapping or a mount:

* a filesystem is made at its offset in the file that holds it (ext4 and vfat in place,
  the others as an image copied in sparsely);
* an LVM physical volume is its label and metadata (:mod:`imagecomposer.compose.disk.lvm`)
  at the start of its partition, each logical volume's content at the volume's offset;
* a LUKS2 container is staged: a file as large as the partition or logical volume gets
  its content written plain (recursively: an LVM PV with its LVs, or a filesystem), is
  encrypted in place (:mod:`imagecomposer.compose.disk.luks`) and is copied into its place.
  Ciphertext has no holes: an encrypted volume is fully allocated in the disk file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from imagecomposer.compose.disk import filesystems, luks, lvm, sparse
from imagecomposer.compose.disk.content import tree_size
from imagecomposer.compose.disk.sizing import MIB
from imagecomposer.compose.layout import PlannedPartition, Volume
from imagecomposer.foundation.errors import ComposeError

Events = Callable[[str], None]


class Writer:
    """Writes partitions of one disk: the trees, key sources and staging directory."""

    def __init__(self, trees: Mapping[str, Path], keys: Mapping[str, luks.KeySource],
                 stage: Path, say: Events, *, epoch: int, parallel: int = 1) -> None:
        self.trees = trees
        self.parallel = parallel
        self.keys = keys
        self.stage = stage
        self.say = say
        self.epoch = epoch  # the build's clock: file times, mkfs times, LVM creation_time
        self.when = epoch
        self.sizes: dict[str, int] = {}  # bytes each filesystem occupies, by volume name

    def partition(self, part: PlannedPartition, disk: Path) -> None:
        """Write ``part``'s content into ``disk`` at its offset."""
        self._volume(part, disk, part.start)

    def _volume(self, volume: Volume, target: Path, offset: int) -> None:
        enc = volume.encryption
        if enc is None:
            self._plain(volume, target, offset, volume.size)
            return
        keys = self.keys.get(volume.name)
        if keys is None:
            raise ComposeError(f"no passphrase_file or key_file for the encrypted volume "
                               f"'{volume.name}'")
        container = self.stage / f"{volume.name}.luks"
        try:
            with container.open("wb") as handle:
                handle.truncate(volume.size)
            self._plain(volume, container, 0, enc.capacity)
            self.say(f"LUKS2 encryption of '{volume.name}' ({volume.size // MIB} MiB, "
                     f"opens as {enc.device})")
            luks.encrypt(container, enc, keys, name=volume.name)
            sparse.copy_into(container, target, offset)
        finally:
            container.unlink(missing_ok=True)

    def _plain(self, volume: Volume, target: Path, offset: int, capacity: int) -> None:
        group = volume.volume_group if isinstance(volume, PlannedPartition) else None
        if group is not None:
            self.say(f"LVM physical volume of volume group '{group.name}' "
                     f"({len(group.logical_volumes)} logical volumes) in '{volume.name}'")
            lvm.write_physical_volume(target, offset, group, when=self.when)
            for lv in group.logical_volumes:
                self._volume(lv, target, offset + lv.offset)
            return
        if volume.filesystem == "none":
            return
        self.sizes[volume.name] = self._filesystem(volume, target, offset, capacity)

    def _filesystem(self, volume: Volume, target: Path, offset: int, capacity: int) -> int:
        tree = self.trees.get(volume.name)
        kind = "partition" if isinstance(volume, PlannedPartition) else "logical volume"
        self.say(f"{volume.filesystem} for {kind} '{volume.name}' ({capacity // MIB} MiB)")
        if volume.filesystem in filesystems.IN_PLACE:
            filesystems.make_filesystem(volume, tree, target, offset=offset, size=capacity,
                                        epoch=self.epoch, parallel=self.parallel)
            return capacity
        image = self.stage / f"{volume.name}.img"
        try:
            filesystems.make_filesystem(volume, tree, image, size=capacity, epoch=self.epoch,
                                        parallel=self.parallel)
            size = filesystems.image_fits(volume, image, capacity)
            sparse.copy_into(image, target, offset)
        finally:
            image.unlink(missing_ok=True)
        return size


def estimate(volume: Volume, trees: Mapping[str, Path],
             content_sizes: Mapping[str, int] | None = None) -> tuple[int, int]:
    """(bytes in the disk file, bytes staged at once in the work directory) for a volume:
    its content, or all of it when encrypted (ciphertext has no holes). ``content_sizes``:
    the trees' :func:`tree_size` by name, where the caller has them."""
    group = volume.volume_group if isinstance(volume, PlannedPartition) else None
    if group is not None:
        out, work = 1 * MIB, 0
        for lv in group.logical_volumes:
            lv_out, lv_work = estimate(lv, trees, content_sizes)
            out += lv_out
            work = max(work, lv_work)
    else:
        tree = trees.get(volume.name)
        known = content_sizes.get(volume.name) if content_sizes is not None else None
        content = known if known is not None else tree_size(tree) if tree is not None else 0
        out = min(volume.size, content + content // 8 + 4 * MIB)
        if volume.filesystem == "swap":
            out = 1 * MIB
        work = out if volume.filesystem not in filesystems.IN_PLACE else 0
    if volume.encryption is not None:
        return volume.size, volume.size + work
    return out, work
