"""LUKS2 encryption of a filesystem or physical volume image, offline, on a regular file.

The content is made first, plain, in a file as large as its partition or logical volume,
leaving the last :data:`RESERVE` bytes unused; then ``cryptsetup reencrypt --encrypt
--reduce-device-size 32MiB`` encrypts the file in place. It needs no loop device and no
device-mapper mapping: cryptsetup encrypts through the kernel's crypto API (AF_ALG) from
user space. It moves the data up by half the reserve, which becomes the LUKS2 header
(:data:`DATA_OFFSET`, room for 32 key slots), so the opened device is the container minus
16 MiB and the content occupies its first (container - 32 MiB) bytes.

Key slots: a passphrase (``passphrase_file``: its first line, as typed at the console)
and/or a key file (``key_file``: all its bytes). The passphrase reaches cryptsetup on its
standard input, never on a command line or in a temporary file. Key derivation is argon2id
with a memory cost fit for small machines (``pbkdf_memory``, default 64 MiB, one thread);
its time cost is cryptsetup's benchmark for 2 s on the build host, or ``pbkdf_iterations``.

Data sectors are 512 bytes (``--sector-size 512``), what the layers above expect of a disk
whatever the build host's devices are. Not reproducible, on purpose: the volume key and the
key slot salts are random (a volume key derived from the build inputs would be known to
anyone holding them). The LUKS2 UUID is the planned one, so fstab, crypttab and ``root=``
do not change between builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs

from imagecomposer.compose.layout import SECTOR, PlannedEncryption
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError, DiskToolError
from imagecomposer.spec.model import Disk, Encryption

MIB = 1 << 20
RESERVE = 32 * MIB  # --reduce-device-size: twice the header
DATA_OFFSET = RESERVE // 2  # the LUKS2 header (metadata + key slots) before the data


@attrs.frozen
class KeySource:
    """How a LUKS2 container is unlocked: what ``encryption:`` named, without the type."""

    passphrase_file: Path | None = None
    key_file: Path | None = None
    pbkdf_memory: int = 64 * MIB
    pbkdf_iterations: int | None = None
    embed_key: bool = False  # the key file is copied into the image (unlocks unattended)

    @classmethod
    def of(cls, enc: Encryption) -> KeySource:
        return cls(passphrase_file=enc.passphrase_file, key_file=enc.key_file,
                   pbkdf_memory=enc.pbkdf_memory, pbkdf_iterations=enc.pbkdf_iterations,
                   embed_key=enc.embed_key)


def key_sources(disk: Disk) -> dict[str, KeySource]:
    """Key sources by volume name (partition or logical volume) for every encrypted one."""
    found: dict[str, KeySource] = {}
    for part in disk.partitions:
        if part.encryption is not None:
            found[part.name] = KeySource.of(part.encryption)
        for lv in part.volume_group.logical_volumes if part.volume_group else ():
            if lv.encryption is not None:
                found[lv.name] = KeySource.of(lv.encryption)
    return found


def passphrase(path: Path) -> bytes:
    """The passphrase in ``path``: its first line, without the line end (what is typed)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ComposeError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line:
        raise ComposeError(f"the passphrase file {path} has an empty first line")
    return line


def pbkdf_options(keys: KeySource) -> list[str]:
    options = ["--pbkdf", "argon2id", "--pbkdf-memory", str(keys.pbkdf_memory // 1024),
               "--pbkdf-parallel", "1"]
    if keys.pbkdf_iterations is not None:
        options += ["--pbkdf-force-iterations", str(keys.pbkdf_iterations)]
    return options


def encrypt(image: Path, enc: PlannedEncryption, keys: KeySource, *, name: str) -> None:
    """Encrypt ``image`` (a regular file, the content in its first ``enc.capacity`` bytes)
    in place into a LUKS2 container with ``enc.uuid`` and the key slots of ``keys``."""
    if keys.passphrase_file is None and keys.key_file is None:
        raise ComposeError(f"encrypted volume '{name}' has no passphrase_file or key_file")
    if image.stat().st_size - RESERVE < enc.capacity:
        raise ComposeError(f"internal error: '{name}' leaves no room for the LUKS2 header")
    tool = runner.require("cryptsetup", "cryptsetup-bin")
    pbkdf = pbkdf_options(keys)
    secret: bytes | None = None
    if keys.passphrase_file is not None:
        secret = passphrase(keys.passphrase_file)
        first: list[str | Path] = ["--key-file", "-"]
    else:
        assert keys.key_file is not None
        first = ["--key-file", keys.key_file]
    # 512-byte sectors: what every layer above (an LVM PV, FAT) expects of a disk; cryptsetup
    # would otherwise pick by the device it runs on. --disable-locks: cryptsetup's lock is in
    # the host's /run/cryptsetup, which root of a user namespace (a rootless build) cannot
    # write; the file is this build's alone.
    runner.run([tool, "reencrypt", "--encrypt", "--type", "luks2", "--batch-mode",
                "--disable-locks", "--reduce-device-size", f"{RESERVE // MIB}M",
                "--sector-size", str(SECTOR), "--uuid", enc.uuid, *pbkdf, *first, image],
               input=secret, capture=True, error=DiskToolError,
               what=f"cryptsetup reencrypt --encrypt for '{name}'")
    if secret is not None and keys.key_file is not None:
        runner.run([tool, "luksAddKey", "--batch-mode", "--disable-locks", *pbkdf,
                    "--key-file", "-", image, keys.key_file], input=secret, capture=True,
                   error=DiskToolError, what=f"cryptsetup luksAddKey (key file) for '{name}'")


def embedded_keys(disk: Disk, mappers: Mapping[str, str]) -> dict[str, Path]:
    """Key files to copy into the image (``embed_key: true``), by device-mapper name;
    ``mappers`` maps volume names to their mapper names."""
    return {mappers[name]: keys.key_file for name, keys in key_sources(disk).items()
            if keys.embed_key and keys.key_file is not None}
