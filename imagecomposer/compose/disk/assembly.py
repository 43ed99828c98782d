"""Assemble a raw disk image from a planned layout and one directory tree per partition.

The method, with no loop device and no mount anywhere:

1. check free space, create a sparse temporary file next to the output;
2. write the partition table with ``sfdisk`` on the plain file;
3. build the verity-protected root (if any) as an image, hash it with ``veritysetup
   format`` into a second image, copy both into place, and hand the root hash to the
   caller (``on_verity``) so it can finish the ESP (kernel command line) before the ESP
   is built;
4. fill every other partition (:mod:`imagecomposer.compose.disk.stack`): ext4 and vfat
   directly at their offset in the disk file, the others as images copied in sparsely; an
   LVM physical volume as its metadata plus its logical volumes' filesystems at their
   offsets; LUKS2 containers staged, encrypted in place and copied in;
5. rename the temporary file onto the output.

Any failure, Ctrl-C included, removes the temporary file and the staged images, so a
failed build never leaves a half-written image behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from imagecomposer.compose.disk import filesystems, sparse, stack, table
from imagecomposer.compose.disk.luks import KeySource
from imagecomposer.compose.disk.verity import VerityInfo, format_verity, salt_for
from imagecomposer.compose.layout import Layout
from imagecomposer.foundation.epoch import resolve
from imagecomposer.foundation.errors import ComposeError, InsufficientDiskSpace

MIB = 1 << 20
Events = Callable[[str], None]


@attrs.frozen
class AssemblyResult:
    """The finished disk: its final layout, the verity root hash and measured figures."""

    output: Path
    layout: Layout
    verity: VerityInfo | None
    image_sizes: Mapping[str, int]  # bytes each filesystem occupies, by partition or LV
    seconds: float

    @property
    def roothash(self) -> str | None:
        return self.verity.roothash if self.verity is not None else None


def assemble(layout: Layout, trees: Mapping[str, Path], output: Path, *, workdir: Path,
             events: Events | None = None,
             on_verity: Callable[[VerityInfo], None] | None = None,
             keys: Mapping[str, KeySource] | None = None,
             epoch: int | None = None, parallel: int = 1,
             content_sizes: Mapping[str, int] | None = None) -> AssemblyResult:
    """Write ``layout`` with each partition filled from ``trees[name]`` into ``output``.

    A partition or logical volume without a tree gets an empty filesystem (read-only ones
    need a tree). ``keys`` holds the key sources of encrypted volumes, by volume name.
    ``on_verity`` is called with the root hash after the root is sealed and before any
    other partition (notably the ESP, whose loader entry or UKI carries the command line)
    is built. ``events`` receives one line per step. ``epoch`` is the build's clock
    (default :func:`imagecomposer.foundation.epoch.build_epoch`): the same layout, trees
    and epoch give the same bytes (LUKS2 containers excepted: their salts and volume keys
    are random by design). The trees' file times are clamped to it. ``parallel``: threads
    of the filesystem tools that have them (mksquashfs); the bytes do not depend on it.
    ``content_sizes``: :func:`tree_size` of the trees by name when the caller has them
    (the layout was planned from them), not walked again for the space check.
    """
    began = time.monotonic()
    epoch = resolve(epoch)
    say = events or (lambda _line: None)
    unknown = set(trees) - {v.name for v in layout.volumes()}
    if unknown:
        raise ComposeError(f"trees given for partitions not in the layout: {sorted(unknown)}")
    output = output.absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    check_space(layout, trees, output, workdir, content_sizes)
    stage = Path(tempfile.mkdtemp(prefix="disk-", dir=workdir))
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    partial = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.ftruncate(fd, layout.size)
        os.close(fd)
        say(f"partition table ({layout.table}, {layout.size // MIB} MiB)")
        table.write_table(layout, partial)
        sizes: dict[str, int] = {}
        verity = _seal_root(layout, trees, partial, stage, sizes, say, epoch, parallel)
        if verity is not None and on_verity is not None:
            on_verity(verity)
        writer = stack.Writer(trees, keys or {}, stage, say, epoch=epoch, parallel=parallel)
        for part in layout.partitions:
            if part.name not in sizes:
                writer.partition(part, partial)
        sizes.update(writer.sizes)
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        shutil.rmtree(stage, ignore_errors=True)
    return AssemblyResult(output=output, layout=layout, verity=verity, image_sizes=sizes,
                          seconds=time.monotonic() - began)


def _seal_root(layout: Layout, trees: Mapping[str, Path], disk: Path, stage: Path,
               sizes: dict[str, int], say: Events, epoch: int, parallel: int
               ) -> VerityInfo | None:
    hash_part = layout.by_type("verity")
    if hash_part is None:
        return None
    data_part = layout.root_partition
    say(f"{data_part.filesystem} for verity-protected partition '{data_part.name}'")
    image = stage / f"{data_part.name}.img"
    if data_part.filesystem in filesystems.IN_PLACE:
        with image.open("wb") as handle:
            handle.truncate(data_part.size)
    filesystems.make_filesystem(data_part, trees.get(data_part.name), image, epoch=epoch,
                                parallel=parallel)
    filesystems.image_fits(data_part, image)
    hash_image = stage / f"{hash_part.name}.img"
    say(f"dm-verity hash tree into partition '{hash_part.name}'")
    info = format_verity(image, hash_image, salt=salt_for(layout.disk_id), uuid=hash_part.fsuuid,
                         data_partuuid=data_part.partuuid, hash_partuuid=hash_part.partuuid)
    sizes[data_part.name] = filesystems.image_fits(data_part, image)
    sizes[hash_part.name] = filesystems.image_fits(hash_part, hash_image)
    sparse.copy_into(image, disk, data_part.start)
    sparse.copy_into(hash_image, disk, hash_part.start)
    image.unlink()
    hash_image.unlink()
    return info


def space_needed(layout: Layout, trees: Mapping[str, Path],
                 content_sizes: Mapping[str, int] | None = None) -> tuple[int, int]:
    """Bytes needed next to the output and in the work directory (estimates, generous).

    The disk is sparse, so it needs about its content (all of an encrypted volume);
    images staged in the work directory need their content once more until they are
    copied in.
    """
    out = 1 * MIB
    work = 0
    verity = layout.by_type("verity") is not None
    for part in layout.partitions:
        part_out, part_work = stack.estimate(part, trees, content_sizes)
        out += part_out
        if verity and part.type in ("root", "verity"):
            part_work = part_out * (2 if part.type == "root" else 1)
        work = max(work, part_work)
    return out, work


def check_space(layout: Layout, trees: Mapping[str, Path], output: Path, workdir: Path,
                content_sizes: Mapping[str, int] | None = None) -> None:
    """Raise :class:`InsufficientDiskSpace` before writing anything if space is short."""
    out_need, work_need = space_needed(layout, trees, content_sizes)
    out_dev, work_dev = output.parent.stat().st_dev, workdir.stat().st_dev
    demands = {output.parent: out_need + (work_need if out_dev == work_dev else 0)}
    if out_dev != work_dev:
        demands[workdir] = work_need
    for where, need in demands.items():
        have = shutil.disk_usage(where).free
        if need > have:
            raise InsufficientDiskSpace(
                f"Insufficient disk space: need {_human(need)}, have {_human(have)} in {where}")


def _human(value: int) -> str:
    if value < 10 * 1024 * MIB:
        return f"{value / MIB:.1f} MiB"
    return f"{value / (1024 * MIB):.1f} GiB"
