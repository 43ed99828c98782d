"""``compare_outputs``: two output directories compared byte for byte, and the report of
where they differ (``build --check-reproducible``, issue 10), on small synthetic disks built
by the test (an ESP and an ext4 root from directories, no root devices): which output,
which partition, which file inside the filesystem (path, size, mode, owner, content hash,
first differing byte), read offline."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from imagecomposer.compose.disk import assemble, plan_layout
from imagecomposer.export import Exporter
from imagecomposer.inspect.fsbase import first_content_difference, first_unequal
from imagecomposer.inspect.outputs import compare_outputs, is_disk_image
from imagecomposer.spec.model import Disk, Partition

MIB = 1 << 20
EPOCH = 1700000000


def small_disk(work: Path, name: str, *, script: str | None = None) -> Path:
    """An ESP and an ext4 root; ``script`` runs in the root tree first (as a spec's
    post_install script would)."""
    layout = plan_layout(Disk(None, "gpt", (Partition("esp", "esp", 34 * MIB, "vfat",
                                                      "/boot/efi"),
                                            Partition("root", "root", 24 * MIB, "ext4", "/"))),
                         seed="outputs")
    root, esp = work / "root", work / "esp"
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/hostname").write_text("same\n")
    (root / "usr/bin/tool").write_bytes(bytes(range(256)) * 40)
    (esp / "EFI/BOOT").mkdir(parents=True)
    (esp / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"MZ" + bytes(600))
    if script is not None:
        subprocess.run(["sh", "-c", script], cwd=root, check=True)
    out = work / "out"
    out.mkdir()
    raw = assemble(layout, {"root": root, "esp": esp}, out / f"{name}.raw", workdir=work,
                   epoch=EPOCH).output
    (out / "manifest.json").write_text(json.dumps({"name": name, "build_epoch": EPOCH}))
    return raw


def test_identical_outputs_give_one_line_with_the_count(tmp_path: Path) -> None:
    first = small_disk(tmp_path / "a", "img").parent
    second = tmp_path / "b"
    shutil.copytree(first, second)

    report = compare_outputs(first, second)

    assert report.identical and report.differences == ()
    assert report.compared == ("img.raw", "manifest.json")
    assert report.summary() == "reproducible: 2 files compared, all byte-identical"


def test_a_date_written_by_a_script_is_found_in_its_file(tmp_path: Path) -> None:
    """The deliberately non-reproducible input: a post-install script writing the clock
    into a file. Built twice from the same trees otherwise: the report names that file."""
    script = "date +%s%N > etc/build-stamp && chmod 0640 etc/build-stamp"
    first = small_disk(tmp_path / "a", "img", script=script).parent
    second = small_disk(tmp_path / "b", "img", script=script).parent
    (second / "only-b.txt").write_text("x")
    Exporter(epoch=EPOCH).convert(first / "img.raw", "qcow2", first / "img.qcow2")
    Exporter(epoch=EPOCH).convert(second / "img.raw", "qcow2", second / "img.qcow2")

    report = compare_outputs(first, second)

    assert not report.identical
    by_name = {d.name: d for d in report.differences}
    assert set(by_name) == {"img.raw", "img.qcow2", "only-b.txt"}
    assert by_name["only-b.txt"].status == "only in B"
    raw = by_name["img.raw"]
    assert raw.disk == "differs" and raw.size_a == raw.size_b
    assert raw.first_byte is not None and raw.first_byte.offset == raw.disk_first_byte
    assert raw.outside_partitions is None  # same layout seed: the GPT is the same
    assert [(p.number, p.name, p.filesystem, p.mountpoint) for p in raw.partitions] == \
        [(2, "root", "ext4", "/")]  # the ESP is identical
    files = raw.partitions[0].files
    assert files is not None and [f.path for f in files] == ["/etc/build-stamp"]
    stamp = files[0]
    assert stamp.fields == ("sha256",)  # same size (nanoseconds since 1970: 19 digits)
    assert stamp.a is not None and stamp.b is not None
    assert (stamp.a.mode, stamp.a.uid, stamp.a.size) == (0o640, stamp.b.uid, 20)
    assert stamp.a.sha256 != stamp.b.sha256 and stamp.a.sha256 is not None
    a_text = (tmp_path / "a/root/etc/build-stamp").read_bytes()
    b_text = (tmp_path / "b/root/etc/build-stamp").read_bytes()
    assert stamp.first_byte == first_unequal(a_text, b_text)
    # the qcow2 holds the same disk difference: said once, not walked again
    assert by_name["img.qcow2"].disk == "differs"
    assert by_name["img.qcow2"].same_as == "img.raw"

    text = report.text()
    assert text.splitlines()[0] == ("not reproducible: 3 of 4 files differ between two "
                                    "builds: img.qcow2, img.raw, only-b.txt")
    assert "partition 2 (root, ext4, /): first differing byte at offset" in text
    assert f"~ /etc/build-stamp (sha256, first differing byte at offset {stamp.first_byte})" \
        in text
    assert f"A: file 0640 {stamp.a.uid}:{stamp.a.gid} 20 bytes sha256 {stamp.a.sha256}" in text
    assert "the disk inside differs as in img.raw" in text
    assert "only-b.txt: only in B (1 bytes)" in text
    json.dumps(report.to_dict())  # the JSON form exists


def test_metadata_only_and_plain_files(tmp_path: Path) -> None:
    """A file's time differs (no path differs in what compare compares): the partition is
    named and the report says its metadata differs; a JSON output gets its first differing
    byte and the bytes there."""
    first = small_disk(tmp_path / "a", "img", script="touch -d @1600000000 etc/hostname"
                       ).parent
    second = small_disk(tmp_path / "b", "img", script="touch -d @1600000001 etc/hostname"
                        ).parent
    (second / "manifest.json").write_text(json.dumps({"name": "img", "build_epoch": 1}))

    report = compare_outputs(first, second, exempt=["absent.sig"])

    by_name = {d.name: d for d in report.differences}
    manifest = by_name["manifest.json"]
    assert manifest.disk is None and manifest.first_byte is not None
    offset = manifest.first_byte.offset
    assert offset == (first / "manifest.json").read_bytes().index(b"1700") + 1
    assert manifest.first_byte.a.startswith("37 30")  # "70..." (1700000000 / 1})
    assert manifest.first_byte.b == "7d"
    root = by_name["img.raw"].partitions
    assert [(p.name, p.files) for p in root] == [("root", ())]
    assert "the filesystem's own metadata differs" in report.text()
    assert report.exempt == ()  # names not present are not listed


def test_helpers() -> None:
    assert is_disk_image("a.raw") and is_disk_image("a.qcow2.zst")
    assert is_disk_image("a.stream.vmdk") and is_disk_image("a.raw.xz")
    assert not is_disk_image("a.raw.sig") and not is_disk_image("a.spdx.json")
    assert first_unequal(b"abcdef", b"abcxef") == 3 and first_unequal(b"ab", b"abc") == 2
    assert first_content_difference(iter([b"ab", b"cdef"]), iter([b"abc", b"dXf"])) == 4
    assert first_content_difference(iter([b"abc"]), iter([b"a", b"", b"bc"])) is None
    assert first_content_difference(iter([b"abc"]), iter([b"abcd"])) == 3


def test_sizes_differ(tmp_path: Path) -> None:
    first = small_disk(tmp_path / "a", "img").parent
    second = tmp_path / "b"
    shutil.copytree(first, second)
    with (second / "img.raw").open("ab") as handle:
        handle.write(bytes(512))
    report = compare_outputs(first, second)
    raw = report.differences[0]
    assert raw.first_byte is not None
    assert raw.first_byte.offset == raw.size_a and raw.size_b == raw.size_a + 512
