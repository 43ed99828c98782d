"""A dm-verity protected read-only root on Debian 12 (initramfs-tools): the image boots to a
login prompt through /dev/mapper/root opened by imagecomposer's initrd script, and one
flipped byte in the root partition makes the boot fail with dm-verity errors.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.boot import boot, read_file
from imagecomposer.boot.qemu import FAIL_ON
from imagecomposer.compose.disk.inspect import find_partition
from imagecomposer.families.deb.verity_initrd import OPENED_MARKER
from imagecomposer.foundation.errors import BootError
from imagecomposer.pipeline.build import BuildReport
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]

# what the kernel and initramfs-tools print when a verified block does not match its hash
VERITY_FAILURES = ("is corrupted", "Failed to mount /dev/mapper/root")


@pytest.fixture(scope="module")
def verity_image(example_build: ExampleBuild, verity_check_spec: Path) -> Path:
    """The verity example with tests/integration/conftest.py's check unit, built once per
    session (the rootless test compares its own build of it with this one)."""
    _, _, out = example_build("debian-12-verity", verity_check_spec)
    return out / "debian-12-verity.raw"


def test_verity_root_boots_read_only(verity_image: Path, tmp_path: Path) -> None:
    fstab = read_file(verity_image, "root", "/etc/fstab").decode()
    assert "/dev/mapper/root\t/\text4\tro\t" in fstab
    assert "\t/var\text4\t" in fstab and "tmpfs\t/tmp\ttmpfs\t" in fstab
    console = tmp_path / "console.log"
    result = boot(verity_image, timeout=300, console_log=console,
                  markers=[OPENED_MARKER, "VERITY-CHECK var: writable"])
    text = console.read_text(errors="replace")
    assert "root=/dev/mapper/root" in text and "roothash=" in text
    assert "device-mapper: verity" in text, result.console_tail
    assert "debian-verity login:" in text
    assert not any(f in text for f in VERITY_FAILURES)
    assert re.search(r"VERITY-CHECK root: /dev/mapper/root +ro[,\s]", text), text[-3000:]
    assert re.search(r"VERITY-CHECK var: rw[,\s]", text)
    assert "VERITY-CHECK tmp: tmpfs" in text
    assert "VERITY-CHECK etc: read-only" in text and "VERITY-CHECK var: writable" in text


def test_flipped_byte_in_root_fails_the_boot(verity_image: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.raw"
    subprocess.run(["cp", "--sparse=always", verity_image, tampered], check=True)
    root = find_partition(tampered, "root")
    assert root.filesystem == "ext4"
    offset = root.start + 1024 + 0x78  # in the ext4 superblock (s_volume_name), block 0
    with tampered.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    console = tmp_path / "console.log"
    with pytest.raises(BootError):
        boot(tampered, timeout=180, console_log=console,
             fail_on=(*FAIL_ON, *VERITY_FAILURES))
    text = console.read_text(errors="replace")
    assert OPENED_MARKER in text  # the root hash itself matched: the tree is intact
    assert any(f in text for f in VERITY_FAILURES), text[-3000:]
    assert "login:" not in text
