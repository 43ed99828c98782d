"""Real qemu-img conversions and real compressors; atomic publication of the outputs."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import subprocess
from pathlib import Path

import pytest

from imagecomposer.export import FORMATS, Exporter, check_combination, combination_problems
from imagecomposer.export.formats import MIB
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import ExportError


def qemu_info(path: Path, fmt: str) -> dict[str, object]:
    out = subprocess.run(["qemu-img", "info", "-f", fmt, "--output=json", path], check=True,
                         capture_output=True).stdout
    info: dict[str, object] = json.loads(out)
    return info


QEMU_NAMES = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc", "vhd-fixed": "vpc",
              "vhdx": "vhdx", "vmdk": "vmdk", "vmdk-stream": "vmdk", "vdi": "vdi"}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_converts_and_checks(raw_image: Path, tmp_path: Path, fmt: str) -> None:
    info = FORMATS[fmt]
    out = Exporter().convert(raw_image, fmt, tmp_path / f"out{info.suffix}")
    data = qemu_info(out, QEMU_NAMES[fmt])
    assert data["format"] == QEMU_NAMES[fmt]
    size = raw_image.stat().st_size
    virtual = data["virtual-size"]
    assert isinstance(virtual, int)
    if fmt == "vhd-fixed":
        assert virtual % MIB == 0 and size < virtual < size + MIB
        # Azure: fixed VHD = virtual size + 512-byte footer
        assert out.stat().st_size == virtual + 512
        with out.open("rb") as f:
            f.seek(-512, 2)
            assert f.read(8) == b"conectix"  # the VHD footer
    else:
        assert virtual >= size
    if info.checkable:
        subprocess.run(["qemu-img", "check", out], check=True, capture_output=True)
    if fmt == "vmdk-stream":
        assert "streamOptimized" in json.dumps(data)
    # content survives: convert back to raw and compare the first `size` bytes
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-f", QEMU_NAMES[fmt], "-O", "raw", out, back],
                   check=True)
    with back.open("rb") as b, raw_image.open("rb") as r:
        assert hashlib.sha256(b.read(size)).digest() == hashlib.sha256(r.read()).digest()


def test_qcow2_compressed_is_smaller(raw_image: Path, tmp_path: Path) -> None:
    exporter = Exporter()
    plain = exporter.convert(raw_image, "qcow2", tmp_path / "a.qcow2")
    packed = exporter.convert(raw_image, "qcow2", tmp_path / "b.qcow2", compressed=True)
    subprocess.run(["qemu-img", "check", packed], check=True, capture_output=True)
    assert packed.stat().st_size < plain.stat().st_size
    with pytest.raises(ExportError, match="no internal compression"):
        exporter.convert(raw_image, "vdi", tmp_path / "c.vdi", compressed=True)


def test_conversion_failure_is_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        Exporter().convert(tmp_path / "missing.raw", "qcow2", tmp_path / "x.qcow2")
    with pytest.raises(ExportError, match="unknown output format 'iso'"):
        Exporter().convert(tmp_path / "missing.raw", "iso", tmp_path / "x.iso")


@pytest.mark.parametrize(("compression", "opener"),
                         [("gzip", gzip.open), ("xz", lzma.open), ("zstd", None)])
def test_compression_round_trips(raw_image: Path, tmp_path: Path, compression: str,
                                 opener: object) -> None:
    work = tmp_path / "c.raw"
    work.write_bytes(raw_image.read_bytes())
    digest = sha256_file(work)
    out = Exporter().compress(work, compression)
    assert not work.exists()
    assert out.stat().st_size < raw_image.stat().st_size // 4
    if compression == "zstd":
        subprocess.run(["zstd", "-d", "-q", out, "-o", tmp_path / "d.raw"], check=True)
        restored = (tmp_path / "d.raw").read_bytes()
    else:
        with opener(out, "rb") as f:  # type: ignore[operator]
            restored = f.read()
    assert hashlib.sha256(restored).hexdigest() == digest


def test_gzip_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        (path).mkdir()
        (path / "f").write_bytes(b"x" * 100000)
    Exporter().compress(a / "f", "gzip")
    Exporter().compress(b / "f", "gzip")
    assert (a / "f.gz").read_bytes() == (b / "f.gz").read_bytes()


def test_combinations() -> None:
    check_combination(["raw", "qcow2"], "zstd")
    assert combination_problems(["vhd"], "gzip") == [
        "Invalid combination of compression 'gzip' with format 'vhd'"]
    with pytest.raises(ExportError, match="Invalid combination of compression 'xz' with "
                                          "format 'vhd-fixed'"):
        check_combination(["raw", "vhd-fixed"], "xz")
    assert "unknown compression 'lz4'" in combination_problems(["raw"], "lz4")[0]


def test_export_writes_sums_and_moves_atomically(raw_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sbom = tmp_path / "img.spdx.json"
    sbom.write_text("{}")
    result = Exporter(parallel=2).export(raw_image, ["qcow2", "vhdx", "raw"], "none", out,
                                         extra_files=[sbom], name="img")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "img.qcow2", "img.raw", "img.spdx.json", "img.vhdx"]
    subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out, check=True,
                   capture_output=True)
    assert [a.format for a in result.artifacts] == ["qcow2", "vhdx", "raw", "sbom-spdx"]
    assert {e.kind for e in result.timings} >= {"convert", "checksum", "commit"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_failed_export_leaves_previous_outputs(raw_image: Path, tmp_path: Path,
                                               fake_tool: object) -> None:
    out = tmp_path / "out"
    first = Exporter().export(raw_image, ["qcow2"], "zstd", out, name="img")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"SHA256SUMS", "img.qcow2.zst"}
    # a compressor that fails halfway through writing
    fake_tool("zstd", 'for a; do last="$a"; done; echo partial > "$last"; '  # type: ignore[operator]
                      'echo "zstd: write error" >&2; exit 1')
    with pytest.raises(ExportError, match="zstd compression"):
        Exporter().export(raw_image, ["qcow2", "raw"], "zstd", out, name="img")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".staging" in p.name]
    assert first.sums.is_file()


def test_export_interrupted_cleans_staging(raw_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def interrupt(event: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Exporter(events=interrupt).export(raw_image, ["qcow2"], "none", out)
    assert list(tmp_path.iterdir()) == [raw_image]


def test_export_rejects_bad_requests_before_work(raw_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="Invalid combination of compression 'gzip'"):
        Exporter().export(raw_image, ["vhd"], "gzip", out)
    with pytest.raises(ExportError, match="extra file"):
        Exporter().export(raw_image, ["raw"], "none", out, extra_files=[tmp_path / "nope"])
    assert not out.exists()


def test_conversion_and_hashing_report_progress(tmp_path: Path) -> None:
    """Progress events for the long steps of finalize: bytes converted (qemu-img -p) and
    bytes hashed, each ending at its total (issue 12)."""
    from imagecomposer.foundation.events import Event, Progress

    raw = tmp_path / "big.raw"
    with raw.open("wb") as f:
        f.truncate(160 * MIB)
        for offset in range(0, 160 * MIB, 16 * MIB):
            f.seek(offset)
            f.write(bytes(range(256)) * 256)
    events: list[Event] = []
    Exporter(events=events.append).export(raw, ["qcow2"], "none", tmp_path / "out")
    progress = [e for e in events if isinstance(e, Progress)]
    converting = [e for e in progress if e.what == "converting to qcow2"]
    assert converting and converting[-1].done == converting[-1].total == 160 * MIB
    assert all(e.unit == "bytes" for e in converting)
    hashing = [e for e in progress if e.what == "hashing big.qcow2"]
    assert hashing and hashing[-1].done == hashing[-1].total
    assert [e.done for e in hashing] == sorted(e.done for e in hashing)
    sums = (tmp_path / "out" / "SHA256SUMS").read_text()
    assert sha256_file(tmp_path / "out" / "big.qcow2") in sums  # the known digest, right


def test_hashing_a_large_file_reports_along_the_way(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with path.open("wb") as f:
        f.truncate(150 * MIB)
    seen: list[tuple[int, int]] = []
    assert sha256_file(path, lambda done, total: seen.append((done, total))) == \
        hashlib.sha256(bytes(150 * MIB)).hexdigest()
    assert seen == [(64 * MIB, 150 * MIB), (128 * MIB, 150 * MIB), (150 * MIB, 150 * MIB)]
