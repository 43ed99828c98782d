"""dm-verity checked offline; the inspect, compare and schema subcommands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imagecomposer.cli.main import main
from imagecomposer.inspect import Image


def test_verity_root_hash_matches_the_data(verity_disk: Path) -> None:
    with Image.open(verity_disk) as image:
        report = image.inspect()
        unchecked = image.inspect(verify_verity=False)
    (verity,) = report.verity
    assert (verity.data_partition, verity.hash_partition) == (2, 3)
    assert verity.status == "verified", verity.detail
    assert verity.superblock is not None and verity.superblock.algorithm == "sha256"
    assert verity.roothash is not None and f"roothash={verity.roothash}" in " ".join(
        report.kernel_cmdline)
    assert unchecked.verity[0].status == "unchecked"
    assert report.hostname == "sealed"  # the sealed root is read like any ext4


def test_changed_data_block_is_a_mismatch(verity_disk: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.raw"
    subprocess.run(["cp", "--sparse=always", verity_disk, tampered], check=True)
    with Image.open(tampered) as image:
        root = image.partition("root")
    with tampered.open("r+b") as handle:  # the ext4 volume name: data, not metadata we read
        handle.seek(root.start + 1024 + 0x78)
        handle.write(b"X")
    with Image.open(tampered) as image:
        (verity,) = image.inspect().verity
    assert verity.status == "mismatch"
    assert verity.detail and "fail" in verity.detail.lower()


def test_cli_inspect_formats(synthetic: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(synthetic), "--format", "json",
                 "--extract-sbom", str(tmp_path / "sbom")]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["hostname"] == "synth" and data["schema_version"] == 1
    assert (tmp_path / "sbom/synthetic.spdx.json").is_file()
    assert "+ debugfs" not in captured.err  # tool lines only at --log-level info
    assert main(["inspect", str(synthetic), "--format", "yaml"]) == 0
    assert "hostname: synth" in capsys.readouterr().out
    assert main(["inspect", str(synthetic)]) == 0
    assert "Partition table: gpt" in capsys.readouterr().out


def test_cli_compare_and_schema(synthetic: Path, variant: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(synthetic), str(variant), "--mode", "packages",
                 "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "different" and data["summary"]["packages_added"] == 1
    assert main(["compare", str(synthetic), str(synthetic)]) == 0
    assert "Verdict: identical" in capsys.readouterr().out
    assert main(["schema", "--inspect"]) == 0
    assert json.loads(capsys.readouterr().out)["title"].startswith("imagecomposer inspect")
    assert main(["schema", "--compare"]) == 0
    assert "CompareReport" in json.loads(capsys.readouterr().out)["$defs"]
