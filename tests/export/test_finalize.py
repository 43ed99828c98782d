"""The finalize stage end to end: spec in, verified output directory out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from imagecomposer.export import verify_outputs
from imagecomposer.export.finalize import finalize
from imagecomposer.sign import Signer
from imagecomposer.spec.model import Base, Image, Output, Sign, Spec

from .sbom_fixtures import make_lock, make_tree


def test_finalize_publishes_a_verifiable_directory(raw_image: Path, tmp_path: Path) -> None:
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    spec = Spec(image=Image("edge", Base("debian", "12"), "1.0.0"),
                output=Output(formats=("qcow2", "vhdx"), compression="zstd",
                              sbom=("spdx", "cyclonedx"), sign=Sign(key)))
    assert spec.output.sign is not None
    out = tmp_path / "output/edge"
    result = finalize(raw_image, spec, out, spec_data={"image": {"name": "edge"}},
                      lock=make_lock(), tree=make_tree(tmp_path / "tree"),
                      signer=Signer.from_spec(spec.output.sign),
                      stage_timings={"compose": 1.5}, work_dir=tmp_path)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "SHA256SUMS", "SHA256SUMS.sig", "manifest.json", "manifest.json.sig",
        "edge.qcow2.zst", "edge.qcow2.zst.sig", "edge.vhdx.zst", "edge.vhdx.zst.sig",
        "edge.spdx.json", "edge.spdx.json.sig", "edge.cdx.json", "edge.cdx.json.sig"])
    verify_outputs(out, pub)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_os"] == {"os": "debian", "version": "12", "type": "minimal"}
    assert manifest["lock_hash"] == make_lock().hash
    assert manifest["sig_alg"] == "ecdsa-p256-sha256" and manifest["image"] == "edge.qcow2.zst"
    assert [a.format for a in result.artifacts] == ["qcow2", "vhdx", "sbom-spdx",
                                                    "sbom-cyclonedx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sbom-")]
