"""A dm-verity protected read-only root on Debian 12 (initramfs-tools): the image boots to a
login prompt through /dev/mapper/root opened by imagecomposer's initrd script, and one
flipped byte in the root partition makes the boot fail with dm-verity errors.

The image is conftest.verity_check_spec's: its boot chain is signed with the spec's db key,
so it boots under OVMF with Secure Boot enforced and that key enrolled (the session's one
Secure Boot boot of a real image as root; test_secure_boot_image.py boots an unsigned one
to see it refused, the rootless test boots this image's bytes as a user), and its outputs
carry detached signatures that stock OpenSSL verifies.
"""

from __future__ import annotations

import re
import shutil
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


def openssl_verifies(public: Path, path: Path) -> bool:
    """Stock OpenSSL's verdict on ``path.sig`` (RSA PKCS#1 v1.5 over SHA-256)."""
    return subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public), "-signature",
                           f"{path}.sig", str(path)], capture_output=True).returncode == 0


def test_outputs_carry_signatures_openssl_verifies(verity_image: Path, verity_check_spec: Path,
                                                  tmp_path: Path) -> None:
    out, public = verity_image.parent, verity_check_spec.parent / "release.pub"
    signed = ["SHA256SUMS", "manifest.json", verity_image.name]
    assert all(openssl_verifies(public, out / name) for name in signed)
    tampered = tmp_path / "manifest.json"  # a copy with one byte more: refused
    tampered.write_bytes((out / "manifest.json").read_bytes() + b" ")
    shutil.copy(out / "manifest.json.sig", tmp_path)
    assert not openssl_verifies(public, tampered)
    # the private key is nowhere in what is published
    key_line = (verity_check_spec.parent / "release.pem").read_text().splitlines()[1]
    for path in out.iterdir():
        if path.suffix in (".json", ".sig") or path.name == "SHA256SUMS":
            assert key_line not in path.read_text(errors="replace"), path


def test_verity_root_boots_read_only(verity_image: Path, verity_check_spec: Path,
                                     tmp_path: Path) -> None:
    fstab = read_file(verity_image, "root", "/etc/fstab").decode()
    assert "/dev/mapper/root\t/\text4\tro\t" in fstab
    assert "\t/var\text4\t" in fstab and "tmpfs\t/tmp\ttmpfs\t" in fstab
    console = tmp_path / "console.log"
    result = boot(verity_image, timeout=300, console_log=console, secure_boot=True,
                  secure_boot_cert=verity_check_spec.parent / "db.crt",
                  markers=[OPENED_MARKER, "VERITY-CHECK var: writable"])
    text = console.read_text(errors="replace")
    assert "Secure boot enabled" in text, result.console_tail
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
