"""LUKS2 partitions and logical volumes, encrypted offline on regular files (cryptsetup
reencrypt), checked with ``cryptsetup luksDump`` (header, key slots, argon2id costs),
``--dump-volume-key`` (the passphrase and the key file each open their slot) and an
independent AES-XTS decryption of the data, whose content e2fsck, debugfs, blkid and pvck
then check. No device-mapper mapping, loop device or mount in the product path."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from imagecomposer.compose.disk import assemble, plan_layout
from imagecomposer.compose.disk.assembly import AssemblyResult
from imagecomposer.compose.disk.luks import KeySource, key_sources, passphrase
from imagecomposer.compose.layout import PlannedLogicalVolume
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.spec.model import (
    Disk,
    Encryption,
    LogicalVolume,
    Partition,
    VolumeGroup,
)
from tests.disk.stacked import (
    debugfs_cat,
    decrypt,
    e2fsck,
    loop_device,
    luks_dump,
    lvm_report,
    need,
    piece,
    pvck,
    run,
    volume_key,
)

M = 1 << 20
SECRET = b"correct horse battery"
pytestmark = pytest.mark.usefixtures("luks_tools")


@pytest.fixture
def luks_tools() -> None:
    need("cryptsetup", "mkfs.ext4", "debugfs", "pvck")


@pytest.fixture
def key_material(tmp_path: Path) -> tuple[Path, Path]:
    pass_file = tmp_path / "passphrase"
    pass_file.write_bytes(SECRET + b"\nsecond line is not part of it\n")
    key_file = tmp_path / "keyfile"
    key_file.write_bytes(bytes(range(64)))
    return pass_file, key_file


def fast(**kw: object) -> Encryption:
    """Cheap key derivation for tests (argon2id t=4, 8 MiB)."""
    return Encryption(pbkdf_memory=8 * M, pbkdf_iterations=4, **kw)  # type: ignore[arg-type]


def build(tmp_path: Path, disk: Disk, trees: dict[str, Path]) -> AssemblyResult:
    layout = plan_layout(disk, seed="seed", content_sizes={n: 8 * M for n in trees})
    return assemble(layout, trees, tmp_path / "out" / "disk.raw", workdir=tmp_path / "work",
                    keys=key_sources(disk))


def test_passphrase_is_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.write_bytes(b"pass word\r\nmore\n")
    assert passphrase(path) == b"pass word"
    path.write_bytes(b"\nsecret\n")
    with pytest.raises(ComposeError, match="empty first line"):
        passphrase(path)


def test_encrypted_root_partition(tmp_path: Path, root_tree: Path,
                                  key_material: tuple[Path, Path],
                                  caplog: pytest.LogCaptureFixture) -> None:
    pass_file, key_file = key_material
    disk = Disk(size=None, partition_table="gpt", partitions=(
        Partition("root", "root", 48 * M, encryption=fast(passphrase_file=pass_file,
                                                          key_file=key_file)),))
    caplog.set_level(logging.DEBUG)
    result = build(tmp_path, disk, {"root": root_tree})
    root = result.layout.partitions[0]
    enc = root.encryption
    assert enc is not None and enc.mapper == "root_crypt" and enc.initramfs
    assert (enc.data_offset, enc.capacity, enc.opened_size) == (16 * M, 16 * M, 32 * M)
    container = piece(result.output, root.start, root.size, tmp_path / "root.luks")
    dump = luks_dump(container)
    assert re.search(rf"UUID:\s*{enc.uuid}", dump)
    assert "offset: 16777216 [bytes]" in dump and "sector: 512 [bytes]" in dump
    assert re.findall(r"PBKDF:\s*(\S+)", dump) == ["argon2id", "argon2id"]  # two key slots
    assert re.findall(r"Memory:\s*(\d+)", dump) == ["8192", "8192"]
    assert re.findall(r"Time cost:\s*(\d+)", dump) == ["4", "4"]
    key = volume_key(container, passphrase=SECRET)
    assert key == volume_key(container, key_file=key_file)
    assert container.stat().st_size - 16 * M == enc.opened_size
    opened = decrypt(container, key, tmp_path / "opened.img", enc.capacity)
    e2fsck(opened)
    assert debugfs_cat(opened, 0, "/etc/hostname") == b"testhost\n"
    found = run("blkid", "-p", "-o", "export", opened).stdout.decode()
    assert f"UUID={root.fsuuid}" in found
    blocks = run("dumpe2fs", "-h", opened).stdout.decode()
    assert re.search(r"Block count:\s*4096\n", blocks)  # the capacity: 16 MiB of 4 KiB
    # the secret is in no log line and nowhere in the image
    assert SECRET.decode() not in caplog.text
    assert SECRET not in result.output.read_bytes()
    assert not list((tmp_path / "work").iterdir())


def test_lvm_on_luks(tmp_path: Path, root_tree: Path, key_material: tuple[Path, Path]) -> None:
    pass_file, _ = key_material
    disk = Disk(size=None, partition_table="gpt", partitions=(
        Partition("crypt", "lvm", 60 * M, filesystem="none",
                  encryption=fast(passphrase_file=pass_file),
                  volume_group=VolumeGroup("vg0", (
                      LogicalVolume("root", None, mountpoint="/"),))),))
    result = build(tmp_path, disk, {"root": root_tree})
    part = result.layout.partitions[0]
    group, enc = part.volume_group, part.encryption
    assert group is not None and enc is not None and enc.initramfs
    assert group.pv_size == enc.opened_size == 44 * M
    assert group.pe_count == 10  # (44 - 1) // 4: the LVM device is the opened container
    root = group.logical_volumes[0]
    assert root.extent_count == 6  # (60 - 32 - 1) // 4: below the encryption reserve
    container = piece(result.output, part.start, part.size, tmp_path / "crypt.luks")
    opened = decrypt(container, volume_key(container, passphrase=SECRET),
                     tmp_path / "opened.img", enc.capacity)
    text = pvck(opened, "metadata")
    assert "vgname vg0 seqno 1" in text and f"dev_size = {44 * M // 512}" in text
    e2fsck(opened, root.offset)
    assert debugfs_cat(opened, root.offset, "/etc/hostname") == b"testhost\n"
    with loop_device(opened) as device:
        rows = lvm_report("lvs", [device], "lv_name", "vg_name", "lv_size")
    assert rows == [{"lv_name": "root", "vg_name": "vg0", "lv_size": str(24 * M)}]


def test_luks_on_lvm(tmp_path: Path, root_tree: Path, key_material: tuple[Path, Path]) -> None:
    _, key_file = key_material
    disk = Disk(size=None, partition_table="mbr", partitions=(
        Partition("system", "lvm", 96 * M, filesystem="none",
                  volume_group=VolumeGroup("vg0", (
                      LogicalVolume("root", 40 * M, mountpoint="/"),
                      LogicalVolume("secret", None, mountpoint="/srv",
                                    encryption=fast(key_file=key_file, embed_key=True)),
                  ))),))
    result = build(tmp_path, disk, {"root": root_tree, "secret": root_tree / "home"})
    part = result.layout.partitions[0]
    assert part.type_guid == "8e"
    secret = result.layout.volume("secret")
    assert isinstance(secret, PlannedLogicalVolume) and secret.encryption is not None
    assert secret.encryption.unlock == "key-file" and not secret.encryption.initramfs
    table = run("sfdisk", "--dump", result.output).stdout.decode()
    assert "type=8e" in table
    pvck(piece(result.output, part.start, part.size, tmp_path / "pv.img"), "metadata")
    container = piece(result.output, part.start + secret.offset, secret.size,
                      tmp_path / "secret.luks")
    assert re.search(rf"UUID:\s*{secret.encryption.uuid}", luks_dump(container))
    opened = decrypt(container, volume_key(container, key_file=key_file),
                     tmp_path / "opened.img", secret.encryption.capacity)
    e2fsck(opened)
    assert debugfs_cat(opened, 0, "/alice/notes") == bytes(range(256)) * 4096
    root = result.layout.volume("root")
    assert isinstance(root, PlannedLogicalVolume)
    e2fsck(result.output, part.start + root.offset)


def test_missing_key_material_fails_cleanly(tmp_path: Path, root_tree: Path) -> None:
    disk = Disk(size=None, partition_table="gpt", partitions=(
        Partition("root", "root", 64 * M,
                  encryption=fast(passphrase_file=tmp_path / "nothing-here")),))
    with pytest.raises(ComposeError, match="cannot read the passphrase file"):
        build(tmp_path, disk, {"root": root_tree})
    assert not list((tmp_path / "out").iterdir())
    assert not list((tmp_path / "work").iterdir())


def test_encrypted_volume_without_keys_is_refused(tmp_path: Path, root_tree: Path) -> None:
    disk = Disk(size=None, partition_table="gpt", partitions=(
        Partition("root", "root", 64 * M, encryption=fast()),))
    layout = plan_layout(disk, seed="seed")
    with pytest.raises(ComposeError, match="no passphrase_file or key_file"):
        assemble(layout, {"root": root_tree}, tmp_path / "out" / "disk.raw",
                 workdir=tmp_path / "work", keys={"root": KeySource()})
    with pytest.raises(ComposeError, match="no passphrase_file or key_file"):
        assemble(layout, {"root": root_tree}, tmp_path / "out" / "disk.raw",
                 workdir=tmp_path / "work")
    assert not list((tmp_path / "out").iterdir())
