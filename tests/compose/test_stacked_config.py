"""What an LVM or LUKS2 layout writes into the image tree: fstab by /dev/mapper names,
crypttab (``initramfs`` for the root's containers), embedded key files and the
cryptsetup-initramfs settings, ``root=`` and dracut's words, the partition trees of logical
volumes, and the profile packages that make the initramfs able to open them."""

from __future__ import annotations

import stat
from pathlib import Path

import attrs
import pytest

from imagecomposer.compose import bootloader, initramfs_cache
from imagecomposer.compose.composer import Composer, split_partitions, volume_names
from imagecomposer.compose.configure import crypttab, fstab
from imagecomposer.compose.disk import plan_layout
from imagecomposer.compose.disk.luks import embedded_keys
from imagecomposer.compose.layout import Layout
from imagecomposer.config.model import Config
from imagecomposer.families.profile import load_profile
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.spec.model import (
    Disk,
    Encryption,
    LogicalVolume,
    Partition,
    Spec,
    VolumeGroup,
)

M = 1 << 20


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "srv.key"
    path.write_bytes(b"\x01\x02 key bytes")
    return path


def stacked_disk(key_file: Path) -> Disk:
    """Root on an LV of a plain PV, /srv on an encrypted LV (embedded key), /home in LVM on
    LUKS (passphrase), swap on an LV."""
    typed = Encryption(passphrase_file=key_file.with_name("pass"))
    embedded = Encryption(key_file=key_file, embed_key=True)
    return Disk(partitions=(
        Partition("esp", "esp", 256 * M),
        Partition("system", "lvm", 2048 * M, filesystem="none", volume_group=VolumeGroup(
            "sys", (LogicalVolume("root", 1024 * M, mountpoint="/"),
                    LogicalVolume("swap", 128 * M, filesystem="swap"),
                    LogicalVolume("srv", None, filesystem="xfs", mountpoint="/srv",
                                  encryption=embedded)))),
        Partition("vault", "lvm", None, filesystem="none", encryption=typed,
                  volume_group=VolumeGroup("data", (
                      LogicalVolume("home", None, mountpoint="/home",
                                    mount_options="nodev"),))),
    ), size=4096 * M)


@pytest.fixture
def layout(key_file: Path) -> Layout:
    return plan_layout(stacked_disk(key_file), seed="seed")


def rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if not line.startswith("#")]


def test_fstab_names_mapper_devices(layout: Layout, fake_tree: Path) -> None:
    fstab.configure(fake_tree, layout)
    body = rows((fake_tree / "etc/fstab").read_text())
    esp = layout.partitions[0]
    assert body == [
        ["/dev/mapper/sys-root", "/", "ext4", "errors=remount-ro", "0", "1"],
        [f"UUID={esp.fsuuid}", "/boot/efi", "vfat", "umask=0077,x-systemd.automount", "0",
         "2"],
        ["/dev/mapper/data-home", "/home", "ext4", "nodev", "0", "2"],
        ["/dev/mapper/srv_crypt", "/srv", "xfs", "defaults", "0", "0"],
        ["/dev/mapper/sys-swap", "none", "swap", "sw", "0", "0"],
    ]
    assert (fake_tree / "srv").is_dir() and (fake_tree / "home").is_dir()


def test_crypttab_and_embedded_keys(layout: Layout, fake_tree: Path, key_file: Path) -> None:
    (fake_tree / "usr/sbin/cryptsetup").write_text("#!/bin/sh\n")
    (fake_tree / "usr/sbin/update-initramfs").write_text("#!/bin/sh\n")
    hook = fake_tree / "etc/cryptsetup-initramfs/conf-hook"
    hook.parent.mkdir(parents=True)
    hook.write_text("#KEYFILE_PATTERN=\n")
    keys = embedded_keys(stacked_disk(key_file), {"srv": "srv_crypt", "vault": "vault_crypt"})
    assert keys == {"srv_crypt": key_file}
    crypttab.configure(fake_tree, layout, keys)
    srv, vault = layout.volume("srv").encryption, layout.partitions[2].encryption
    assert srv is not None and vault is not None
    assert rows((fake_tree / "etc/crypttab").read_text()) == [
        ["srv_crypt", f"UUID={srv.uuid}", "/etc/cryptsetup-keys.d/srv_crypt.key", "luks"],
        ["vault_crypt", f"UUID={vault.uuid}", "none", "luks"],
    ]
    key = fake_tree / "etc/cryptsetup-keys.d/srv_crypt.key"
    assert key.read_bytes() == key_file.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    # neither volume is opened by the initramfs: no key goes into it
    assert hook.read_text() == "#KEYFILE_PATTERN=\n"
    assert not (fake_tree / crypttab.UMASK_CONF.lstrip("/")).exists()


def test_embedded_key_for_the_root_goes_into_the_initramfs(fake_tree: Path,
                                                           key_file: Path) -> None:
    (fake_tree / "usr/sbin/cryptsetup").write_text("#!/bin/sh\n")
    (fake_tree / "usr/sbin/update-initramfs").write_text("#!/bin/sh\n")
    disk = Disk(partitions=(Partition("esp", "esp", 256 * M), Partition(
        "root", "root", 1024 * M, encryption=Encryption(key_file=key_file, embed_key=True))))
    layout = plan_layout(disk, seed="s")
    crypttab.configure(fake_tree, layout, embedded_keys(disk, {"root": "root_crypt"}))
    enc = layout.partitions[1].encryption
    assert enc is not None
    assert rows((fake_tree / "etc/crypttab").read_text()) == [
        ["root_crypt", f"UUID={enc.uuid}", "/etc/cryptsetup-keys.d/root_crypt.key",
         "luks,initramfs"]]
    hook = (fake_tree / "etc/cryptsetup-initramfs/conf-hook").read_text()
    assert 'KEYFILE_PATTERN="/etc/cryptsetup-keys.d/*.key"' in hook
    assert "UMASK=0077" in (fake_tree / crypttab.UMASK_CONF.lstrip("/")).read_text()
    crypttab.configure(fake_tree, layout, embedded_keys(disk, {"root": "root_crypt"}))
    again = (fake_tree / "etc/cryptsetup-initramfs/conf-hook").read_text()
    assert again.count("KEYFILE_PATTERN=") == 1  # idempotent


def test_unused_encrypted_volume_is_noauto(key_file: Path) -> None:
    disk = Disk(partitions=(Partition("root", "root", 1024 * M), Partition(
        "archive", "generic", 512 * M, encryption=Encryption(key_file=key_file))))
    layout = plan_layout(disk, seed="s")
    enc = layout.partitions[1].encryption
    assert enc is not None
    assert rows(crypttab.render(layout)) == [
        ["archive_crypt", f"UUID={enc.uuid}", "none", "luks,noauto"]]


def test_crypttab_needs_cryptsetup(layout: Layout, fake_tree: Path) -> None:
    with pytest.raises(ComposeError, match="add the package cryptsetup"):
        crypttab.configure(fake_tree, layout, {})


def test_kernel_cmdline_for_stacked_roots(key_file: Path) -> None:
    spec = Spec.from_text("image: {name: x, base: {os: debian, version: '12'}}\n")
    lvm_root = plan_layout(stacked_disk(key_file), seed="s")
    assert bootloader.kernel_cmdline(spec, lvm_root).startswith(
        "root=/dev/mapper/sys-root ro rd.lvm.lv=sys/root console=")
    encrypted_lv = attrs.evolve(stacked_disk(key_file).partitions[1].volume_group,
                                logical_volumes=(LogicalVolume(
                                    "root", None, mountpoint="/",
                                    encryption=Encryption(passphrase_file=key_file)),))
    disk = Disk(partitions=(Partition("esp", "esp", 256 * M), Partition(
        "system", "lvm", 1024 * M, filesystem="none", volume_group=encrypted_lv)))
    layout = plan_layout(disk, seed="s")
    enc = layout.root.encryption
    assert enc is not None
    assert bootloader.kernel_cmdline(spec, layout).startswith(
        f"root=/dev/mapper/root_crypt ro rd.luks.uuid={enc.uuid} rd.lvm.lv=sys/root ")
    in_luks = Disk(partitions=(Partition("esp", "esp", 256 * M), Partition(
        "vault", "lvm", 1024 * M, filesystem="none",
        encryption=Encryption(passphrase_file=key_file), volume_group=VolumeGroup(
            "vg", (LogicalVolume("root", None, mountpoint="/"),)))))
    layout = plan_layout(in_luks, seed="s")
    vault = layout.partitions[1].encryption
    assert vault is not None and vault.initramfs
    assert bootloader.kernel_cmdline(spec, layout).startswith(
        f"root=/dev/mapper/vg-root ro rd.luks.uuid={vault.uuid} rd.lvm.lv=vg/root ")


def test_logical_volume_trees_are_split_out(layout: Layout, fake_tree: Path) -> None:
    (fake_tree / "srv/www").mkdir(parents=True)
    (fake_tree / "srv/www/index.html").write_text("hi\n")
    (fake_tree / "home/alice").mkdir(parents=True)
    moved = split_partitions(fake_tree, layout)
    assert set(moved) == {"srv", "home"}
    assert (moved["srv"] / "www/index.html").read_text() == "hi\n"
    assert (moved["home"] / "alice").is_dir()
    assert list((fake_tree / "srv").iterdir()) == []
    assert volume_names(stacked_disk(Path("k"))) == ["esp", "system", "root", "swap", "srv",
                                                     "vault", "home"]


def test_lvm_layout_needs_lvm_in_the_image(layout: Layout, fake_tree: Path) -> None:
    spec = attrs.evolve(Spec.from_text("image: {name: x, base: {os: debian, version: '12'}}\n"),
                        disk=stacked_disk(Path("k")))
    with pytest.raises(ComposeError, match="add the package lvm2"):
        Composer(Config())._stacked_storage(spec, fake_tree, layout)


def test_initramfs_cache_key_sees_key_files_and_lvm_config(fake_tree: Path) -> None:
    before = initramfs_cache.key(fake_tree, root_fstype="ext4")
    (fake_tree / "etc/cryptsetup-keys.d").mkdir(parents=True)
    (fake_tree / "etc/cryptsetup-keys.d/root_crypt.key").write_bytes(b"one")
    one = initramfs_cache.key(fake_tree, root_fstype="ext4")
    (fake_tree / "etc/cryptsetup-keys.d/root_crypt.key").write_bytes(b"two")
    two = initramfs_cache.key(fake_tree, root_fstype="ext4")
    (fake_tree / "etc/lvm").mkdir()
    (fake_tree / "etc/lvm/lvm.conf").write_text("devices {}\n")
    three = initramfs_cache.key(fake_tree, root_fstype="ext4")
    assert len({before, one, two, three}) == 4


def test_profiles_name_the_layout_packages() -> None:
    for os_name, version in (("debian", "12"), ("debian", "13"), ("ubuntu", "24.04")):
        profile = load_profile(os_name, version)
        assert profile.layout_packages(("lvm", "encryption")) == ("lvm2",
                                                                  "cryptsetup-initramfs")
        assert profile.layout_packages(()) == ()
