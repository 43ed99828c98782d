"""Signed provenance (issue 10): finalize writes NAME.provenance.intoto.json when it signs;
it names every output and the build's inputs, verifies independently with openssl, is the
same bytes for the same inputs, and any one-byte change of an output or of an envelope
fails verification, naming what changed."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest

from imagecomposer.export import Exporter, verify_outputs
from imagecomposer.export.finalize import finalize
from imagecomposer.export.provenance import (
    BUILDER_ID,
    builder_id,
    slsa_predicate,
    verify_provenance,
)
from imagecomposer.foundation.errors import ExportError, SigningError
from imagecomposer.lock import LockedRepository, SignedIndex
from imagecomposer.sign import Signer
from imagecomposer.sign.dsse import envelope_line, sign_envelope
from imagecomposer.sign.keys import load_public_key
from imagecomposer.spec.model import Base, Customizations, Image, Output, Sign, Spec

from .sbom_fixtures import make_lock, make_tree

SECRET = "$6$salt$" + "pr0v3nance" * 8
EPOCH = 1796000000
PROVENANCE = "edge.provenance.intoto.json"


def ed25519_key(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key, pub = directory / "k.pem", directory / "k.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    return key, pub


def build(raw: Path, tmp: Path, out: Path, key: Path | None) -> Path:
    spec = Spec(image=Image("edge", Base("debian", "12"), "1.0.0"),
                customizations=Customizations(root_password_hash=SECRET),
                output=Output(formats=("raw", "qcow2"), sbom=("spdx", "cyclonedx"),
                              sign=Sign(key) if key is not None else None))
    lock_file = tmp / "lock.json"
    make_lock().write(lock_file)
    work = tmp / f"work-{out.name}"
    work.mkdir(parents=True, exist_ok=True)
    finalize(raw, spec, out, lock=make_lock(), lock_file=lock_file,
             tree=make_tree(tmp / "tree") if not (tmp / "tree").exists() else tmp / "tree",
             signer=Signer.from_spec(spec.output.sign) if spec.output.sign else None,
             work_dir=work, exporter=Exporter(epoch=EPOCH), epoch_source="lock",
             configuration={"provider": {"mirror": "auto", "keyring": {"sha256": "ab" * 32}}})
    return out


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(output directory, public key, its private key), built once for the module."""
    tmp = tmp_path_factory.mktemp("provenance")
    key, pub = ed25519_key(tmp / "key")
    raw = tmp / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(b"imagecomposer provenance test\n" * 1000)
    return build(raw, tmp, tmp / "out", key), pub, key


def envelopes(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    assert lines and all(line.strip() for line in lines)
    return [json.loads(line) for line in lines]


def statement_of(envelope: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return data


def test_the_provenance_names_every_output_and_the_builds_inputs(
        signed: tuple[Path, Path, Path]) -> None:
    out, pub, _ = signed
    assert verify_outputs(out, pub) == (out / PROVENANCE,)
    lines = envelopes(out / PROVENANCE)
    statements = [statement_of(e) for e in lines]
    assert [s["predicateType"] for s in statements] == [
        "https://slsa.dev/provenance/v1", "https://spdx.dev/Document",
        "https://cyclonedx.org/bom"]
    assert {s["_type"] for s in statements} == {"https://in-toto.io/Statement/v1"}
    assert {e["payloadType"] for e in lines} == {"application/vnd.in-toto+json"}
    slsa = statements[0]
    # subjects: every file but the provenance and what is written after it (SHA256SUMS lists it)
    files = {p.name for p in out.iterdir()} - {PROVENANCE, "SHA256SUMS", "SHA256SUMS.sig"}
    assert {s["name"] for s in slsa["subject"]} == files
    assert {"edge.raw", "edge.qcow2", "manifest.json", "edge.lock.json", "edge.spdx.json",
            "edge.raw.sig"} <= files
    for subject in slsa["subject"]:
        assert subject["digest"] == {
            "sha256": hashlib.sha256((out / subject["name"]).read_bytes()).hexdigest()}
    sums = (out / "SHA256SUMS").read_text()
    assert PROVENANCE in sums  # removing or changing it fails the checksum check
    # the SBOM attestations: the documents as published, about the disk images
    assert statements[1]["predicate"] == json.loads((out / "edge.spdx.json").read_text())
    assert statements[2]["predicate"] == json.loads((out / "edge.cdx.json").read_text())
    assert {s["name"] for s in statements[1]["subject"]} == {"edge.raw", "edge.qcow2"}

    definition = slsa["predicate"]["buildDefinition"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert definition["buildType"].startswith("urn:imagecomposer:")
    assert definition["externalParameters"]["spec"] == manifest["spec"]
    assert definition["externalParameters"]["specDigest"] == {"sha256": manifest["spec_hash"]}
    internal = definition["internalParameters"]
    lock = make_lock()
    assert internal["lock"]["digest"] == {"sha256": lock.hash}
    assert internal["lock"]["digest"]["sha256"] == hashlib.sha256(
        (out / "edge.lock.json").read_bytes()).hexdigest()
    assert (internal["buildEpoch"], internal["buildEpochSource"]) == (EPOCH, "lock")
    assert internal["configuration"]["provider"]["mirror"] == "auto"
    deps = definition["resolvedDependencies"]
    packages = {(d["uri"], d.get("digest", {}).get("sha256")) for d in deps}
    assert {(p.url, p.sha256) for p in lock.packages} <= packages
    assert {d["uri"] for d in deps if "digest" not in d} == {r.url for r in lock.repositories}
    run = slsa["predicate"]["runDetails"]
    assert run["builder"]["id"] and run["builder"]["version"]["imagecomposer"]
    text = (out / PROVENANCE).read_text() + "".join(
        base64.b64decode(e["payload"]).decode() for e in lines)
    assert SECRET not in text and "<redacted>" in text  # secrets never reach it
    assert "startedOn" not in text and "finishedOn" not in text  # no wall clock


def test_openssl_verifies_every_envelope_over_the_specs_pae(
        signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Independent of our code: PAE written out per the DSSE spec, the signature checked by
    openssl, the key id recomputed by openssl from the public key."""
    out, pub, _ = signed
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", pub, "-outform", "DER"],
                         check=True, capture_output=True).stdout
    for number, envelope in enumerate(envelopes(out / PROVENANCE)):
        kind = envelope["payloadType"].encode()
        body = base64.b64decode(envelope["payload"])
        message = tmp_path / f"pae{number}"
        message.write_bytes(b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" "
                            + str(len(body)).encode() + b" " + body)
        (signature,) = envelope["signatures"]
        assert signature["keyid"] == hashlib.sha256(der).hexdigest()
        sig = tmp_path / f"sig{number}"
        sig.write_bytes(base64.b64decode(signature["sig"]))
        verify = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
                  "-sigfile", str(sig), "-in"]
        assert subprocess.run([*verify, str(message)], capture_output=True).returncode == 0
        message.write_bytes(message.read_bytes()[:-1] + b" ")  # a changed statement fails
        assert subprocess.run([*verify, str(message)], capture_output=True).returncode != 0


def test_a_one_byte_change_of_any_output_fails_naming_the_file(
        signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    out, pub, _ = signed
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    key = load_public_key(pub)
    subjects = [s["name"] for s in statement_of(envelopes(copy / PROVENANCE)[0])["subject"]]
    assert len(subjects) > 10
    for name in subjects:
        path = copy / name
        original = path.read_bytes()
        at = len(original) // 2
        path.write_bytes(original[:at] + bytes([original[at] ^ 1]) + original[at + 1:])
        try:
            # the provenance's own check, as if SHA256SUMS had been rewritten to match
            assert verify_provenance(copy / PROVENANCE, key) == \
                [f"{name}: SHA256 differs from the provenance"]
            with pytest.raises(ExportError, match=rf"\b{name}: SHA256 mismatch"):
                verify_outputs(copy, pub)
        finally:
            path.write_bytes(original)
    verify_outputs(copy, pub)
    (copy / "edge.qcow2").unlink()
    assert verify_provenance(copy / PROVENANCE, key) == [
        "edge.qcow2: in the provenance but missing"]


def test_a_tampered_envelope_fails(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    out, pub, _ = signed
    key = load_public_key(pub)
    path = tmp_path / PROVENANCE
    lines = (out / PROVENANCE).read_text().splitlines(keepends=True)
    # a subject digest replaced in the signed statement (the signature left as it was)
    first = json.loads(lines[0])
    statement = statement_of(first)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    first["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(first) + "\n" + "".join(lines[1:]))
    with pytest.raises(SigningError, match=rf"{PROVENANCE} line 1: bad signature"):
        verify_provenance(path, key)
    # one byte of the signature of the third line
    third = json.loads(lines[2])
    sig = bytearray(base64.b64decode(third["signatures"][0]["sig"]))
    sig[0] ^= 1
    third["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text("".join(lines[:2]) + json.dumps(third) + "\n")
    with pytest.raises(SigningError, match=rf"{PROVENANCE} line 3: bad signature"):
        verify_provenance(path, key)
    # another key's envelopes, in the output directory: verify refuses them
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    other_key, _ = ed25519_key(tmp_path / "other")
    other = Signer.from_key_file(other_key)
    forged = "".join(envelope_line(sign_envelope(other, base64.b64decode(e["payload"])))
                     for e in envelopes(copy / PROVENANCE))
    (copy / PROVENANCE).write_text(forged)
    with pytest.raises(SigningError, match="bad signature"):
        verify_provenance(copy / PROVENANCE, key)


def test_same_inputs_give_the_same_provenance_bytes(
        signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Ed25519 is deterministic and nothing in a statement depends on the clock, the
    directories or the run: another finalize elsewhere writes the same bytes."""
    out, _, key = signed
    raw = tmp_path / "elsewhere.raw"
    shutil.copyfile(out / "edge.raw", raw)
    again = build(raw, tmp_path, tmp_path / "again", key)
    assert (again / PROVENANCE).read_bytes() == (out / PROVENANCE).read_bytes()
    assert (again / "SHA256SUMS").read_bytes() == (out / "SHA256SUMS").read_bytes()


def test_no_signing_key_no_provenance(signed: tuple[Path, Path, Path],
                                      tmp_path: Path) -> None:
    """An unsigned statement proves nothing: without output.sign there is none."""
    out, _, _ = signed
    raw = tmp_path / "disk.raw"
    shutil.copyfile(out / "edge.raw", raw)
    unsigned = build(raw, tmp_path, tmp_path / "unsigned", None)
    assert not list(unsigned.glob("*.intoto.json"))
    assert verify_outputs(unsigned) == ()


def test_each_repository_is_listed_with_the_digest_of_its_signed_index() -> None:
    """resolvedDependencies names the signed index each repository's packages were verified
    with (the lock's ``signed_index``): its URL and SHA-256; a repository without one (a
    local directory, a lock older than the field) by its URL alone."""
    digest = hashlib.sha256(b"InRelease bytes").hexdigest()
    lock = make_lock()
    signed_repo = attrs.evolve(lock.repositories[0],
                               signed_index=SignedIndex("dists/bookworm/InRelease", digest))
    local = LockedRepository("local", "file:///srv/repo", "deb", trusted=True)
    lock = attrs.evolve(lock, repositories=(signed_repo, local))

    predicate = slsa_predicate(spec_data={}, lock=lock, epoch=EPOCH, epoch_source="lock")

    deps = predicate["buildDefinition"]["resolvedDependencies"]
    assert deps[0] == {
        "name": "main", "uri": "http://deb.invalid/debian/dists/bookworm/InRelease",
        "digest": {"sha256": digest},
        "annotations": {"kind": "deb", "suite": "bookworm", "components": ["main"],
                        "metadataDate": None, "trusted": False,
                        "repository": "http://deb.invalid/debian",
                        "signedIndex": "dists/bookworm/InRelease"}}
    assert deps[1]["uri"] == "file:///srv/repo" and "digest" not in deps[1]


def test_the_builder_is_the_only_part_that_names_where_it_ran() -> None:
    """A local build's builder id is the same as before cluster workers existed; a worker's
    build names the worker (a valid URN: unsafe characters percent-encoded), and nothing
    else of the predicate depends on it."""
    assert builder_id(None) == BUILDER_ID == "urn:imagecomposer:builder:local"
    assert builder_id("imagecomposer@build-3.lab") == \
        "urn:imagecomposer:builder:worker:imagecomposer@build-3.lab"
    assert builder_id("w 1/x?y") == "urn:imagecomposer:builder:worker:w%201%2Fx%3Fy"
    here = slsa_predicate(spec_data={}, lock=make_lock(), epoch=EPOCH, epoch_source="lock")
    there = slsa_predicate(spec_data={}, lock=make_lock(), epoch=EPOCH, epoch_source="lock",
                           builder=builder_id("w1"))
    assert here["runDetails"]["builder"]["id"] == BUILDER_ID
    assert there["runDetails"]["builder"]["id"] == "urn:imagecomposer:builder:worker:w1"
    there["runDetails"]["builder"]["id"] = BUILDER_ID
    assert there == here
