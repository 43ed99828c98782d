"""The finalize stage end to end: spec in, verified output directory out (the pipeline's
finalize stage runs exactly this function)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from pathlib import Path

import pytest

from imagecomposer.export import Exporter, verify_outputs
from imagecomposer.export.finalize import finalize
from imagecomposer.export.manifest import canonical_json, normalize_spec
from imagecomposer.foundation.digest import recall
from imagecomposer.sign import Signer
from imagecomposer.spec.model import Base, Customizations, Image, Output, Sign, Spec

from .sbom_fixtures import make_lock, make_tree


def test_finalize_publishes_a_verifiable_directory(raw_image: Path, tmp_path: Path) -> None:
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    secret = "$6$salt$" + "s3cr3t" * 10
    spec = Spec(image=Image("edge", Base("debian", "12"), "1.0.0"),
                customizations=Customizations(root_password_hash=secret),
                output=Output(formats=("qcow2", "vhdx"), compression="zstd",
                              sbom=("spdx", "cyclonedx"), sign=Sign(key)))
    assert spec.output.sign is not None
    out = tmp_path / "output/edge"
    lock_file = tmp_path / "lock.json"
    make_lock().write(lock_file)
    result = finalize(raw_image, spec, out, lock=make_lock(), lock_file=lock_file,
                      tree=make_tree(tmp_path / "tree"),
                      signer=Signer.from_spec(spec.output.sign), work_dir=tmp_path)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "SHA256SUMS", "SHA256SUMS.sig", "manifest.json", "manifest.json.sig",
        "edge.qcow2.zst", "edge.qcow2.zst.sig", "edge.vhdx.zst", "edge.vhdx.zst.sig",
        "edge.spdx.json", "edge.spdx.json.sig", "edge.cdx.json", "edge.cdx.json.sig",
        "edge.lock.json", "edge.lock.json.sig", "edge.provenance.intoto.json"])
    assert verify_outputs(out, pub) == (out / "edge.provenance.intoto.json",)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_os"] == {"os": "debian", "version": "12", "type": "minimal"}
    assert manifest["lock_hash"] == make_lock().hash
    assert manifest["sig_alg"] == "ecdsa-p256-sha256" and manifest["image"] == "edge.qcow2.zst"
    assert [a.format for a in result.artifacts] == ["qcow2", "vhdx", "extra", "sbom-spdx",
                                                    "sbom-cyclonedx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp-finalize-")]
    # the spec is stored redacted, and spec_hash is the hash of exactly what is stored
    text = (out / "manifest.json").read_text()
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() not in text
    assert manifest["spec"]["customizations"]["root_password_hash"] == "<redacted>"
    assert manifest["spec_hash"] == hashlib.sha256(
        canonical_json(normalize_spec(spec.to_data())).encode()).hexdigest()
    assert manifest["spec_hash"] != spec.digest()  # never a hash over the secrets
    assert "stage_timings" not in manifest  # a pure function of the inputs (issue 10)


def test_the_manifest_and_the_sboms_hold_the_build_epoch(raw_image: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """``built_at`` was the wall clock: the exporter's epoch now, recorded with its source."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    spec = Spec(image=Image("edge", Base("debian", "12"), "1.0.0"),
                output=Output(formats=("qcow2",), sbom=("spdx", "cyclonedx")))
    out = tmp_path / "out"
    finalize(raw_image, spec, out, lock=make_lock(), tree=make_tree(tmp_path / "tree"),
             work_dir=tmp_path, exporter=Exporter(epoch=1796000000), epoch_source="lock")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["built_at"] == "2026-11-30T00:53:20Z"
    assert (manifest["build_epoch"], manifest["build_epoch_source"]) == (1796000000, "lock")
    spdx = json.loads((out / "edge.spdx.json").read_text())
    cdx = json.loads((out / "edge.cdx.json").read_text())
    assert spdx["creationInfo"]["created"] == cdx["metadata"]["timestamp"] == \
        "2026-11-30T00:53:20Z"


def test_the_raw_image_is_hashed_while_the_formats_convert(raw_image: Path, tmp_path: Path
                                                           ) -> None:
    """The SBOMs need the raw image's SHA256 (a 2 GiB raw: seconds of CPU), which finalize
    computed before converting anything (issue 16): it now runs while qemu-img converts,
    and the SBOMs and SHA256SUMS still name the raw's digest, hashed once."""
    converting = threading.Event()
    hashed: list[str] = []

    class Watched(Exporter):
        def sha256(self, path: Path) -> str:
            hashed.append(path.name)
            if path == raw_image:  # would wait forever if nothing converted meanwhile
                assert converting.wait(timeout=30), "nothing converted while hashing"
            return super().sha256(path)

        def convert(self, raw: Path, fmt: str, out: Path, *, compressed: bool = False,
                    identity: str | None = None) -> Path:
            try:
                return super().convert(raw, fmt, out, compressed=compressed,
                                       identity=identity)
            finally:
                if fmt == "raw":  # copied before the raw was hashed
                    converting.set()

    spec = Spec(image=Image("edge", Base("debian", "12"), "1.0.0"),
                output=Output(formats=("raw", "qcow2"), sbom=("spdx",)))
    out = tmp_path / "out"
    finalize(raw_image, spec, out, lock=make_lock(), tree=make_tree(tmp_path / "tree"),
             work_dir=tmp_path, exporter=Watched())
    digest = hashlib.sha256(raw_image.read_bytes()).hexdigest()
    spdx = (out / "edge.spdx.json").read_text()
    assert digest in spdx
    assert f"{digest}  edge.raw" in (out / "SHA256SUMS").read_text()
    assert hashed.count(raw_image.name) == 1 and "edge.raw" not in hashed  # the copy's is known
    assert recall(out / "edge.raw") == digest  # the image cache does not hash it again
