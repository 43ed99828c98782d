"""``Image.open(path)``: a disk image read offline, whatever built it.

No mount, no loop device, no root: the container is converted to a sparse raw file when it
is not raw already (:mod:`.source`), the partition table is read from the bytes
(:mod:`.partitions`), and each filesystem through its own userspace tool at the partition's
offset (:mod:`.fs_ext4`, :mod:`.fs_fat`, :mod:`.fs_squashfs`, :mod:`.fs_erofs`,
:mod:`.fs_xfs`). Paths given to :meth:`Image.read` are the installed system's: the root
filesystem is found by its content, the others are placed where its ``/etc/fstab`` mounts
them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from imagecomposer.compose.disk.sparse import data_extents
from imagecomposer.foundation.errors import (
    CorruptFilesystem,
    InspectError,
    NoPartitionTable,
    NotInImage,
    UsageError,
)
from imagecomposer.inspect import inspector
from imagecomposer.inspect.fs_erofs import erofs_reader
from imagecomposer.inspect.fs_ext4 import Ext4Reader
from imagecomposer.inspect.fs_fat import fat_reader
from imagecomposer.inspect.fs_squashfs import SquashfsReader
from imagecomposer.inspect.fs_xfs import XfsReader
from imagecomposer.inspect.fsbase import Entry, FileRecord, FsReader, Tree
from imagecomposer.inspect.packages import installed
from imagecomposer.inspect.partitions import Partition, PartitionTable, bare, read_table
from imagecomposer.inspect.probe import Probed, probe
from imagecomposer.inspect.report import (
    FilesystemInfo,
    InspectReport,
    Package,
    Packages,
    PartitionInfo,
    PartitionTableInfo,
)
from imagecomposer.inspect.source import DiskSource, open_source

READABLE = ("ext4", "vfat", "squashfs", "erofs", "xfs")
ROOT_CANDIDATES = ("ext4", "xfs", "squashfs", "erofs")
# partition types that must hold a filesystem: a damaged one is an error, not a blank
NEEDS_FILESYSTEM = ("esp", "xbootldr", "root", "var", "home", "srv")


class OsView:
    """The installed system's paths across its mounted filesystems."""

    def __init__(self, mounts: list[tuple[str, Tree]]) -> None:
        self.mounts = sorted(mounts, key=lambda m: -len(m[0]))

    def _split(self, paths: Iterable[str]) -> dict[int, dict[str, str]]:
        groups: dict[int, dict[str, str]] = {}
        for path in paths:
            norm = "/" + "/".join(p for p in path.split("/") if p)
            for index, (point, _) in enumerate(self.mounts):
                if point == "/" or norm == point or norm.startswith(point + "/"):
                    inner = norm[len(point):] if point != "/" else norm
                    groups.setdefault(index, {})[path] = inner or "/"
                    break
        return groups

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        wanted = list(paths)
        out: dict[str, bytes | None] = dict.fromkeys(wanted)
        for index, mapping in self._split(wanted).items():
            found = self.mounts[index][1].read_many(mapping.values())
            out.update({p: found[inner] for p, inner in mapping.items()})
        return out

    def listdir_many(self, paths: Iterable[str]) -> dict[str, list[Entry] | None]:
        wanted = list(paths)
        out: dict[str, list[Entry] | None] = dict.fromkeys(wanted)
        for index, mapping in self._split(wanted).items():
            found = self.mounts[index][1].listdir_many(mapping.values())
            out.update({p: found[inner] for p, inner in mapping.items()})
        return out

    def readlink_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        wanted = list(paths)
        out: dict[str, str | None] = dict.fromkeys(wanted)
        for index, mapping in self._split(wanted).items():
            found = self.mounts[index][1].readlink_many(mapping.values())
            out.update({p: found[inner] for p, inner in mapping.items()})
        return out


class Image:
    """A disk image opened for reading. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path, *, workdir: Path | None = None) -> None:
        self.path = Path(path)
        self._scratch = Path(tempfile.mkdtemp(prefix="imagecomposer-inspect-", dir=workdir))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._scratch, True)
        try:
            self.source: DiskSource = open_source(self.path, self._scratch)
            self.table: PartitionTable = self._read_table()
        except BaseException:
            self.close()
            raise
        self._probed: dict[int, Probed] = {}
        self._trees: dict[int, Tree] = {}
        self._mounts: list[tuple[str, Partition]] | None = None
        self._hashes: dict[str, str] = {}

    @classmethod
    def open(cls, path: Path | str, *, workdir: Path | None = None) -> Image:
        return cls(Path(path), workdir=workdir)

    def close(self) -> None:
        self._cleanup()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Image({str(self.path)!r}, format={self.source.format!r}, "
                f"partitions={len(self.table.partitions)})")

    # --- layout -------------------------------------------------------------------------

    def _read_table(self) -> PartitionTable:
        src = self.source
        try:
            return read_table(src.path, src.offset, src.size)
        except NoPartitionTable:
            whole = probe(src.path, src.offset, src.size)
            if whole.type in READABLE:
                return bare(src.size)
            raise

    @property
    def format(self) -> str:
        return self.source.format

    @property
    def disk_size(self) -> int:
        return self.source.size

    def _where(self, part: Partition) -> str:
        return f"partition {part.number} ({part.name or part.type}) of {self.path}"

    def probed(self, part: Partition) -> Probed:
        if part.number not in self._probed:
            self._probed[part.number] = probe(self.source.path, self.source.offset + part.start,
                                              part.size)
        return self._probed[part.number]

    def partition(self, which: int | str) -> Partition:
        """A partition by number, GPT name, type (esp, root, ...) or mount point."""
        parts = self.table.partitions
        for test in (lambda p: which in (p.number, str(p.number), p.name),
                     lambda p: p.type == which):
            found = [p for p in parts if test(p)]
            if found:
                return found[0]
        if isinstance(which, str) and which.startswith("/"):
            for point, part in self.mounts():
                if point == which:
                    return part
        names = ", ".join(f"{p.number} ({p.name or p.type})" for p in parts)
        raise UsageError(f"no partition {which!r} in {self.path} (partitions: {names})")

    @property
    def partitions(self) -> tuple[PartitionInfo, ...]:
        points = {part.number: point for point, part in self.mounts()}
        infos = []
        for part in self.table.partitions:
            found = self.probed(part)
            fs = (FilesystemInfo(found.type, found.uuid, found.label, found.size, found.used,
                                 points.get(part.number)) if found.type else None)
            infos.append(PartitionInfo(part.number, part.name, part.type, part.type_id,
                                       part.uuid, part.start, part.size, part.bootable, fs))
        return tuple(infos)

    def table_info(self) -> PartitionTableInfo:
        t = self.table
        return PartitionTableInfo(t.type, t.id, t.sector_size, t.disk_size, self.partitions)

    # --- filesystems --------------------------------------------------------------------

    def tree(self, which: int | str | Partition) -> Tree:
        """The filesystem of one partition, paths relative to its own root."""
        part = which if isinstance(which, Partition) else self.partition(which)
        if part.number not in self._trees:
            self._trees[part.number] = Tree(self._reader(part))
        return self._trees[part.number]

    def _reader(self, part: Partition) -> FsReader:
        fstype = self.probed(part).type
        disk, offset = self.source.path, self.source.offset + part.start
        scratch = self._scratch / f"p{part.number}"
        scratch.mkdir(exist_ok=True)
        where = self._where(part)
        if fstype == "ext4":
            return Ext4Reader(disk, offset, part.size, scratch, where)
        if fstype == "vfat":
            return fat_reader(disk, offset, scratch / "tree", where)
        if fstype == "squashfs":
            return SquashfsReader(disk, offset, scratch, where)
        if fstype == "erofs":
            return erofs_reader(disk, offset, part.size, scratch, where)
        if fstype == "xfs":
            return XfsReader(disk, offset, part.size, scratch, where)
        if fstype is None and part.type in NEEDS_FILESYSTEM:
            raise CorruptFilesystem(f"Corrupt filesystem: {where} is a {part.type} partition "
                                    "but holds no recognisable filesystem")
        raise InspectError(f"{where} holds {fstype or 'no filesystem'}: there are no files "
                           "to read")

    def mounts(self) -> list[tuple[str, Partition]]:
        """(mount point, partition) of the installed system: its root, then its fstab."""
        if self._mounts is None:
            self._mounts = self._find_mounts()
        return self._mounts

    def _find_mounts(self) -> list[tuple[str, Partition]]:
        parts = list(self.table.partitions)
        for part in parts:  # a root-typed partition must be readable: say so if it is not
            if part.type in NEEDS_FILESYSTEM and self.probed(part).type is None:
                self._reader(part)
        candidates = [p for p in parts if self.probed(p).type in ROOT_CANDIDATES]
        candidates.sort(key=lambda p: p.type != "root")
        root = None
        for part in candidates:
            found = self.tree(part).lookup(["/etc", "/usr"])
            if all(e is not None and e.kind == "dir" for e in found.values()):
                root = part
                break
        if root is None:
            return []
        mounts = [("/", root)]
        fstab = self.tree(root).read_many(["/etc/fstab"])["/etc/fstab"]
        for line in (fstab or b"").decode("utf-8", "replace").splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[0].startswith("#") or not fields[1].startswith("/"):
                continue
            mounted = self._match(fields[0], parts)
            if mounted is not None and fields[1] != "/" and \
                    self.probed(mounted).type in READABLE:
                mounts.append((fields[1], mounted))
        return mounts

    def _match(self, spec: str, parts: list[Partition]) -> Partition | None:
        key, value = spec.partition("=")[0], spec.partition("=")[2]
        for prefix, name in (("/dev/disk/by-uuid/", "UUID"),
                             ("/dev/disk/by-partuuid/", "PARTUUID"),
                             ("/dev/disk/by-label/", "LABEL"),
                             ("/dev/disk/by-partlabel/", "PARTLABEL")):
            if spec.startswith(prefix):
                key, value = name, spec[len(prefix):]
        value = value.strip("\"'").lower()
        for part in parts:
            probed = self.probed(part)
            if (key == "UUID" and (probed.uuid or "").lower() == value) or \
                    (key == "PARTUUID" and (part.uuid or "") == value) or \
                    (key == "LABEL" and (probed.label or "").lower() == value) or \
                    (key == "PARTLABEL" and part.name.lower() == value):
                return part
        return None

    def os_view(self) -> OsView:
        mounts = self.mounts()
        if not mounts:
            raise InspectError(f"{self.path} holds no installed system (no filesystem with "
                               "/etc and /usr)")
        return OsView([(point, self.tree(part)) for point, part in mounts])

    # --- files --------------------------------------------------------------------------

    def read(self, path: str, partition: int | str | None = None) -> bytes:
        """The content of ``path``: of the installed system, or inside one partition."""
        view = self.os_view() if partition is None else self.tree(partition)
        found = view.read_many([path])[path]
        if found is None:
            where = f"partition {partition!r} of " if partition is not None else ""
            raise NotInImage(f"{path} is not a file in {where}{self.path}")
        return found

    def listdir(self, path: str, partition: int | str | None = None) -> list[str]:
        view = self.os_view() if partition is None else self.tree(partition)
        found = view.listdir_many([path])[path]
        if found is None:
            raise NotInImage(f"{path} is not a directory in {self.path}")
        return [e.name for e in found]

    def files(self, partition: int | str | None = None, *, hashes: bool = True
              ) -> list[FileRecord]:
        """Every path of one filesystem (default: the root filesystem) with its type, mode,
        owner, size, symlink target and (``hashes``) sha256."""
        if partition is None:
            mounts = self.mounts()
            if not mounts:
                raise InspectError(f"{self.path} has no root filesystem; name a partition")
            return self.tree(mounts[0][1]).walk(hashes=hashes)
        return self.tree(partition).walk(hashes=hashes)

    def readable_partitions(self) -> list[Partition]:
        return [p for p in self.table.partitions if self.probed(p).type in READABLE]

    @property
    def packages(self) -> tuple[Package, ...]:
        return self.package_db().items

    def package_db(self) -> Packages:
        return installed(self.os_view(), self._scratch) if self.mounts() else \
            Packages(None, 0, ())

    # --- hashes -------------------------------------------------------------------------

    def disk_sha256(self) -> str:
        """sha256 of the disk's bytes (for raw images: of the file itself)."""
        if "disk" not in self._hashes:
            src = self.source
            self._hashes["disk"] = _hash_range(src.path, src.offset, src.size)
            if not src.converted and src.offset == 0 and src.size == self.path.stat().st_size:
                self._hashes["file"] = self._hashes["disk"]
        return self._hashes["disk"]

    def sha256(self) -> str:
        """sha256 of the image file as stored (what SHA256SUMS and the manifest record)."""
        if "file" not in self._hashes:
            if self.source.format == "raw" and not self.source.converted:
                self.disk_sha256()
            if "file" not in self._hashes:
                self._hashes["file"] = _hash_range(self.path, 0, self.path.stat().st_size)
        return self._hashes["file"]

    # --- the report ---------------------------------------------------------------------

    def inspect(self, *, verify_verity: bool = True, hash: bool = False) -> InspectReport:
        """Everything inspect reports (see docs/inspect.md for each field)."""
        return inspector.inspect_image(self, verify_verity=verify_verity, hash=hash)

    def extract_sboms(self, directory: Path) -> list[Path]:
        """Copy the SBOMs the image carries (``/usr/share/sbom/*.json``) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        view = self.os_view()
        listing = view.listdir_many([inspector.SBOM_DIR])[inspector.SBOM_DIR] or []
        names = [e.name for e in listing if e.name.endswith(".json")]
        data = view.read_many([f"{inspector.SBOM_DIR}/{n}" for n in names])
        written = []
        for name in names:
            content = data[f"{inspector.SBOM_DIR}/{name}"]
            if content is not None:
                (directory / name).write_bytes(content)
                written.append(directory / name)
        return written

    @property
    def scratch(self) -> Path:
        return self._scratch


def _hash_range(path: Path, offset: int, size: int) -> str:
    """sha256 of ``size`` bytes of ``path`` from ``offset``; holes are hashed as the zeros
    they are without being read."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        position, stop = offset, offset + size
        for start, end in data_extents(fd, stop, offset):
            _zeros(digest, start - position)
            while start < end:
                chunk = os.pread(fd, min(end - start, 8 << 20), start)
                if not chunk:
                    break
                digest.update(chunk)
                start += len(chunk)
            position = end
        _zeros(digest, stop - position)
    finally:
        os.close(fd)
    return digest.hexdigest()


_ZEROS = bytes(8 << 20)


def _zeros(digest: hashlib._Hash, count: int) -> None:
    while count > 0:
        step = min(count, len(_ZEROS))
        digest.update(memoryview(_ZEROS)[:step])
        count -= step
