"""dm-verity hash trees for read-only root filesystems, made on regular files.

``veritysetup format`` works on plain image files (no loop device, no device-mapper): it
reads the data image and writes the hash tree, with a superblock, into a second file. The
salt and the superblock UUID are derived from the layout seed so the root hash is a pure
function of the filesystem image.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError, DiskToolError

BLOCK = 4096
HASH = "sha256"


@attrs.frozen
class VerityInfo:
    """What the kernel command line and the initrd need to open the verity root."""

    roothash: str  # hex sha256 of the top hash block
    salt: str  # hex
    uuid: str  # verity superblock UUID (blkid shows it as the hash partition's UUID)
    data_blocks: int  # 4096-byte blocks of the data image covered by the tree
    hash_size: int  # bytes of the hash image (superblock + tree)
    data_partuuid: str
    hash_partuuid: str

    @property
    def data_device(self) -> str:
        return f"/dev/disk/by-partuuid/{self.data_partuuid}"

    @property
    def hash_device(self) -> str:
        return f"/dev/disk/by-partuuid/{self.hash_partuuid}"

    def cmdline(self) -> str:
        """Kernel command line for systemd-veritysetup-generator in a systemd initrd.

        It creates /dev/mapper/root from the two partitions; ``root=`` then names it.
        """
        return (f"roothash={self.roothash} systemd.verity_root_data={self.data_device} "
                f"systemd.verity_root_hash={self.hash_device} root=/dev/mapper/root ro")

    def veritysetup_open(self, name: str = "root") -> list[str]:
        """The ``veritysetup open`` call an initramfs-tools script runs instead."""
        return ["veritysetup", "open", self.data_device, name, self.hash_device, self.roothash]


def salt_for(seed: str) -> str:
    return hashlib.sha256(f"{seed}\0verity-salt".encode()).hexdigest()


def format_verity(data: Path, hash_image: Path, *, salt: str, uuid: str, data_partuuid: str,
                  hash_partuuid: str) -> VerityInfo:
    """Write the hash tree of ``data`` into ``hash_image``; return the root hash and more."""
    size = data.stat().st_size
    if size % BLOCK:
        with data.open("ab") as handle:  # squashfs/erofs images end mid-block
            handle.truncate(size + BLOCK - size % BLOCK)
    hash_image.unlink(missing_ok=True)
    hash_image.touch()
    runner.require("veritysetup", "cryptsetup-bin")
    done = runner.run(["veritysetup", "format", f"--hash={HASH}",
                       f"--data-block-size={BLOCK}", f"--hash-block-size={BLOCK}",
                       f"--salt={salt}", f"--uuid={uuid}", data, hash_image],
                      capture=True, error=DiskToolError, what="veritysetup format")
    text = done.stdout.decode()
    found = re.search(r"^Root hash:\s*([0-9a-f]+)\s*$", text, re.MULTILINE)
    blocks = re.search(r"^Data blocks:\s*(\d+)", text, re.MULTILINE)
    if found is None or blocks is None:
        raise ComposeError("veritysetup format printed no root hash:\n" + text)
    return VerityInfo(roothash=found.group(1), salt=salt, uuid=uuid,
                      data_blocks=int(blocks.group(1)), hash_size=hash_image.stat().st_size,
                      data_partuuid=data_partuuid, hash_partuuid=hash_partuuid)


def verify(data: Path, hash_image: Path, roothash: str, *, hash_offset: int = 0) -> None:
    """``veritysetup verify`` on the files (or on ``disk?offset``-free copies of them).

    ``hash_offset`` is where the hash superblock starts in ``hash_image``: a whole disk file
    works as the hash device (inspect uses that); the data must start at byte 0 of ``data``.
    """
    runner.run(["veritysetup", "verify", f"--hash-offset={hash_offset}", data, hash_image,
                roothash], capture=True, error=DiskToolError, what="veritysetup verify")
