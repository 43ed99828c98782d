"""The combination matrix: every cell of the tables is exercised against the checks."""

from __future__ import annotations

import itertools

import pytest

from imagecomposer.config.model import Config
from imagecomposer.spec import Spec, check
from imagecomposer.spec.combinations import (
    BOOTLOADERS,
    COMPRESSIONS,
    FORMATS,
    PARTITION_FILESYSTEMS,
)

BASE = "image: {name: web, base: {os: debian, version: '12'}}\n"
ESP = "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"


def errors(text: str) -> list[str]:
    return [p.message for p in check(Spec.from_text(BASE + text), Config()).errors]


@pytest.mark.parametrize(("fmt", "compression"), list(itertools.product(FORMATS, COMPRESSIONS)))
def test_format_by_compression(fmt: str, compression: str) -> None:
    found = errors(f"output: {{formats: [{fmt}], compression: {compression}}}\n")
    legal = compression in FORMATS[fmt].compressions
    assert (found == []) == legal, found
    if not legal:
        assert found[0].startswith(
            f"Invalid combination of compression '{compression}' with format '{fmt}'")


@pytest.mark.parametrize(("loader", "table", "with_esp"),
                         list(itertools.product(BOOTLOADERS, ("gpt", "mbr"), (True, False))))
def test_bootloader_by_partition_table_by_esp(loader: str, table: str, with_esp: bool) -> None:
    parts = (ESP if with_esp else "") + "    - {name: root, type: root, size: rest}\n"
    found = errors(f"customizations: {{bootloader: {loader}}}\n"
                   f"disk:\n  partition_table: {table}\n  partitions:\n{parts}")
    rule = BOOTLOADERS[loader]
    legal = table in rule.tables and (with_esp or table not in rule.needs_esp_on)
    assert (found == []) == legal, found


@pytest.mark.parametrize(("loader", "table"), list(itertools.product(BOOTLOADERS, ("gpt", "mbr"))))
def test_secure_boot_matrix(loader: str, table: str, tmp_path: object) -> None:
    text = (f"customizations:\n  bootloader: {loader}\n  security:\n"
            f"    secure_boot: {{key: /dev/null, cert: /dev/null}}\n"
            f"disk:\n  partition_table: {table}\n  partitions:\n{ESP}"
            "    - {name: root, type: root, size: rest}\n")
    found = [m for m in errors(text) if "secure_boot" in m or "Secure Boot" in m]
    legal = loader in ("systemd-boot", "grub") and table == "gpt"
    assert (found == []) == legal, found


@pytest.mark.parametrize(("filesystem", "read_only"),
                         list(itertools.product(PARTITION_FILESYSTEMS["root"], (True, False))))
def test_read_only_root_by_root_filesystem(filesystem: str, read_only: bool) -> None:
    found = errors(f"customizations: {{security: {{read_only_root: {str(read_only).lower()}}}}}\n"
                   f"disk:\n  partitions:\n{ESP}"
                   f"    - {{name: root, type: root, size: rest, filesystem: {filesystem}}}\n")
    if read_only:
        legal = filesystem in ("ext4", "erofs", "squashfs")
    else:
        legal = filesystem not in ("squashfs", "erofs")
    assert (found == []) == legal, found


@pytest.mark.parametrize(("ptype", "filesystem"), list(itertools.product(
    # lvm partitions hold a volume group: tests/spec/test_volumes.py
    [t for t in PARTITION_FILESYSTEMS if t not in ("root", "esp", "verity", "lvm")],
    ["ext4", "xfs", "vfat", "swap", "none"])))
def test_partition_type_by_filesystem(ptype: str, filesystem: str) -> None:
    mount = "" if filesystem in ("swap", "none") else ", mountpoint: /extra"
    extra = f"{{name: x, type: {ptype}, size: 64MiB, filesystem: {filesystem}{mount}}}"
    found = errors(f"disk:\n  partitions:\n{ESP}    - {extra}\n"
                   "    - {name: root, type: root, size: rest}\n")
    legal = filesystem in PARTITION_FILESYSTEMS[ptype]
    assert (found == []) == legal, found


def test_verity_partition_needs_read_only_root() -> None:
    text = (f"disk:\n  partitions:\n{ESP}    - {{name: root, type: root, size: 1GiB}}\n"
            "    - {name: hash, type: verity, size: rest, filesystem: none}\n")
    assert errors(text) == [
        "a verity partition needs customizations.security.read_only_root: true"]
    assert errors("customizations: {security: {read_only_root: true}}\n" + text) == []


def test_vhd_needs_whole_mib_disk_size() -> None:
    assert errors("disk: {size: 2147483648}\noutput: {formats: [vhd-fixed]}\n") == []
    assert "whole number of MiB" in errors(
        "disk: {size: 2147484160}\noutput: {formats: [vhd-fixed]}\n")[0]


def test_mbr_limits() -> None:
    parts = "".join(f"    - {{name: p{i}, type: generic, size: 8MiB, filesystem: none}}\n"
                    for i in range(4))
    text = ("customizations: {bootloader: grub}\ndisk:\n  partition_table: mbr\n  partitions:\n"
            + parts + "    - {name: root, type: root, size: rest}\n")
    assert "at most 4 partitions" in errors(text)[0]


def test_aarch64_has_no_bios() -> None:
    found = [p.message for p in check(Spec.from_text(
        "image: {name: a, base: {os: debian, version: '12', arch: aarch64}}\n"
        "customizations: {bootloader: grub}\ndisk: {partition_table: mbr}\n"), Config()).errors]
    assert found and "aarch64 has no BIOS" in found[0]
