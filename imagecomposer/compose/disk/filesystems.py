"""Build filesystems from directories, without loop devices and without mounting anything.

Every filesystem here is made by its own mkfs tool reading a directory: ``mke2fs -d``,
``mkfs.vfat`` + ``mcopy -s``, ``mksquashfs``, ``mkfs.erofs``, ``mkfs.xfs -p protofile``.
ext4 and vfat are written straight into the disk file at the partition's offset (their
tools take an offset), which saves a copy; the others are built as an image file and
copied into place sparsely by :mod:`imagecomposer.compose.disk.sparse`.

Every filesystem is a function of its tree's content, its identifiers and the build epoch
(:mod:`imagecomposer.foundation.epoch`), never of the clock, of the tree's own times or of
the order a directory lists in. Each tool runs with ``SOURCE_DATE_EPOCH`` (mke2fs and
debugfs also with ``E2FSPROGS_FAKE_TIME``, mtools with its settings pinned); mke2fs adds
entries sorted (``scandir`` with ``alphasort``, under ``LC_ALL=C``) and one ``debugfs`` pass
then gives every inode ``atime = ctime = mtime = min(mtime, epoch)`` (mke2fs copies the
tree's ctime and atime verbatim; :mod:`imagecomposer.compose.disk.ext4_times`); FAT
directories are created and filled in name order (``mcopy -s`` follows ``readdir``) and
every FAT time is the epoch; mksquashfs and mkfs.erofs set every time to
``SOURCE_DATE_EPOCH``. The tree is only read. (The Composer clamps its own work trees to the
epoch as well, before assembly: :func:`imagecomposer.compose.disk.content.clamp_times`.)
XFS (``mkfs.xfs -p``, xfsprogs 6.1) stamps its inodes with the clock and random generation
numbers: it is the one filesystem here that is not reproducible.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from imagecomposer.compose.disk.ext4_times import clamp_inode_times
from imagecomposer.compose.disk.sizing import FAT32_MIN, MIB
from imagecomposer.compose.layout import SECTOR, PlannedPartition, Volume
from imagecomposer.foundation import runner
from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import ComposeError, DiskToolError

# Filesystems whose mkfs can write at an offset inside the disk file.
IN_PLACE = frozenset({"ext4", "vfat"})
PACKAGES = {"ext4": ("mkfs.ext4", "e2fsprogs"), "vfat": ("mkfs.vfat", "dosfstools"),
            "xfs": ("mkfs.xfs", "xfsprogs"), "swap": ("mkswap", "util-linux"),
            "squashfs": ("mksquashfs", "squashfs-tools"), "erofs": ("mkfs.erofs", "erofs-utils")}


# FAT dates start in 1980: mtools gets at least this as its clock.
FAT_EPOCH_MIN = 315532800
# mtools settings that change the bytes it writes, pinned against the host's mtools.conf.
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0", "MTOOLS_LOWER_CASE": "0",
              "MTOOLS_NAME_NUMERIC_TAIL": "1"}
ARGV_CHUNK = 200  # names per mmd/mcopy call


def build_env(epoch: int | None = None) -> dict[str, str]:
    """Environment overrides that make the mkfs tools reproducible: the C locale (sort order
    of mke2fs's ``alphasort``), pinned mtools settings and the build epoch as the tools'
    clock (``SOURCE_DATE_EPOCH``, and ``E2FSPROGS_FAKE_TIME`` for mke2fs and debugfs)."""
    epoch = resolve(epoch)
    env = {"LC_ALL": "C", **MTOOLS_ENV, **epoch_env(epoch)}
    env["E2FSPROGS_FAKE_TIME"] = str(epoch)
    return env


def make_filesystem(part: Volume, tree: Path | None, target: Path, *,
                    offset: int = 0, size: int | None = None, epoch: int | None = None,
                    parallel: int = 1) -> None:
    """Create ``part``'s filesystem from ``tree`` in ``target`` at byte ``offset``
    (``parallel``: the threads of a tool that has them, mksquashfs).

    ``size`` defaults to the partition size. For filesystems outside :data:`IN_PLACE`
    ``offset`` must be 0 (``target`` is a separate image file). squashfs and erofs images
    are as small as their content; the caller checks they fit. ``epoch`` (default:
    :func:`imagecomposer.foundation.epoch.build_epoch`) is the build's clock: the same
    tree content, identifiers and epoch give the same bytes, whatever the tree's own
    times (``tree`` is only read: its times are bounded in the filesystem, not on disk).
    """
    fs = part.filesystem
    size = part.size if size is None else size
    epoch = resolve(epoch)
    if fs not in IN_PLACE and offset:
        raise ValueError(f"{fs} cannot be built at an offset")
    if tree is not None and not tree.is_dir():
        raise ComposeError(f"content of partition '{part.name}' is not a directory: {tree}")
    if fs == "ext4":
        _ext4(part, tree, target, offset, size, epoch)
    elif fs == "vfat":
        _vfat(part, tree, target, offset, size, epoch)
    elif fs == "swap":
        _swap(part, target, size, epoch)
    elif fs == "xfs":
        _xfs(part, tree, target, size, epoch)
    elif fs in ("squashfs", "erofs"):
        _readonly(part, tree, target, epoch, parallel)
    elif fs != "none":
        raise ComposeError(f"unsupported filesystem '{fs}' for partition '{part.name}'")


def _tool(fs: str) -> str:
    tool, package = PACKAGES[fs]
    runner.require(tool, package)
    return tool


def _ext4(part: Volume, tree: Path | None, target: Path, offset: int,
          size: int, epoch: int) -> None:
    # hash_seed fixes the htree hash so directories are laid out identically every time;
    # nodiscard because discarding a regular file at an offset is pointless and slow.
    extended = f"offset={offset},hash_seed={part.fsuuid},nodiscard"
    argv: list[str | Path] = [_tool("ext4"), "-q", "-F", "-b", "4096", "-U", part.fsuuid,
                              "-E", extended]
    if part.label:
        argv += ["-L", part.label]
    if tree is not None:
        argv += ["-N", str(ext4_inodes(tree, size)), "-d", tree]
    # The explicit size is required: without it mke2fs fills the file to its end and
    # overwrites the backup GPT.
    argv += [target, f"{size // 1024}k"]
    runner.run(argv, env=build_env(epoch), error=DiskToolError,
               what=f"mkfs.ext4 for partition '{part.name}'")
    if tree is not None:
        clamp_inode_times(target, offset, epoch, build_env(epoch))


def ext4_inodes(tree: Path, size: int) -> int:
    """Inodes for an ext4 filesystem of ``size`` bytes that must hold ``tree``.

    mke2fs allots one inode per 16 KiB; a tree of many small files (a Debian root's
    /usr/share) can need more, and ``mke2fs -d`` then fails half-way with "Could not
    allocate inode". Keep the default unless the tree needs more, with room to grow.
    """
    count = sum(1 + len(dirs) + len(files) for _, dirs, files in os.walk(tree))
    return max(size // 16384, count * 3 // 2 + 256)


def fat_bits(size: int) -> int:
    """FAT32 with one sector per cluster from 36 MiB up (mkfs.vfat's default cluster size
    produced invalid FAT32 here); FAT32 needs 65525 clusters, so FAT16 below that, and
    FAT12 below 9 MiB where mkfs.vfat cannot make FAT16 (too few clusters)."""
    if size >= FAT32_MIN:
        return 32
    return 16 if size >= 9 * MIB else 12


def _vfat(part: Volume, tree: Path | None, target: Path, offset: int,
          size: int, epoch: int) -> None:
    volume_id = part.fsuuid.replace("-", "")
    bits = fat_bits(size)
    argv: list[str | Path] = [_tool("vfat"), "-F", str(bits)]
    if bits == 32:
        argv += ["-s", "1"]
    # --invariant fixes the boot sector's time-derived fields; it also sets a constant
    # volume id, so -i must come after it.
    argv += ["-h", str(offset // SECTOR), f"--offset={offset // SECTOR}", "--invariant",
             "-i", volume_id]
    if part.label:
        argv += ["-n", part.label.upper()]
    argv += [target, str(size // 1024)]
    env = build_env(max(epoch, FAT_EPOCH_MIN))
    runner.run(argv, env=env, error=DiskToolError, what=f"mkfs.vfat for partition '{part.name}'")
    if tree is None:
        return
    directories, files = fat_plan(tree, part.name)
    if not directories and not files:
        return
    runner.require("mcopy", "mtools")
    image = f"{target}@@{offset}"
    # Directories first, parents before children, then each directory's files in name
    # order; mmd and mcopy (without -m) give every entry their clock: the epoch.
    for start in range(0, len(directories), ARGV_CHUNK):
        chunk = [f"::/{d}" for d in directories[start:start + ARGV_CHUNK]]
        runner.run(["mmd", "-i", image, *chunk], env=env, error=DiskToolError,
                   what=f"mmd in partition '{part.name}'")
    for directory, names in files.items():
        for start in range(0, len(names), ARGV_CHUNK):
            sources = [tree / directory / name for name in names[start:start + ARGV_CHUNK]]
            dest = f"::/{directory}/" if directory else "::/"
            runner.run(["mcopy", "-p", "-Q", "-i", image, *sources, dest], env=env,
                       error=DiskToolError, what=f"mcopy into partition '{part.name}'")


def fat_plan(tree: Path, name: str) -> tuple[list[str], dict[str, list[str]]]:
    """The directories of ``tree`` (relative, parents first, in name order) and the files of
    each directory (in name order), for a FAT filesystem.

    FAT holds neither symbolic links nor special files: such an entry is an error (mcopy
    would follow a link, to a host file if it is absolute).
    """
    directories: list[str] = []
    files: dict[str, list[str]] = {}
    for top, dirs, names, dir_fd in os.fwalk(tree, follow_symlinks=False):
        dirs.sort()  # fwalk descends in this order: parents come before their children
        relative = Path(top).relative_to(tree).as_posix()
        relative = "" if relative == "." else relative
        found = []
        for entry in sorted((*dirs, *names)):
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            path = f"/{relative}/{entry}" if relative else f"/{entry}"
            if stat.S_ISDIR(st.st_mode):
                directories.append(path.lstrip("/"))
            elif stat.S_ISREG(st.st_mode):
                found.append(entry)
            else:
                kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
                raise ComposeError(f"the vfat partition '{name}' cannot hold the {kind} {path}")
        if found:
            files[relative] = found
    return directories, files


def _swap(part: Volume, target: Path, size: int, epoch: int) -> None:
    with target.open("wb") as handle:
        handle.truncate(size)
    argv: list[str | Path] = [_tool("swap"), "-U", part.fsuuid]
    if part.label:
        argv += ["-L", part.label]
    argv += [target]
    runner.run(argv, env=build_env(epoch), error=DiskToolError,
               what=f"mkswap for partition '{part.name}'")


def _readonly(part: Volume, tree: Path | None, target: Path, epoch: int,
              parallel: int) -> None:
    if tree is None:
        raise ComposeError(f"read-only {part.filesystem} partition '{part.name}' needs content")
    target.unlink(missing_ok=True)
    if part.filesystem == "squashfs":
        # zstd: smaller than the gzip default at the same speed here; the Debian kernel has
        # SQUASHFS_ZSTD built in.
        argv: list[str | Path] = [_tool("squashfs"), tree, target, "-noappend", "-quiet",
                                  "-no-progress", "-comp", "zstd",
                                  "-processors", str(max(1, parallel))]
    else:
        # lz4: 3.5x faster than lz4hc for 10 % more bytes; EROFS_FS_ZIP covers both.
        argv = [_tool("erofs"), "--quiet", "-zlz4", f"-U{part.fsuuid}", "--preserve-mtime",
                target, tree]
    runner.run(argv, env=build_env(epoch), error=DiskToolError,
               what=f"{argv[0]} for partition '{part.name}'")


def _xfs(part: Volume, tree: Path | None, target: Path, size: int, epoch: int) -> None:
    with target.open("wb") as handle:
        handle.truncate(size)
    argv: list[str | Path] = [_tool("xfs"), "-q", "-f", "-m", f"uuid={part.fsuuid}"]
    if part.label:
        argv += ["-L", part.label]
    if tree is not None:
        proto = target.with_name(target.name + ".proto")
        proto.write_text(xfs_protofile(tree.resolve()))
        argv += ["-p", proto]
    argv += [target]
    runner.run(argv, env=build_env(epoch), error=DiskToolError,
               what=f"mkfs.xfs for partition '{part.name}'")


def xfs_protofile(tree: Path) -> str:
    """An mkfs.xfs(8) prototype file describing ``tree`` (xfsprogs 6.1 has no ``-d DIR``).

    The format cannot express names with white space, hard links (each link becomes a
    copy), the sticky bit, timestamps or extended attributes; names it cannot express
    raise :class:`ComposeError`.
    """
    lines = ["/dev/null", "0 0"]

    def mode_field(st: os.stat_result) -> str:
        kind = {stat.S_IFREG: "-", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFBLK: "b",
                stat.S_IFCHR: "c", stat.S_IFIFO: "p"}.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            raise ComposeError(f"mkfs.xfs cannot hold {tree}: unsupported file type (socket)")
        suid = "u" if st.st_mode & stat.S_ISUID else "-"
        sgid = "g" if st.st_mode & stat.S_ISGID else "-"
        # Exactly three octal digits: the format has no place for the sticky bit.
        return f"{kind}{suid}{sgid}{stat.S_IMODE(st.st_mode) & 0o777:03o}"

    def walk(directory: Path, depth: int) -> None:
        for entry in sorted(directory.iterdir()):
            name = entry.name
            if any(c.isspace() for c in name) or name == "$":
                raise ComposeError(f"mkfs.xfs prototype files cannot hold the name {entry!s}")
            st = entry.lstat()
            field = mode_field(st)
            head = f"{' ' * depth}{name} {field} {st.st_uid} {st.st_gid}"
            if stat.S_ISREG(st.st_mode):
                lines.append(f"{head} {entry}")
            elif stat.S_ISLNK(st.st_mode):
                lines.append(f"{head} {entry.readlink()}")
            elif stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
                lines.append(f"{head} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(head)
                walk(entry, depth + 1)
                lines.append(f"{' ' * depth}$")
            else:
                lines.append(head)

    root = tree.lstat()
    lines.append(f"{mode_field(root)} {root.st_uid} {root.st_gid}")
    walk(tree, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def image_fits(part: Volume, image: Path, capacity: int | None = None) -> int:
    """The size of a built image, or :class:`ComposeError` if it exceeds its partition
    (or ``capacity``: what an encrypted volume leaves for its content)."""
    size = image.stat().st_size
    room = part.size if capacity is None else capacity
    if size > room:
        what = "partition" if isinstance(part, PlannedPartition) else "logical volume"
        raise ComposeError(
            f"the {part.filesystem} image of {what} '{part.name}' is {size} B but the "
            f"{what} holds {room} B ({room // MIB} MiB); give it a larger size")
    return size

