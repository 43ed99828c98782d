"""A disk layout with a volume group or LUKS2 encryption adds the profile's lvm2 and
cryptsetup-initramfs to the resolution (what the initramfs needs to open the root)."""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.config.model import Config
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Disk, Encryption, LogicalVolume, Partition, VolumeGroup
from tests.fixtures.debrepo import Deb, DebArchive
from tests.packages.conftest import make_spec
from tests.packages.test_resolve import names, republish

M = 1 << 20


def test_lvm_and_luks2_layouts_request_their_tools(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("lvm2"), Deb("cryptsetup"),
              Deb("cryptsetup-initramfs", depends="cryptsetup"))
    plain = make_spec()
    assert not {"lvm2", "cryptsetup-initramfs"} & set(names(Resolver(config).resolve(plain)))
    lvm = Disk(partitions=(Partition("pv", "lvm", 1024 * M, filesystem="none",
                                     volume_group=VolumeGroup("vg", (
                                         LogicalVolume("root", None, mountpoint="/"),))),))
    got = Resolver(config).resolve(attrs.evolve(plain, disk=lvm))
    assert "lvm2" in names(got) and "lvm2" in got.lock.requested
    assert "cryptsetup-initramfs" not in names(got)
    encrypted = Disk(partitions=(Partition("root", "root", 1024 * M, encryption=Encryption(
        passphrase_file=Path("/nonexistent"))),))
    got = Resolver(config).resolve(attrs.evolve(plain, disk=encrypted))
    assert {"cryptsetup-initramfs", "cryptsetup"} <= set(names(got))
    assert "lvm2" not in names(got)
