"""Specs with LVM volume groups and LUKS2 encryption: what loads, and each mistake as one
positioned error (file:line:column of the field that is wrong)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import ValidationError
from imagecomposer.spec import Spec, check
from imagecomposer.spec.model import disk_features, key_material

HEAD = "image: {name: web, base: {os: debian, version: '12'}}\n"
ESP = "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
GOOD = (HEAD +
        "disk:\n"
        "  partitions:\n"
        + ESP +
        "    - name: system\n"
        "      type: lvm\n"
        "      size: 4GiB\n"
        "      encryption: {type: luks2, passphrase_file: ./pass, pbkdf_memory: 128MiB}\n"
        "      volume_group:\n"
        "        name: vg0\n"
        "        logical_volumes:\n"
        "          - {name: root, size: 2GiB, mountpoint: /}\n"
        "          - {name: swap, size: 512MiB, filesystem: swap}\n"
        "          - {name: home, size: rest, mountpoint: /home}\n")


def load(tmp_path: Path, text: str) -> Spec:
    (tmp_path / "pass").write_text("secret\n")
    (tmp_path / "key").write_bytes(b"\x00" * 32)
    return Spec.from_text(text, name="web.yml", base_dir=tmp_path)


def errors(tmp_path: Path, text: str) -> list[str]:
    return [str(p) for p in check(load(tmp_path, text), Config()).errors
            if "Provider" not in p.message]


def test_lvm_on_luks_spec_loads(tmp_path: Path) -> None:
    spec = load(tmp_path, GOOD)
    system = spec.disk.partitions[1]
    assert system.filesystem == "none"  # a PV has no filesystem of its own
    assert system.encryption is not None and system.encryption.pbkdf_memory == 128 << 20
    assert system.encryption.passphrase_file == tmp_path / "pass"
    group = system.volume_group
    assert group is not None and [lv.name for lv in group.logical_volumes] == \
        ["root", "swap", "home"]
    assert [lv.size for lv in group.logical_volumes] == [2 << 30, 512 << 20, None]
    assert disk_features(spec.disk) == ("lvm", "encryption")
    assert key_material(spec.disk) == [tmp_path / "pass"]
    assert errors(tmp_path, GOOD) == []
    # key material keys no plain hash: it is not among the referenced files
    assert tmp_path / "pass" not in spec.referenced_files()


CASES = [
    ("sizes that do not fit",
     GOOD.replace("size: rest, mountpoint: /home", "size: 2GiB, mountpoint: /home"),
     "web.yml:14:32: disk.partitions[1].volume_group.logical_volumes[2].size: the logical "
     "volumes need 4608MiB (whole 4MiB extents) but partition 'system' of 4GiB holds 4060MiB of "
     "extents (1MiB LVM metadata, 32MiB for LUKS2)"),
    ("lvm on mbr without type 8e",
     GOOD.replace("type: lvm", "type: generic").replace(ESP, "").replace(
         "disk:\n", "customizations: {bootloader: none}\ndisk:\n  partition_table: mbr\n"),
     "web.yml:7:13: disk.partitions[0].type: a partition holding a volume group needs type: "
     "lvm (mbr type 8e), not 'generic'"),
    ("encryption without a key source",
     GOOD.replace("passphrase_file: ./pass, ", ""),
     "web.yml:8:19: disk.partitions[1].encryption: encryption of 'system' needs a key "
     "source: passphrase_file and/or key_file (never a passphrase in the spec)"),
    ("verity root on lvm",
     GOOD.replace("disk:\n", "customizations: {security: {read_only_root: true}}\ndisk:\n"),
     "web.yml:13:50: disk.partitions[1].volume_group.logical_volumes[0].mountpoint: "
     "read_only_root (dm-verity) needs the root on a plain partition: the verity data and "
     "hash partitions are found by PARTUUID, which a root on LVM or LUKS2 does not have"),
    ("key file that cannot be typed",
     GOOD.replace("passphrase_file: ./pass", "key_file: ./key"),
     "web.yml:8:19: disk.partitions[1].encryption: 'system' is opened at boot but a key file "
     "cannot be typed at the console: add passphrase_file or set embed_key: true"),
    ("embed_key without a key file",
     GOOD.replace("passphrase_file: ./pass,", "passphrase_file: ./pass, embed_key: true,"),
     "web.yml:8:69: disk.partitions[1].encryption.embed_key: embed_key needs a key_file"),
    ("encrypted twice",
     GOOD.replace("size: 2GiB, mountpoint: /}",
                  "size: 2GiB, mountpoint: /, encryption: {type: luks2, key_file: ./key, "
                  "embed_key: true}}"),
     "web.yml:12:65: disk.partitions[1].volume_group.logical_volumes[0].encryption: logical "
     "volume 'root' is in the encrypted partition 'system' already: encrypting it twice is "
     "not supported"),
    ("lvm without a volume group",
     HEAD + "disk:\n  partitions:\n" + ESP + "    - {name: root, type: root, size: 1GiB}\n"
     "    - {name: pv, type: lvm, size: rest}\n",
     "web.yml:6:24: disk.partitions[2].type: a partition of type lvm needs a volume_group"),
    ("name clash",
     GOOD.replace("name: home", "name: esp"),
     "web.yml:14:20: disk.partitions[1].volume_group.logical_volumes[2].name: name 'esp' is "
     "already used by a partition or logical volume (names must be unique across both)"),
    ("reserved name",
     GOOD.replace("name: home", "name: snapshot"),
     "web.yml:14:20: disk.partitions[1].volume_group.logical_volumes[2].name: 'snapshot' is "
     "reserved by LVM"),
    ("two roots",
     GOOD.replace(ESP, ESP + "    - {name: plain, type: root, size: 1GiB}\n"),
     "web.yml:4:5: disk.partitions: needs exactly one partition of type root (or logical "
     "volume mounted at /), found 2"),
    ("encrypted ESP",
     GOOD.replace("filesystem: vfat}", "filesystem: vfat, encryption: {type: luks2, "
                  "passphrase_file: ./pass}}"),
     "web.yml:4:74: disk.partitions[0].encryption: a esp partition cannot be encrypted: the "
     "firmware reads it"),
    ("memory cost a small machine cannot pay",
     GOOD.replace("pbkdf_memory: 128MiB", "pbkdf_memory: 4GiB"),
     "web.yml:8:72: disk.partitions[1].encryption.pbkdf_memory: pbkdf_memory must be between "
     "8MiB and 1GiB (the machine unlocking it needs that much free memory)"),
    ("rest not last",
     GOOD.replace("size: 512MiB, filesystem: swap", "size: rest, filesystem: swap"),
     "web.yml:13:32: disk.partitions[1].volume_group.logical_volumes[1].size: only the last "
     "logical volume may have size: rest"),
    ("grub on mbr reading an lvm root",
     (GOOD.replace(ESP, "").replace("disk:\n", "customizations: {bootloader: grub}\ndisk:\n"
                                    "  partition_table: mbr\n")),
     "web.yml:13:50: disk.partitions[0].volume_group.logical_volumes[0].mountpoint: GRUB on "
     "mbr boots with BIOS and reads the kernel from the root filesystem, which cannot be on "
     "LVM or LUKS2: use gpt with an ESP"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_one_positioned_error(tmp_path: Path, text: str, expected: str) -> None:
    assert errors(tmp_path, text) == [expected]


def test_missing_passphrase_file_is_reported(tmp_path: Path) -> None:
    spec = load(tmp_path, GOOD.replace("./pass", "./nope"))
    found = [str(p) for p in check(spec, Config()).errors]
    assert "web.yml:8:50: disk.partitions[1].encryption.passphrase_file: Missing required " \
           "file './nope' referenced in build spec" in found


def test_a_passphrase_in_the_spec_is_refused_by_the_schema(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        load(tmp_path, GOOD.replace("passphrase_file: ./pass", "passphrase: hunter2"))
    text = str(caught.value)
    assert "disk.partitions[1].encryption" in text and "hunter2" not in text
