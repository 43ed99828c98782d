"""Signed provenance: ``NAME.provenance.intoto.json``, in-toto attestations in DSSE envelopes.

The file holds one DSSE envelope per line (JSON Lines), each carrying an in-toto Statement
v1 (https://in-toto.io/Statement/v1) signed with the spec's signing key (``output.sign``):

1. SLSA Provenance v1 (https://slsa.dev/provenance/v1). Subjects: every file of the output
   directory written before it (images, SBOMs, lock, manifest, detached signatures) with its
   SHA-256; not ``SHA256SUMS`` and its signature, written after it (they list the provenance
   file). ``buildDefinition``: the spec with its secrets redacted and its digest (as the
   manifest holds them), the lock's digest, the build epoch, the configuration that
   affected the build, and as ``resolvedDependencies`` every package of the lock (URL and
   SHA-256) and every repository (suite, the date of its signed metadata, and the URL and
   SHA-256 of the signed index it used: ``InRelease``/``Release`` or ``repomd.xml``, as the
   lock records it). ``runDetails``: the builder and its version; no start or finish time
   (see below). The builder is ``urn:imagecomposer:builder:local`` for a local build and
   names the worker for a cluster build (:func:`builder_id`): the one part of the outputs
   that says where they were built, not what they were built from.
2. One attestation per SBOM (predicate types ``https://spdx.dev/Document`` and
   ``https://cyclonedx.org/bom``), the SBOM document as predicate and the disk images as
   subjects.

Same inputs, same bytes: statements are canonical JSON (sorted keys, no spaces), there is no
random id and no wall clock. SLSA's ``startedOn``/``finishedOn`` are left out, since the
only clock of a build is its epoch (docs/reproducibility.md), which is not when it ran; the
epoch is in ``internalParameters``. With Ed25519 or RSA PKCS#1 v1.5 keys the envelopes are
byte-identical too (ECDSA signatures are randomized).

Without a signing key there is no provenance file: an unsigned statement proves nothing a
consumer could not compute from the files themselves.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imagecomposer import __version__
from imagecomposer.export.exporter import Artifact
from imagecomposer.export.manifest import build_time, canonical_json, iso, normalize_spec
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import SigningError
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.lock import Lock, LockedRepository
from imagecomposer.sign.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    envelope_line,
    open_envelope,
    sign_envelope,
)
from imagecomposer.sign.keys import PublicKey
from imagecomposer.sign.signer import Signer

SUFFIX = ".provenance.intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
SBOM_PREDICATES = {"sbom-spdx": "https://spdx.dev/Document",
                   "sbom-cyclonedx": "https://cyclonedx.org/bom"}
# ours: the project has no web home yet, so URNs (valid URIs, never resolved)
BUILD_TYPE = "urn:imagecomposer:build-type:image:v1"
BUILDER_ID = "urn:imagecomposer:builder:local"
WORKER_BUILDER = "urn:imagecomposer:builder:worker:"  # + the worker's name
# files written after the provenance (they list it): never subjects
AFTER = frozenset({"SHA256SUMS", "SHA256SUMS.sig"})


def builder_id(worker: str | None) -> str:
    """``runDetails.builder.id``: :data:`BUILDER_ID` for a local build, the worker's name
    (percent-encoded where a URN needs it) for a build on a cluster worker."""
    if worker is None:
        return BUILDER_ID
    return WORKER_BUILDER + urllib.parse.quote(worker, safe="@.-_~")


def provenance_name(image_name: str) -> str:
    return image_name + SUFFIX


def statement(subjects: Mapping[str, str], predicate_type: str,
              predicate: Mapping[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1; ``subjects`` maps file names to SHA-256 hex digests."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": name, "digest": {"sha256": digest}}
                        for name, digest in sorted(subjects.items())],
            "predicateType": predicate_type, "predicate": dict(predicate)}


def repository(repo: LockedRepository) -> dict[str, Any]:
    """A repository as a resolved dependency: with the signed index the build used (its
    ``InRelease``/``Release`` or ``repomd.xml``), that file's URL and SHA-256; a repository
    without one (a local directory, a lock older than the field) by its URL alone."""
    annotations = {"kind": repo.kind, "suite": repo.suite, "components": list(repo.components),
                   "metadataDate": repo.date, "trusted": repo.trusted}
    if repo.signed_index is None:
        return {"name": repo.name, "uri": repo.url, "annotations": annotations}
    return {"name": repo.name,
            "uri": repo.url.rstrip("/") + "/" + repo.signed_index.path.lstrip("/"),
            "digest": {"sha256": repo.signed_index.sha256},
            "annotations": {**annotations, "repository": repo.url,
                            "signedIndex": repo.signed_index.path}}


def slsa_predicate(*, spec_data: Mapping[str, Any], lock: Lock | None, epoch: int,
                   epoch_source: str | None,
                   configuration: Mapping[str, Any] | None = None,
                   builder: str = BUILDER_ID) -> dict[str, Any]:
    """The SLSA Provenance v1 predicate of a build (no wall clock, no random id);
    ``builder`` (:func:`builder_id`) is the only part that depends on where it ran."""
    spec = normalize_spec(spec_data)
    internal: dict[str, Any] = {
        "buildEpoch": epoch, "buildEpochTime": iso(build_time(epoch)),
        "buildEpochSource": epoch_source,
        "configuration": json.loads(canonical_json(configuration or {})),
        "lock": ({"digest": {"sha256": lock.hash}, "format": lock.format}
                 if lock is not None else None),
    }
    dependencies: list[dict[str, Any]] = []
    if lock is not None:
        dependencies += [repository(r) for r in lock.repositories]
        dependencies += [
            {"name": p.name, "uri": p.url, "digest": {"sha256": p.sha256},
             "annotations": {"version": p.version, "arch": p.arch, "repository": p.repository,
                             "kind": p.kind}}
            for p in lock.packages]
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "spec": spec,
                "specDigest": {"sha256": hashlib.sha256(canonical_json(spec).encode())
                               .hexdigest()}},
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": builder, "version": {"imagecomposer": __version__}},
        },
    }


def write_provenance(directory: Path, image_name: str, signer: Signer, *,
                     artifacts: Sequence[Artifact], predicate: Mapping[str, Any]) -> Path:
    """Write ``NAME.provenance.intoto.json`` into ``directory``: the SLSA statement over
    every file there, then one statement per SBOM artifact; each line a signed envelope."""
    out = directory / provenance_name(image_name)
    known = {a.name: a.sha256 for a in artifacts}
    subjects = {p.name: known.get(p.name) or sha256_file(p)
                for p in sorted(directory.iterdir())
                if p.is_file() and p.name != out.name and p.name not in AFTER}
    images = {a.name: a.sha256 for a in artifacts
              if not a.format.startswith(("sbom", "manifest", "extra"))}
    statements = [statement(subjects, SLSA_PROVENANCE, predicate)]
    for artifact in artifacts:
        if artifact.format in SBOM_PREDICATES:
            document = json.loads((directory / artifact.name).read_text())
            statements.append(statement(images, SBOM_PREDICATES[artifact.format], document))
    lines = [envelope_line(sign_envelope(signer, canonical_json(s).encode()))
             for s in statements]
    atomic_write(out, "".join(lines))
    return out


def read_statements(path: Path, key: PublicKey) -> list[dict[str, Any]]:
    """Every statement of a provenance file, each envelope checked against ``key``."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningError(f"cannot read provenance {path}: {exc}") from None
    if not any(line.strip() for line in lines):
        raise SigningError(f"{path.name}: empty provenance file")
    statements = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        what = f"{path.name} line {number}"
        try:
            envelope = json.loads(line)
        except ValueError:
            raise SigningError(f"{what}: not JSON") from None
        payload_type, payload = open_envelope(envelope, key, what=what)
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise SigningError(f"{what}: payload type {payload_type!r} is not in-toto")
        try:
            data = json.loads(payload)
        except ValueError:
            raise SigningError(f"{what}: the signed payload is not JSON") from None
        if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
            raise SigningError(f"{what}: not an in-toto Statement v1")
        statements.append(data)
    return statements


def verify_provenance(path: Path, key: PublicKey) -> list[str]:
    """Check a provenance file: every envelope's signature with ``key`` (SigningError), and
    every subject against the file of that name next to it: the problems, one per file."""
    statements = read_statements(path, key)
    if statements[0].get("predicateType") != SLSA_PROVENANCE:
        raise SigningError(f"{path.name}: the first statement is not SLSA provenance")
    problems: dict[str, str] = {}
    for data in statements:
        for subject in data.get("subject") or []:
            name = str(subject.get("name")) if isinstance(subject, dict) else ""
            digest = (subject.get("digest") or {}).get("sha256") if name else None
            target = path.parent / name
            if not name or "/" in name or name in (".", "..") or not isinstance(digest, str):
                problems.setdefault(name or "?", f"{path.name}: malformed subject {subject!r}")
            elif not target.is_file():
                problems.setdefault(name, f"{name}: in the provenance but missing")
            elif name not in problems and sha256_file(target) != digest.lower():
                problems[name] = f"{name}: SHA256 differs from the provenance"
    return [problems[name] for name in sorted(problems)]

