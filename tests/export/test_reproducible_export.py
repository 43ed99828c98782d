"""The same raw disk and epoch give the same bytes in every format and compression, whenever
the conversion runs; the ids in vhd/vhdx/vmdk/vdi headers are derived (valid files that
qemu-img checks, reads back and can still write), and differ between different disks."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from imagecomposer.export import Exporter, headers
from imagecomposer.export.formats import FORMATS
from imagecomposer.foundation.epoch import DEFAULT_EPOCH

M = 1 << 20


def make_raw(path: Path, salt: bytes = b"") -> Path:
    """A 64 MiB sparse disk with 3 MiB of data at two places (no GPT needed)."""
    with path.open("wb") as handle:
        handle.truncate(64 * M)
        for offset in (M, 40 * M):
            handle.seek(offset)
            block = hashlib.sha256(salt + offset.to_bytes(8, "little")).digest()
            handle.write(block * (3 * M // 2 // 32))
    return path


@pytest.fixture
def raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return make_raw(tmp_path / "disk.raw")


def convert_all(raw: Path, out: Path, **kw: object) -> dict[str, bytes]:
    out.mkdir()
    exporter = Exporter(parallel=1, **kw)  # type: ignore[arg-type]
    return {fmt: exporter.convert(raw, fmt, out / f"disk{info.suffix}").read_bytes()
            for fmt, info in FORMATS.items()}


def test_every_format_is_identical_when_converted_again_later(raw: Path,
                                                             tmp_path: Path) -> None:
    first = convert_all(raw, tmp_path / "a")
    time.sleep(1.1)  # vhd records the creation time in seconds
    second = convert_all(raw, tmp_path / "b")
    differing = [fmt for fmt in FORMATS if first[fmt] != second[fmt]]
    assert differing == []


def qemu_img(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *map(str, argv)], capture_output=True, text=True)


@pytest.mark.parametrize("fmt", sorted(headers.STAMPED))
def test_stamped_files_are_valid_and_hold_the_disk(raw: Path, tmp_path: Path,
                                                   fmt: str) -> None:
    info = FORMATS[fmt]
    out = Exporter().convert(raw, fmt, tmp_path / f"disk{info.suffix}")
    if info.checkable:
        assert qemu_img("check", "-f", info.qemu_format, out).returncode == 0
    compared = qemu_img("compare", "-f", "raw", "-F", info.qemu_format, raw, out)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    if fmt in ("vhdx", "vdi", "vmdk", "vhd"):  # still writable by qemu after the rewrite
        subprocess.run(["qemu-io", "-f", info.qemu_format, "-c", "write -P 0xab 0 64k", out],
                       check=True, capture_output=True)
        read = subprocess.run(["qemu-io", "-f", info.qemu_format, "-c",
                               "read -P 0xab 0 64k", out], capture_output=True, text=True)
        assert "Pattern verification failed" not in read.stdout and read.returncode == 0
        if info.checkable:
            assert qemu_img("check", "-f", info.qemu_format, out).returncode == 0


def ids(path: Path, fmt: str) -> bytes:
    data = path.read_bytes()
    if fmt in ("vhd", "vhd-fixed"):
        return data[-512 + 68:-512 + 84]
    if fmt == "vhdx":
        return data[64 * 1024 + 16:64 * 1024 + 48]
    if fmt == "vdi":
        return data[392:424]
    return data[512:1024]  # the vmdk descriptor with its CID


def test_different_disks_get_different_ids_and_the_epoch_is_the_vhd_time(
        raw: Path, tmp_path: Path) -> None:
    other = make_raw(tmp_path / "other.raw", salt=b"other")
    for fmt in sorted(headers.STAMPED):
        suffix = FORMATS[fmt].suffix
        one = Exporter().convert(raw, fmt, tmp_path / f"one{suffix}")
        two = Exporter().convert(other, fmt, tmp_path / f"two{suffix}")
        assert ids(one, fmt) != ids(two, fmt), fmt
    later = Exporter(epoch=DEFAULT_EPOCH + 3600).convert(raw, "vhd", tmp_path / "later.vhd")
    footer = later.read_bytes()[-512:]
    assert struct.unpack_from(">I", footer, 24)[0] == DEFAULT_EPOCH + 3600 - headers.VHD_EPOCH
    assert headers.vhd_checksum(footer) == struct.unpack_from(">I", footer, 64)[0]
    assert footer[:512] == later.read_bytes()[:512]  # the dynamic disk's copy matches


def test_vhdx_log_is_empty_and_header_checksums_hold(raw: Path, tmp_path: Path) -> None:
    data = Exporter().convert(raw, "vhdx", tmp_path / "d.vhdx").read_bytes()
    for at in headers.HEADERS:
        header = bytearray(data[at:at + headers.HEADER_SIZE])
        stored = struct.unpack_from("<I", header, 4)[0]
        struct.pack_into("<I", header, 4, 0)
        assert headers.crc32c(bytes(header)) == stored
        assert header[48:64] == bytes(16)  # LogGuid: no log to replay
    log_length, log_offset = struct.unpack_from("<IQ", data, 64 * 1024 + 68)
    assert data[log_offset:log_offset + log_length] == bytes(log_length)
    page83 = headers.derived_uuid(hashlib.sha256(raw.read_bytes()).hexdigest(), "vhdx",
                                  "page83")
    assert data.count(page83.bytes_le) == 1


def test_crc32c_and_derived_ids() -> None:
    assert headers.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    one = headers.derived_uuid("a" * 64, "vdi", "image")
    assert one == headers.derived_uuid("a" * 64, "vdi", "image")
    assert one.version == 5 and one != headers.derived_uuid("b" * 64, "vdi", "image")
    assert headers.derived_cid("a" * 64) not in ("ffffffff", "fffffffe")
    assert isinstance(one, uuid.UUID)


@pytest.mark.parametrize("compression", ["gzip", "xz", "zstd"])
def test_compressed_outputs_do_not_depend_on_time_or_name(raw: Path, tmp_path: Path,
                                                           compression: str) -> None:
    outputs = []
    for name in ("first", "second"):
        copy = tmp_path / name / "disk.raw"
        copy.parent.mkdir()
        copy.write_bytes(raw.read_bytes())
        os.utime(copy, (time.time() + len(outputs) * 3600,) * 2)
        outputs.append(Exporter().compress(copy, compression).read_bytes())
    assert outputs[0] == outputs[1]


def test_export_twice_gives_identical_files_and_sums(raw: Path, tmp_path: Path) -> None:
    sums = []
    for name in ("a", "b"):
        result = Exporter().export(raw, ["raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi"], "none",
                                   tmp_path / name, name="disk")
        sums.append((result.output_dir / "SHA256SUMS").read_text())
        time.sleep(1.1)
    assert sums[0] == sums[1]
    raw_line = f"{hashlib.sha256(raw.read_bytes()).hexdigest()}  disk.raw"
    assert raw_line in sums[0]  # the raw's digest, computed once, is the raw copy's


@pytest.mark.parametrize("written", ["569a1898", "9a1898", "0"])
def test_vmdk_cid_of_any_length_becomes_eight_digits(tmp_path: Path, written: str) -> None:
    """qemu writes the random CID without leading zeros (1 file in 16 had 7 digits)."""
    raw = make_raw(tmp_path / "disk.raw")
    out = Exporter().convert(raw, "vmdk", tmp_path / "disk.vmdk")
    data = bytearray(out.read_bytes())
    at = data.index(b"\nCID=") + 5
    end = data.index(b"\n", at)
    text_end = data.index(b"\0", at)
    data[at:text_end] = (written.encode() + data[end:text_end]).ljust(text_end - at, b"\0")
    out.write_bytes(bytes(data))
    headers.stamp(out, "vmdk", identity="a" * 64, epoch=DEFAULT_EPOCH)
    descriptor = out.read_bytes()[512:1536]
    assert f"\nCID={headers.derived_cid('a' * 64)}\nparentCID=ffffffff\n".encode() in descriptor
    compared = qemu_img("compare", "-f", "raw", "-F", "vmdk", raw, out)
    assert compared.returncode == 0, compared.stdout + compared.stderr
