"""The manifest, signed exports, and `verify_outputs` catching every kind of tampering."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from imagecomposer.compose.layout import Layout, PlannedPartition
from imagecomposer.export import Artifact, Exporter, build_manifest, verify_outputs
from imagecomposer.export.manifest import normalize_spec
from imagecomposer.foundation.errors import ExportError, SigningError
from imagecomposer.sign import Signer

SPEC = {
    "image": {"name": "edge", "version": "1.2.3", "base": {"os": "debian", "version": "12"}},
    "customizations": {"root_password_hash": "$6$salt$hash", "users": [
        {"name": "ops", "password_hash": "$6$x$y", "ssh_keys": ["ssh-ed25519 AAAA ops"]}]},
    "output": {"sign": {"key": Path("keys/sign.pem"), "passphrase_env": "SIGN_PASS"}},
}

LAYOUT = Layout("gpt", 64 << 20, "6f1c1a3e-0000-4000-8000-000000000001", (
    PlannedPartition("esp", "esp", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "vfat", 1 << 20,
                     16 << 20, "6f1c1a3e-0000-4000-8000-000000000002", "ABCD-1234", 1, "/boot"),
    PlannedPartition("root", "root", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "ext4", 17 << 20,
                     46 << 20, "6f1c1a3e-0000-4000-8000-000000000003",
                     "6f1c1a3e-0000-4000-8000-000000000004", 2, "/"),
))


@pytest.fixture
def signer(tmp_path: Path) -> tuple[Signer, Path]:
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    return Signer.from_key_file(key), pub


def manifest_for(artifacts: Sequence[Artifact], directory: Path) -> dict[str, Any]:
    return build_manifest(spec_data=SPEC, artifacts=artifacts, image_name="edge",
                          image_version="1.2.3", base_os={"os": "debian", "version": "12"},
                          lock_hash="11" * 32, layout=LAYOUT, output_dir=directory,
                          min_current_version="1.0.0")


def test_secrets_are_removed_and_spec_normalized() -> None:
    spec = normalize_spec(SPEC)
    text = json.dumps(spec)
    assert "$6$" not in text and "<redacted>" in text
    assert spec["output"]["sign"]["key"] == "keys/sign.pem"
    assert spec["customizations"]["users"][0]["ssh_keys"] == ["ssh-ed25519 AAAA ops"]


def test_signed_export_with_manifest_verifies(raw_image: Path, tmp_path: Path,
                                              signer: tuple[Signer, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sign, pub = signer
    out = tmp_path / "out"
    result = Exporter().export(raw_image, ["qcow2", "vhd"], "none", out, name="edge",
                               signer=sign, manifest=manifest_for)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "SHA256SUMS.sig", "edge.qcow2", "edge.qcow2.sig",
                     "edge.vhd", "edge.vhd.sig", "manifest.json", "manifest.json.sig"]
    manifest = json.loads((out / "manifest.json").read_text())
    qcow2 = result.artifacts[0]
    assert manifest["schema_version"] == 1
    assert manifest["built_at"] == "2023-11-14T22:13:20Z"
    assert manifest["hash"] == qcow2.sha256 and manifest["hash_alg"] == "sha256"
    assert manifest["size_bytes"] == (out / "edge.qcow2").stat().st_size
    assert base64.b64decode(manifest["signature"]) == (out / "edge.qcow2.sig").read_bytes()
    assert manifest["sig_alg"] == "ed25519"
    assert manifest["min_current_version"] == "1.0.0" and manifest["arch"] == "x86_64"
    assert manifest["layout"]["partitions"][1]["partuuid"].endswith("0003")
    assert [a["format"] for a in manifest["artifacts"]] == ["qcow2", "vhd"]
    assert len(manifest["spec_hash"]) == 64 and manifest["lock_hash"] == "11" * 32
    # the private key is nowhere in the outputs
    pem = Path(sign.source).read_bytes()
    raw_key = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    body = b"".join(pem.splitlines()[1:-1])
    for path in out.iterdir():
        assert raw_key not in path.read_bytes() and body not in path.read_bytes()
    verify_outputs(out, pub)
    verify_outputs(out)  # checksums and manifest only
    subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
                    "-in", out / "SHA256SUMS", "-sigfile", out / "SHA256SUMS.sig"], check=True,
                   capture_output=True)


@pytest.fixture
def exported(raw_image: Path, tmp_path: Path, signer: tuple[Signer, Path]) -> tuple[Path, Path]:
    out = tmp_path / "out"
    Exporter().export(raw_image, ["raw"], "none", out, name="edge", signer=signer[0],
                      manifest=manifest_for)
    return out, signer[1]


def flip(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def test_verify_detects_changed_artifact(exported: tuple[Path, Path]) -> None:
    out, pub = exported
    flip(out / "edge.raw", 4096)
    with pytest.raises(ExportError, match=r"edge\.raw: SHA256 mismatch"):
        verify_outputs(out, pub)


def test_verify_detects_resigned_sums(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """Someone rewrites SHA256SUMS and the manifest consistently: only the key catches it."""
    out, pub = exported
    flip(out / "edge.raw", 4096)
    from imagecomposer.export.checksums import write_sums
    from imagecomposer.foundation.digest import sha256_file

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"][0]["sha256"] = sha256_file(out / "edge.raw")
    (out / "manifest.json").write_text(json.dumps(manifest))
    write_sums(out, [p.name for p in out.iterdir() if not p.name.startswith("SHA256SUMS")])
    verify_outputs(out)  # consistent without the key...
    with pytest.raises(SigningError, match=r"edge\.raw\.sig: bad signature"):
        verify_outputs(out, pub)


def test_verify_detects_extra_missing_and_unsigned(exported: tuple[Path, Path]) -> None:
    out, pub = exported
    (out / "intruder").write_text("x")
    with pytest.raises(ExportError, match="intruder: not listed"):
        verify_outputs(out, pub)
    (out / "intruder").unlink()
    (out / "SHA256SUMS.sig").unlink()
    with pytest.raises(SigningError, match=r"SHA256SUMS\.sig is missing"):
        verify_outputs(out, pub)
    (out / "edge.raw").unlink()
    with pytest.raises(ExportError, match="listed in SHA256SUMS but missing"):
        verify_outputs(out, pub)
    with pytest.raises(ExportError, match="no SHA256SUMS"):
        verify_outputs(out.parent, pub)
