"""Every container format inspect reads, and broken images: one clear error each (no
traceback), through the library and through the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imagecomposer.cli.main import main
from imagecomposer.foundation.errors import CorruptFilesystem, NoPartitionTable, TruncatedImage
from imagecomposer.inspect import Image

CONVERSIONS = {"qcow2": ["-O", "qcow2"], "vhd": ["-O", "vpc", "-o", "subformat=dynamic"],
               "vhd-fixed": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
               "vhdx": ["-O", "vhdx"], "vmdk": ["-O", "vmdk"], "vdi": ["-O", "vdi"]}


@pytest.fixture(scope="module")
def small(build_disk: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert callable(build_disk)
    disk: Path = build_disk("small", filesystems=False, seed="small")
    return disk


@pytest.mark.parametrize("fmt", sorted(CONVERSIONS))
def test_container_formats(small: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "convert", "-f", "raw", *CONVERSIONS[fmt], small, target],
                   check=True)
    with Image.open(target) as image:
        assert image.format == fmt
        assert image.disk_size >= small.stat().st_size
        assert image.read("/etc/hostname") == b"synth\n"
        assert [p.name for p in image.partitions] == ["esp", "root"]


@pytest.mark.parametrize("tool", ["gzip", "xz", "zstd"])
def test_compressed(small: Path, tmp_path: Path, tool: str) -> None:
    target = tmp_path / "disk.raw.x"
    with target.open("wb") as out:
        subprocess.run([tool, "-c", small], stdout=out, check=True)
    with Image.open(target) as image:
        assert (image.format, image.source.compression) == ("raw", tool)
        assert image.read("/etc/hostname") == b"synth\n"
        assert image.inspect().image.compression == tool


def test_mbr_disk(build_disk: object) -> None:
    assert callable(build_disk)
    disk: Path = build_disk("mbr", filesystems=False, seed="mbr", table="mbr")
    with Image.open(disk) as image:
        report = image.inspect()
    assert report.partition_table.type == "mbr"
    assert report.partition_table.id is not None and report.partition_table.id.startswith("0x")
    esp, root = report.partition_table.partitions
    assert (esp.type, esp.type_id, root.type) == ("esp", "ef", "linux")
    assert esp.uuid == f"{report.partition_table.id[2:]}-01"
    assert esp.filesystem is not None and esp.filesystem.mountpoint == "/boot/efi"  # PARTUUID
    assert report.hostname == "synth" and report.bootloader.type == "systemd-boot"


def test_bare_filesystem_image(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr").mkdir()
    (tree / "etc/hostname").write_text("bare\n")
    image_file = tmp_path / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-d", tree, image_file, "8M"], check=True)
    with Image.open(image_file) as image:
        assert image.table.type == "none"
        assert image.read("/etc/hostname") == b"bare\n"
        assert image.inspect().hostname == "bare"


def test_truncated(small: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.raw"
    subprocess.run(["cp", "--sparse=always", small, cut], check=True)
    with cut.open("r+b") as handle:
        handle.truncate(small.stat().st_size // 2)
    with pytest.raises(TruncatedImage, match=r"Truncated image: .* partition 2 .*ends at byte"):
        Image.open(cut)
    qcow2 = tmp_path / "cut.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", small, qcow2], check=True)
    with qcow2.open("r+b") as handle:
        handle.truncate(qcow2.stat().st_size // 2)
    with pytest.raises(TruncatedImage, match="Truncated image"):
        Image.open(qcow2)
    gz = tmp_path / "cut.raw.gz"
    with gz.open("wb") as out:
        subprocess.run(["gzip", "-c", small], stdout=out, check=True)
    with gz.open("r+b") as handle:
        handle.truncate(gz.stat().st_size // 2)
    with pytest.raises(TruncatedImage, match=r"gzip stream .* ends early"):
        Image.open(gz)


def test_no_partition_table(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    with blank.open("wb") as handle:
        handle.truncate(8 << 20)
        handle.write(b"not a disk" * 100)
    with pytest.raises(NoPartitionTable, match=r"No partition table: .* neither a GPT nor"):
        Image.open(blank)


def test_damaged_gpt_header(small: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.raw"
    subprocess.run(["cp", "--sparse=always", small, bad], check=True)
    with bad.open("r+b") as handle:
        handle.seek(512 + 40)  # first usable LBA, inside the CRC-protected header
        handle.write(b"\xff")
    with pytest.raises(NoPartitionTable, match=r"GPT header .* damaged"):
        Image.open(bad)


def _corrupt_root(small: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt.raw"
    subprocess.run(["cp", "--sparse=always", small, bad], check=True)
    with Image.open(bad) as image:
        root = image.partition("root")
    with bad.open("r+b") as handle:  # the group descriptors and the inode tables: garbage
        handle.seek(root.start + 4096)
        handle.write(b"\xa5" * (4 << 20))
    return bad


def test_corrupt_filesystem(small: Path, tmp_path: Path) -> None:
    bad = _corrupt_root(small, tmp_path)
    with Image.open(bad) as image, pytest.raises(CorruptFilesystem,
                                                 match=r"Corrupt filesystem: .*partition 2"):
        image.inspect()


def test_zeroed_root_superblock_is_corrupt_not_blank(small: Path, tmp_path: Path) -> None:
    bad = tmp_path / "zeroed.raw"
    subprocess.run(["cp", "--sparse=always", small, bad], check=True)
    with Image.open(bad) as image:
        root = image.partition("root")
    with bad.open("r+b") as handle:
        handle.seek(root.start)
        handle.write(bytes(8192))
    with Image.open(bad) as image, pytest.raises(
            CorruptFilesystem, match="root partition but holds no recognisable filesystem"):
        image.inspect()


def test_cli_errors_are_one_line_each(small: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.raw"
    shutil.copyfile(small, cut)
    with cut.open("r+b") as handle:
        handle.truncate(1 << 20)
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(1 << 20))
    corrupt = _corrupt_root(small, tmp_path)
    for path, phrase in ((cut, "Truncated image"), (blank, "No partition table"),
                         (corrupt, "Corrupt filesystem"),
                         (tmp_path / "missing.raw", "no such image")):
        assert main(["inspect", str(path)]) == 1
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.startswith("ERROR")]) == 1
