"""``compare_outputs(a, b)``: two output directories of one spec, byte for byte, and where
they differ (what ``imagecomposer build --check-reproducible`` reports; docs/reproducibility.md).

Every file of either directory is compared byte for byte. For a file that differs the
report gives both sizes and the first differing byte (with the bytes there); for a disk
image (raw, qcow2, vhd, ..., compressed or not) it goes on offline, with the readers of
``compare --mode files`` (no mount, no root): whether the disk inside differs or only its
container, the first differing byte outside every partition (partition table, gaps), and per
partition that differs its first differing byte and the paths of its filesystem that differ
(kind, mode, owner, size, symlink target, SHA-256 of the content, first differing byte of the
content). A partition whose bytes differ while no path does differs in the filesystem's own
metadata (times, allocation, journal), which the report says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.export.formats import COMPRESSIONS, FORMATS
from imagecomposer.foundation.errors import InspectError
from imagecomposer.inspect.compare import tree_diff
from imagecomposer.inspect.fsbase import FileRecord, Tree, first_content_difference
from imagecomposer.inspect.image import READABLE, Image
from imagecomposer.inspect.report import converter
from imagecomposer.inspect.source import DiskSource, first_difference

CONTEXT = 16  # bytes shown from the first difference of a plain file
_DISK_SUFFIXES = tuple(sorted({f.suffix for f in FORMATS.values()}, key=len, reverse=True))
_COMPRESSED_SUFFIXES = tuple(c.suffix for c in COMPRESSIONS.values() if c.suffix)


def is_disk_image(name: str) -> bool:
    """Whether an output's name is a disk image's (any format, compressed or not)."""
    for suffix in _COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(_DISK_SUFFIXES)


@attrs.frozen
class BytesAt:
    """The first differing byte of two files and up to :data:`CONTEXT` bytes from there."""

    offset: int
    a: str  # hex
    b: str


@attrs.frozen
class FileDifference:
    """A path of a filesystem that differs: ``a``/``b`` None when it is only on one side."""

    path: str
    fields: tuple[str, ...]  # of kind, mode, uid, gid, size, target, sha256 (compare's)
    a: FileRecord | None
    b: FileRecord | None
    first_byte: int | None = None  # of the content, for regular files whose content differs


@attrs.frozen
class PartitionDifference:
    number: int
    name: str
    filesystem: str | None  # ext4, vfat, ... (None: none recognised)
    mountpoint: str | None
    first_byte: int  # from the partition's start
    files: tuple[FileDifference, ...] | None  # None: its filesystem is not read
    problem: str | None = None  # why its files could not be compared


@attrs.frozen
class OutputDifference:
    """One output file that differs between the two directories."""

    name: str
    status: str  # differs, only in A, only in B
    size_a: int | None
    size_b: int | None
    first_byte: BytesAt | None = None
    disk: str | None = None  # disk images: "differs", or "same" (only the container differs)
    disk_first_byte: int | None = None
    outside_partitions: int | None = None  # first differing disk byte outside partitions
    partitions: tuple[PartitionDifference, ...] = ()
    same_as: str | None = None  # an earlier output whose disk differs in the same places
    problem: str | None = None  # why the disk could not be read


@attrs.frozen
class OutputsReport:
    a: str
    b: str
    compared: tuple[str, ...]  # every file name compared (sorted)
    differences: tuple[OutputDifference, ...]
    exempt: tuple[str, ...] = ()  # names left out (randomized signatures)

    @property
    def identical(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """One line: how many files were compared, and which differ."""
        count = len(self.compared)
        exempt = (f" ({len(self.exempt)} exempt: {', '.join(self.exempt)})"
                  if self.exempt else "")
        if self.identical:
            return (f"reproducible: {count} files compared, all byte-identical"
                    f"{exempt}")
        names = ", ".join(d.name for d in self.differences)
        return (f"not reproducible: {len(self.differences)} of {count} files differ between "
                f"two builds: {names}{exempt}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = converter.unstructure(self)
        return data

    def text(self) -> str:
        return render(self)


def compare_outputs(a: Path, b: Path, *, exempt: Sequence[str] = (),
                    workdir: Path | None = None) -> OutputsReport:
    """Compare every file of the output directories ``a`` and ``b`` (names in ``exempt``
    are left out) and say where they differ; disk images are read offline."""
    names_a = {p.name for p in a.iterdir() if p.is_file()}
    names_b = {p.name for p in b.iterdir() if p.is_file()}
    skipped = set(exempt)
    compared = sorted((names_a | names_b) - skipped)
    differences: list[OutputDifference] = []
    # raw disks first: another format of the same disk is then said to differ "as in" it
    for name in sorted(compared, key=lambda n: (not n.endswith(".raw"), n)):
        if name not in names_b or name not in names_a:
            side = (a if name in names_a else b) / name
            size = side.stat().st_size
            differences.append(OutputDifference(
                name, "only in A" if name in names_a else "only in B",
                size if name in names_a else None, None if name in names_a else size))
            continue
        found = _file_difference(a / name, b / name)
        if found is None:
            continue
        if is_disk_image(name):
            found = _disk_difference(found, a / name, b / name, workdir, differences)
        differences.append(found)
    differences.sort(key=lambda d: d.name)
    return OutputsReport(str(a), str(b), tuple(compared), tuple(differences),
                         tuple(sorted(skipped & (names_a | names_b))))


def _plain(path: Path) -> DiskSource:
    return DiskSource(path, 0, path.stat().st_size, "raw", "none", False)


def _file_difference(a: Path, b: Path) -> OutputDifference | None:
    left, right = _plain(a), _plain(b)
    offset = first_difference(left, right)
    if offset is None and left.size == right.size:
        return None
    if offset is None:
        offset = min(left.size, right.size)
    with a.open("rb") as fa, b.open("rb") as fb:
        fa.seek(offset)
        fb.seek(offset)
        at = BytesAt(offset, fa.read(CONTEXT).hex(" "), fb.read(CONTEXT).hex(" "))
    return OutputDifference(a.name, "differs", left.size, right.size, at)


def _disk_difference(found: OutputDifference, a: Path, b: Path, workdir: Path | None,
                     earlier: Sequence[OutputDifference]) -> OutputDifference:
    try:
        with Image.open(a, workdir=workdir) as image_a, Image.open(b, workdir=workdir) \
                as image_b:
            first = first_difference(image_a.source, image_b.source)
            if first is None and image_a.disk_size == image_b.disk_size:
                return attrs.evolve(found, disk="same")
            if first is None:
                first = min(image_a.disk_size, image_b.disk_size)
            partitions = _partitions(image_a, image_b)
            outside = _outside(image_a, image_b)
    except InspectError as exc:
        return attrs.evolve(found, disk="differs", problem=str(exc))
    same_as = next((e.name for e in earlier if e.disk == "differs" and e.problem is None
                    and (e.disk_first_byte, e.outside_partitions, e.partitions)
                    == (first, outside, partitions)), None)
    return attrs.evolve(found, disk="differs", disk_first_byte=first,
                        outside_partitions=outside, partitions=partitions, same_as=same_as)


def _outside(a: Image, b: Image) -> int | None:
    """The first differing byte of the disk that no partition of ``a`` holds."""
    end = min(a.disk_size, b.disk_size)
    position = 0
    for part in sorted(a.table.partitions, key=lambda p: p.start):
        if part.start > position:
            found = first_difference(a.source, b.source, position,
                                     min(part.start, end) - position)
            if found is not None:
                return found
        position = max(position, part.start + part.size)
    if position < end:
        return first_difference(a.source, b.source, position, end - position)
    return None


def _partitions(a: Image, b: Image) -> tuple[PartitionDifference, ...]:
    try:
        points = {part.number: point for point, part in a.mounts()}
    except InspectError:
        points = {}
    others = {p.number: p for p in b.table.partitions}
    found = []
    for part in a.table.partitions:
        other = others.get(part.number)
        fstype = a.probed(part).type
        if other is None or (other.start, other.size) != (part.start, part.size):
            found.append(PartitionDifference(
                part.number, part.name, fstype, points.get(part.number), 0, None,
                "not at the same place (or missing) in the other disk"))
            continue
        offset = first_difference(a.source, b.source, part.start, part.size)
        if offset is None:
            continue
        files: tuple[FileDifference, ...] | None = None
        problem = None
        if fstype in READABLE and b.probed(other).type == fstype:
            try:
                files = _files(a.tree(part), b.tree(other))
            except InspectError as exc:
                problem = str(exc)
        found.append(PartitionDifference(part.number, part.name, fstype,
                                         points.get(part.number), offset - part.start, files,
                                         problem))
    return tuple(found)


def _files(a: Tree, b: Tree) -> tuple[FileDifference, ...]:
    """The paths that differ between two filesystems (compare's ``tree_diff``), with the
    first differing byte of each regular file whose content differs."""
    added, removed, changed = tree_diff(a, b)
    contents = [c.path for c in changed if "sha256" in c.fields and c.a.kind == "file"
                and c.b.kind == "file"]
    offsets: dict[str, int | None] = {}
    if contents:
        entries_a = a.lookup(contents, follow=False)
        entries_b = b.lookup(contents, follow=False)
        found_a = [e for e in (entries_a[p] for p in contents) if e is not None]
        found_b = [e for e in (entries_b[p] for p in contents) if e is not None]
        with contextlib.closing(a.reader.contents(found_a)) as ca, \
                contextlib.closing(b.reader.contents(found_b)) as cb:
            for path in contents:
                left, right = entries_a[path], entries_b[path]
                if left is not None and right is not None:
                    offsets[path] = first_content_difference(ca.chunks(left.node),
                                                             cb.chunks(right.node))
    records = [FileDifference(r.path, (), r, None) for r in removed]
    records += [FileDifference(r.path, (), None, r) for r in added]
    records += [FileDifference(c.path, c.fields, c.a, c.b, offsets.get(c.path))
                for c in changed]
    return tuple(sorted(records, key=lambda r: r.path))


# --- text ---------------------------------------------------------------------------------


def _record(record: FileRecord) -> str:
    if record.kind == "symlink":
        return f"symlink -> {record.target}"
    mode = "-" if record.mode is None else f"{record.mode:04o}"
    owner = "-" if record.uid is None else f"{record.uid}:{record.gid}"
    text = f"{record.kind} {mode} {owner} {record.size} bytes"
    return text + (f" sha256 {record.sha256}" if record.sha256 else "")


def _file_lines(diff: FileDifference) -> list[str]:
    if diff.b is None:
        assert diff.a is not None
        return [f"      - {diff.path}: only in A ({_record(diff.a)})"]
    if diff.a is None:
        return [f"      + {diff.path}: only in B ({_record(diff.b)})"]
    first = (f", first differing byte at offset {diff.first_byte}"
             if diff.first_byte is not None else "")
    return [f"      ~ {diff.path} ({', '.join(diff.fields)}{first})",
            f"          A: {_record(diff.a)}",
            f"          B: {_record(diff.b)}"]


def _partition_lines(part: PartitionDifference) -> list[str]:
    where = ", ".join(x for x in (part.name, part.filesystem, part.mountpoint) if x)
    lines = [f"  partition {part.number} ({where}): first differing byte at offset "
             f"{part.first_byte} of the partition"]
    if part.problem is not None:
        lines.append(f"    its files were not compared: {part.problem}")
    elif part.files is None:
        lines.append("    no filesystem imagecomposer reads: its files were not compared")
    elif not part.files:
        lines.append("    no path differs in kind, mode, owner, size, target or content: "
                     "the filesystem's own metadata differs (times, allocation, journal)")
    else:
        lines.append(f"    {len(part.files)} path(s) differ:")
        for diff in part.files:
            lines += _file_lines(diff)
    return lines


def render(report: OutputsReport) -> str:
    """The report as text: the summary line, then one block per differing output."""
    out = [report.summary(), f"A: {report.a}", f"B: {report.b}"]
    for diff in report.differences:
        if diff.status != "differs":
            size = diff.size_a if diff.size_a is not None else diff.size_b
            out.append(f"{diff.name}: {diff.status} ({size} bytes)")
            continue
        assert diff.first_byte is not None
        sizes = (f"{diff.size_a} bytes in both" if diff.size_a == diff.size_b
                 else f"{diff.size_a} bytes in A, {diff.size_b} in B")
        out.append(f"{diff.name}: {sizes}, first differing byte at offset "
                   f"{diff.first_byte.offset}")
        if diff.disk is None:
            out += [f"  A: {diff.first_byte.a}", f"  B: {diff.first_byte.b}"]
        elif diff.problem is not None:
            out.append(f"  the disk could not be read: {diff.problem}")
        elif diff.disk == "same":
            out.append("  the disk inside is identical: only the container (the format's "
                       "headers) differs")
        elif diff.same_as is not None:
            out.append(f"  the disk inside differs as in {diff.same_as}, first at byte "
                       f"{diff.disk_first_byte}")
        else:
            out.append(f"  the disk inside differs first at byte {diff.disk_first_byte}")
            if diff.outside_partitions is not None:
                out.append(f"  outside every partition (partition table, gaps): first "
                           f"differing byte at offset {diff.outside_partitions}")
            for part in diff.partitions:
                out += _partition_lines(part)
    return "\n".join(out) + "\n"
