"""Independent readers of what imagecomposer writes for LVM and LUKS2, for the tests.

* ``pvck --dump headers|metadata`` on a plain file checks the PV label, the metadata area
  header and the metadata text with lvm2's own CRCs (no device needed);
* ``lvs``/``vgck``/``pvs`` need a block device: :func:`loop_device` attaches a partition
  of a disk image to a loop device (tests only) and LVM looks at that device only;
* LUKS2: ``cryptsetup luksDump`` reads the header, ``--dump-volume-key`` proves a
  passphrase or key file opens a key slot, and :func:`decrypt` decrypts the data
  (AES-XTS-plain64 with 512-byte sectors, in Python) so the content can be checked with
  e2fsck/debugfs/pvck: no device-mapper anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LVM_ENV = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"}
UDEV_CONTROL = "/run/udev/control"
SECTOR = 512


def run(*argv: str | Path, input: bytes | None = None, check: bool = True,
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in argv], input=input, capture_output=True,
                          check=check, env=LVM_ENV)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not Path("/sbin", t).exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup-host.sh installs them)")


def piece(image: Path, offset: int, size: int, target: Path) -> Path:
    """Bytes [offset, offset+size) of ``image`` as the file ``target``."""
    with image.open("rb") as src, target.open("wb") as dst:
        src.seek(offset)
        remaining = size
        while remaining:
            chunk = src.read(min(remaining, 8 << 20))
            assert chunk, "image too short"
            dst.write(chunk)
            remaining -= len(chunk)
    return target


def pvck(pv: Path, what: str = "headers") -> str:
    """``pvck --dump <what>`` output; fails the test on any CHECK/WARNING line."""
    done = run("pvck", "--dump", what, pv, check=False)
    text = done.stdout.decode() + done.stderr.decode()
    bad = [line for line in text.splitlines() if "CHECK:" in line or "WARNING:" in line]
    assert done.returncode == 0 and not bad, text
    return text


def debugfs_cat(image: Path, offset: int, path: str) -> bytes:
    return run("debugfs", "-R", f"cat {path}", f"{image}?offset={offset}").stdout


def e2fsck(image: Path, offset: int = 0) -> None:
    done = run("e2fsck", "-fn", f"{image}?offset={offset}" if offset else image, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def luks_dump(container: Path) -> str:
    return run("cryptsetup", "luksDump", container).stdout.decode()


def volume_key(container: Path, *, passphrase: bytes | None = None,
               key_file: Path | None = None) -> bytes:
    """The volume key, unlocked with a passphrase (stdin) or a key file: proves that key
    slot opens."""
    source = ["--key-file", "-"] if passphrase is not None else ["--key-file", str(key_file)]
    done = run("cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", *source,
               container, input=passphrase)
    text = done.stdout.decode()
    dump = text[text.index("MK dump:") + len("MK dump:"):]
    return bytes.fromhex("".join(re.findall(r"[0-9a-f]{2}", dump)))


def decrypt(container: Path, key: bytes, target: Path, size: int | None = None) -> Path:
    """The opened device of ``container`` (its first ``size`` bytes) as the file ``target``
    (what dm-crypt would show): AES-XTS-plain64 over 512-byte sectors after the header.
    Pure Python, ~13 MiB/s: keep test volumes small."""
    dump = luks_dump(container)
    offset = int(re.search(r"offset:\s*(\d+) \[bytes\]", dump).group(1))  # type: ignore[union-attr]
    assert "aes-xts-plain64" in dump and "sector: 512 [bytes]" in dump
    remaining = container.stat().st_size - offset if size is None else size
    with container.open("rb") as src, target.open("wb") as dst:
        src.seek(offset)
        sector = 0
        while remaining > 0 and (chunk := src.read(min(1 << 20, remaining))):
            remaining -= len(chunk)
            out = bytearray()
            for at in range(0, len(chunk), SECTOR):
                tweak = sector.to_bytes(16, "little")
                dec = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
                out += dec.update(chunk[at:at + SECTOR]) + dec.finalize()
                sector += 1
            dst.write(out)
    return target


@contextlib.contextmanager
def loop_device(image: Path, offset: int = 0, size: int | None = None) -> Iterator[str]:
    """Attach bytes [offset, offset+size) of ``image`` read-only to a loop device (tests
    only; LVM's tools want a block device); skips without root or loop devices."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop device")
    if Path(UDEV_CONTROL).exists():
        # lvm2's udev rules would auto-activate the test's volume group on the host (and
        # keep the loop device busy): only where no udev daemon runs (containers, CI)
        pytest.skip("udev runs here: a loop device holding a PV would be auto-activated")
    limit = ["--sizelimit", str(size)] if size is not None else []
    done = run("losetup", "--find", "--show", "--read-only", "--offset", str(offset), *limit,
               image, check=False)
    if done.returncode != 0:
        pytest.skip(f"no loop device: {done.stderr.decode().strip()}")
    device = done.stdout.decode().strip()
    try:
        yield device
    finally:
        run("losetup", "--detach", device, check=False)


def lvm_report(command: str, devices: list[str], *fields: str) -> list[dict[str, str]]:
    """``lvs``/``pvs``/``vgs`` as JSON rows, looking at ``devices`` only."""
    done = run(command, "--devices", ",".join(devices), "--reportformat", "json",
               "--units", "b", "--nosuffix", "-o", ",".join(fields))
    report = json.loads(done.stdout)["report"][0]
    key = {"lvs": "lv", "pvs": "pv", "vgs": "vg"}[command]
    rows: list[dict[str, str]] = report[key]
    return rows
