"""compare on synthetic images: two builds that differ by packages, a file and the
hostname; identical images in two formats; SBOMs and locks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import fastjsonschema
import pytest

from imagecomposer.foundation.errors import UsageError
from imagecomposer.inspect import CompareReport, compare, schema
from imagecomposer.inspect.fsbase import same_content


def check_schema(report: CompareReport) -> None:
    fastjsonschema.compile(schema("compare"))(json.loads(json.dumps(report.to_dict())))


@pytest.fixture(scope="module")
def full(synthetic: Path, variant: Path) -> CompareReport:
    return compare(synthetic, variant, mode="full")


def test_packages_added_and_changed(full: CompareReport) -> None:
    assert full.verdict == "different" and not full.identical
    assert full.packages is not None
    assert [(p.name, p.version) for p in full.packages.added] == [("extra", "0.9")]
    assert not full.packages.removed
    assert [(c.name, c.a, c.b) for c in full.packages.changed] == [("tool", "2.0-1", "2.1-1")]
    check_schema(full)


def test_files_added_and_changed(full: CompareReport) -> None:
    assert full.files is not None
    by_mount = {f.mountpoint: f for f in full.files}
    assert set(by_mount) == {"/", "/boot/efi", "/srv/sq", "/srv/ero", "/srv/xf"}
    root = by_mount["/"]
    assert [r.path for r in root.added] == ["/etc/added.conf"]
    assert root.added[0].sha256 is not None and root.added[0].size == len("added\n")
    assert not root.removed
    changed = {c.path: c.fields for c in root.changed}
    assert changed["/etc/hostname"] == ("size", "sha256")
    assert "sha256" in changed["/var/lib/dpkg/status"]
    assert "/usr/bin/tool" not in changed
    for mount in ("/srv/sq", "/srv/ero", "/srv/xf"):  # same data tree: nothing differs
        assert not (by_mount[mount].added or by_mount[mount].removed or by_mount[mount].changed)
    assert full.summary.files_added == 1


def test_configuration_differences(full: CompareReport) -> None:
    assert full.config is not None
    changes = {c.field: c for c in full.config}
    assert (changes["hostname"].a, changes["hostname"].b) == ("synth", "synth2")
    assert "users" not in changes and "services.enabled" not in changes
    text = full.text()
    assert "hostname: 'synth' -> 'synth2'" in text and "+ extra 0.9 amd64" in text
    assert "+ /etc/added.conf" in text
    assert "<table>" in full._repr_html_()


def test_summary_mode_reads_no_files(synthetic: Path, variant: Path) -> None:
    report = compare(synthetic, variant)
    assert report.mode == "summary" and report.files is None
    assert report.summary.packages_added == 1 and report.summary.config_changes >= 1
    only = compare(synthetic, variant, mode="packages")
    assert only.config is None and only.files is None and only.packages is not None
    check_schema(only)


def test_identical_images_in_two_formats(synthetic: Path, tmp_path: Path) -> None:
    qcow2 = tmp_path / "copy.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", synthetic, qcow2], check=True)
    report = compare(synthetic, qcow2, mode="files")
    assert report.verdict == "identical" and report.identical
    assert report.a.format == "raw" and report.b.format == "qcow2"
    hashed = compare(synthetic, qcow2, hash=True)
    assert hashed.identical and hashed.a.sha256 == hashed.b.sha256
    assert hashed.a.sha256 is not None and len(hashed.a.sha256) == 64
    check_schema(hashed)


def test_same_content_different_bytes_is_not_identical(synthetic: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.raw"
    subprocess.run(["cp", "--sparse=always", synthetic, copy], check=True)
    with copy.open("r+b") as handle:  # a byte no filesystem uses: the MBR boot code area
        handle.seek(100)
        handle.write(b"\x01")
    report = compare(synthetic, copy, mode="full")
    assert not report.identical and report.verdict == "equivalent"


def test_documents(synthetic: Path, variant: Path, tmp_path: Path) -> None:
    lock = tmp_path / "a.lock.json"
    lock.write_text(json.dumps({"format": 1, "requested": [], "packages": [
        {"name": "base", "version": "1.0", "arch": "amd64"},
        {"name": "tool", "version": "2.1-1", "arch": "amd64"}]}))
    sbom = synthetic.parent / "root/usr/share/sbom/synthetic.spdx.json"
    report = compare(sbom, lock)
    assert (report.a.kind, report.b.kind) == ("spdx", "lock")
    assert [(c.name, c.a, c.b) for c in report.packages.changed] == [  # type: ignore[union-attr]
        ("tool", "2.0-1", "2.1-1")]
    assert compare(sbom, sbom).verdict == "identical"
    mixed = compare(variant, lock)
    assert [p.name for p in mixed.packages.added] == []  # type: ignore[union-attr]
    assert [p.name for p in mixed.packages.removed] == ["extra"]  # type: ignore[union-attr]
    check_schema(mixed)


def test_unknown_mode(synthetic: Path) -> None:
    with pytest.raises(UsageError, match="unknown compare mode"):
        compare(synthetic, synthetic, mode="everything")


@pytest.mark.parametrize(("a", "b", "same"), [
    ([b"abc", b"def"], [b"a", b"bcde", b"f"], True),
    ([b"abcdef"], [b"abcdeg"], False),
    ([b"abc"], [b"abc", b"d"], False),
    ([b"abcd"], [b"abc"], False),
    ([], [b"", b""], True),
])
def test_same_content_across_chunk_boundaries(a: list[bytes], b: list[bytes],
                                              same: bool) -> None:
    assert same_content(iter(a), iter(b)) is same
