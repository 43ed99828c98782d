"""``compare(a, b)``: what changed between two images (or two SBOMs, or two locks).

Byte identity first: two images whose disks have the same size are hashed in parallel, each
read once; equal hashes end the comparison (nothing else can differ). Otherwise, by mode:
``summary`` (configuration and packages), ``packages``, ``files`` (every path of every
filesystem both images mount, with type, mode, owner, size, symlink target and content hash)
or ``full`` (all of it). Documents (SPDX, CycloneDX, locks) compare by their packages.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import attrs

from imagecomposer.foundation.errors import UsageError
from imagecomposer.foundation.settings import COMPARE_MODES
from imagecomposer.inspect.documents import is_json_document, load_document
from imagecomposer.inspect.fsbase import FileRecord, Tree, same_content
from imagecomposer.inspect.image import Image
from imagecomposer.inspect.partitions import Partition
from imagecomposer.inspect.render import compare_html, compare_text
from imagecomposer.inspect.report import SCHEMA_VERSION, InspectReport, Package, converter
from imagecomposer.inspect.source import same_bytes

MODES = COMPARE_MODES
FILE_FIELDS = ("kind", "mode", "uid", "gid", "size", "target", "sha256")
T = TypeVar("T")


@attrs.frozen
class Side:
    path: str
    kind: str  # image, spdx, cyclonedx, lock
    format: str | None  # image format (raw, qcow2, ...) for images
    sha256: str | None  # of the disk's bytes (images) or of the file (documents), if hashed


@attrs.frozen
class PackageChange:
    name: str
    arch: str
    a: str  # version in A
    b: str  # version in B


@attrs.frozen
class PackageDiff:
    added: tuple[Package, ...]
    removed: tuple[Package, ...]
    changed: tuple[PackageChange, ...]


@attrs.frozen
class FileChange:
    path: str
    fields: tuple[str, ...]  # which of kind, mode, uid, gid, size, target, sha256 differ
    a: FileRecord
    b: FileRecord


@attrs.frozen
class FilesystemDiff:
    mountpoint: str | None
    partition_a: int
    partition_b: int
    filesystem: str
    added: tuple[FileRecord, ...]
    removed: tuple[FileRecord, ...]
    changed: tuple[FileChange, ...]


@attrs.frozen
class ConfigChange:
    field: str  # hostname, timezone, users, services.enabled, kernel_cmdline, partitions, ...
    a: Any
    b: Any
    added: tuple[str, ...] = ()  # for list fields: in B only
    removed: tuple[str, ...] = ()  # in A only


@attrs.frozen
class Summary:
    packages_added: int
    packages_removed: int
    packages_changed: int
    files_added: int
    files_removed: int
    files_changed: int
    config_changes: int


@attrs.frozen
class CompareReport:
    schema_version: int
    mode: str
    a: Side
    b: Side
    verdict: str  # identical (same bytes), equivalent (no difference found), different
    identical: bool
    summary: Summary
    packages: PackageDiff | None
    files: tuple[FilesystemDiff, ...] | None
    config: tuple[ConfigChange, ...] | None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = converter.unstructure(self)
        return data

    def text(self) -> str:
        return compare_text(self)

    def _repr_html_(self) -> str:
        return compare_html(self)


def package_diff(a: Sequence[Package], b: Sequence[Package]) -> PackageDiff:
    left = {(p.name, p.arch): p for p in a}
    right = {(p.name, p.arch): p for p in b}
    # an arch change (all -> amd64) is a version change of the same name, not add + remove
    for side, other in ((left, right), (right, left)):
        for key in list(side):
            name = key[0]
            if key not in other:
                match = [k for k in other if k[0] == name and k not in side]
                if len(match) == 1 and len([k for k in side if k[0] == name]) == 1:
                    side[match[0]] = side.pop(key)
    added = tuple(right[k] for k in sorted(set(right) - set(left)))
    removed = tuple(left[k] for k in sorted(set(left) - set(right)))
    changed = tuple(PackageChange(k[0], k[1], left[k].version, right[k].version)
                    for k in sorted(set(left) & set(right))
                    if left[k].version != right[k].version)
    return PackageDiff(added, removed, changed)


def tree_diff(a: Tree, b: Tree) -> tuple[tuple[FileRecord, ...], tuple[FileRecord, ...],
                                         tuple[FileChange, ...]]:
    """(added, removed, changed) paths between two filesystems.

    Both are listed in parallel; files of the same size on both sides are compared byte by
    byte (faster than hashing both: most are equal); only the files reported get hashed.
    """
    listed = _both(lambda tree: tree.entries(), (a, b))
    left, right = dict(listed[0]), dict(listed[1])
    both = sorted(set(left) & set(right))
    same_size = [p for p in both if left[p].kind == right[p].kind == "file"
                 and left[p].size == right[p].size and left[p].size]
    differ: set[str] = set()
    with contextlib.closing(a.reader.contents([left[p] for p in same_size])) as ca, \
            contextlib.closing(b.reader.contents([right[p] for p in same_size])) as cb:
        for path in same_size:
            if not same_content(ca.chunks(left[path].node), cb.chunks(right[path].node)):
                differ.add(path)
    records_a = {p: a.record(p, e) for p, e in left.items()}
    records_b = {p: b.record(p, e) for p, e in right.items()}
    changed_paths = []
    for path in both:
        fields = [f for f in FILE_FIELDS[:-1]
                  if getattr(records_a[path], f) != getattr(records_b[path], f)]
        if path in differ or (left[path].kind == right[path].kind == "file"
                              and left[path].size != right[path].size):
            fields.append("sha256")
        if fields:
            changed_paths.append((path, tuple(fields)))
    added = sorted(set(right) - set(left))
    removed = sorted(set(left) - set(right))
    hash_a = [p for p in [*removed, *(c for c, _ in changed_paths)] if left[p].kind == "file"]
    hash_b = [p for p in [*added, *(c for c, _ in changed_paths)] if right[p].kind == "file"]
    sums = _both(lambda job: job[0].reader.hash_files(job[1]),
                 ((a, [left[p] for p in hash_a]), (b, [right[p] for p in hash_b])))
    final_a = {p: a.record(p, left[p], sums[0].get(left[p].node)) for p in [*removed, *hash_a]}
    final_b = {p: b.record(p, right[p], sums[1].get(right[p].node)) for p in [*added, *hash_b]}
    return (tuple(final_b.get(p, records_b[p]) for p in added),
            tuple(final_a.get(p, records_a[p]) for p in removed),
            tuple(FileChange(p, fields, final_a.get(p, records_a[p]),
                             final_b.get(p, records_b[p])) for p, fields in changed_paths))


def config_diff(a: InspectReport, b: InspectReport) -> tuple[ConfigChange, ...]:
    def users(r: InspectReport) -> list[str]:
        return [f"{u.name} uid={u.uid} gid={u.gid} home={u.home} shell={u.shell} "
                f"groups={','.join(u.groups)} password={u.password}" for u in r.users]

    def partitions(r: InspectReport) -> list[str]:
        return [f"{p.number} {p.name or '-'} {p.type} size={p.size} "
                f"fs={p.filesystem.type if p.filesystem else '-'}"
                for p in r.partition_table.partitions]

    scalars: dict[str, Callable[[InspectReport], Any]] = {
        "os": lambda r: r.os.pretty_name if r.os else None,
        "hostname": lambda r: r.hostname, "timezone": lambda r: r.timezone,
        "locale": lambda r: r.locale, "bootloader": lambda r: r.bootloader.type,
        "partition_table": lambda r: r.partition_table.type,
        "services.default_target": lambda r: r.services.default_target,
    }
    lists: dict[str, Callable[[InspectReport], list[str]]] = {
        "kernels": lambda r: [k.version for k in r.kernels],
        "kernel_cmdline": lambda r: list(r.kernel_cmdline),
        "users": users,
        "groups": lambda r: [f"{g.name} gid={g.gid} members={','.join(g.members)}"
                             for g in r.groups],
        "services.enabled": lambda r: list(r.services.enabled),
        "services.masked": lambda r: list(r.services.masked),
        "partitions": partitions,
    }
    changes = [ConfigChange(name, get(a), get(b)) for name, get in scalars.items()
               if get(a) != get(b)]
    for name, get_list in lists.items():
        left, right = get_list(a), get_list(b)
        if left != right:
            changes.append(ConfigChange(name, left, right,
                                        tuple(x for x in right if x not in left),
                                        tuple(x for x in left if x not in right)))
    return tuple(changes)


def _pairs(a: Image, b: Image) -> list[tuple[str | None, Partition, Partition]]:
    """Filesystems of A and B that correspond: by mount point, then by name, then number."""
    points_a = {part.number: point for point, part in a.mounts()}
    points_b = {part.number: point for point, part in b.mounts()}
    left, right = a.readable_partitions(), b.readable_partitions()
    pairs = []
    used: set[int] = set()
    for part in left:
        point = points_a.get(part.number)
        free = [p for p in right if p.number not in used]
        match = (next((p for p in free if point is not None
                       and points_b.get(p.number) == point), None)
                 or next((p for p in free if part.name and p.name == part.name), None)
                 or next((p for p in free if p.number == part.number
                          and p.type == part.type), None))
        if match is not None:
            used.add(match.number)
            pairs.append((point, part, match))
    return pairs


def _both(work: Callable[[T], Any], items: tuple[T, T]) -> tuple[Any, Any]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(work, items)
    return first, second


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def compare(a: Path | str | Image, b: Path | str | Image, *, mode: str = "summary",
            hash: bool = False, workdir: Path | None = None) -> CompareReport:
    """Compare two images (any format), two SBOMs, two locks, or an image with a document.

    Images are byte-identical when their disks hold the same bytes: compared directly
    (holes in both skipped, stopping at the first difference), or with ``hash`` through the
    sha256 of each disk (each read once, both in parallel; the hashes are reported)."""
    if mode not in MODES:
        raise UsageError(f"unknown compare mode {mode!r} (known: {', '.join(MODES)})")
    opened: list[Image] = []
    try:
        sides: list[Image | Path] = []
        for item in (a, b):
            if isinstance(item, Image):
                sides.append(item)
            elif is_json_document(Path(item)):
                sides.append(Path(item))
            else:
                image = Image.open(Path(item), workdir=workdir)
                opened.append(image)
                sides.append(image)
        left, right = sides
        if isinstance(left, Image) and isinstance(right, Image):
            return _compare_images(left, right, mode, hash)
        return _compare_documents(left, right, mode)
    finally:
        for image in opened:
            image.close()


def _compare_documents(a: Path | Image, b: Path | Image, mode: str) -> CompareReport:
    def side(item: Path | Image) -> tuple[Side, tuple[Package, ...]]:
        if isinstance(item, Image):
            return (Side(str(item.path), "image", item.format, None), item.packages)
        kind, packages = load_document(item)
        return Side(str(item), kind, None, _file_hash(item)), packages

    (side_a, pkgs_a), (side_b, pkgs_b) = side(a), side(b)
    identical = side_a.sha256 is not None and side_a.sha256 == side_b.sha256
    diff = package_diff(pkgs_a, pkgs_b)
    return _report(mode, side_a, side_b, identical, diff, None, None)


def _compare_images(a: Image, b: Image, mode: str, hash: bool) -> CompareReport:
    sums: tuple[str | None, str | None] = (None, None)
    if hash:
        sums = _both(lambda image: image.disk_sha256(), (a, b))
        identical = sums[0] == sums[1]
    else:
        identical = same_bytes(a.source, b.source)
    side_a = Side(str(a.path), "image", a.format, sums[0])
    side_b = Side(str(b.path), "image", b.format, sums[1])
    if identical:
        empty_files = () if mode in ("files", "full") else None
        return _report(mode, side_a, side_b, True,
                       PackageDiff((), (), ()) if mode != "files" else None, empty_files,
                       () if mode in ("summary", "full") else None)
    packages = config = files = None
    if mode in ("summary", "full"):
        reports = _both(lambda image: image.inspect(verify_verity=False), (a, b))
        config = config_diff(*reports)
        packages = package_diff(reports[0].packages.items, reports[1].packages.items)
    elif mode == "packages":
        packages = package_diff(*_both(lambda image: image.packages, (a, b)))
    if mode in ("files", "full"):
        diffs = []
        for point, part_a, part_b in _pairs(a, b):
            added, removed, changed = tree_diff(a.tree(part_a), b.tree(part_b))
            diffs.append(FilesystemDiff(point, part_a.number, part_b.number,
                                        a.probed(part_a).type or "", added, removed, changed))
        files = tuple(diffs)
    return _report(mode, side_a, side_b, False, packages, files, config)


def _report(mode: str, a: Side, b: Side, identical: bool, packages: PackageDiff | None,
            files: tuple[FilesystemDiff, ...] | None,
            config: tuple[ConfigChange, ...] | None) -> CompareReport:
    summary = Summary(
        len(packages.added) if packages else 0, len(packages.removed) if packages else 0,
        len(packages.changed) if packages else 0,
        sum(len(f.added) for f in files or ()), sum(len(f.removed) for f in files or ()),
        sum(len(f.changed) for f in files or ()), len(config or ()))
    differs = any(attrs.astuple(summary))
    verdict = "identical" if identical else ("different" if differs else "equivalent")
    return CompareReport(SCHEMA_VERSION, mode, a, b, verdict, identical, summary, packages,
                         files, config)
