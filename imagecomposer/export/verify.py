"""``imagecomposer verify``: check an output directory the way a consumer would.

Four independent checks, all of which must pass: every file listed in ``SHA256SUMS`` has
that hash and no unlisted file is present; every artifact the manifest lists has the
recorded size and hash; with the public key, every ``.sig`` verifies (and ``SHA256SUMS.sig``
must exist), and so does the provenance (``NAME.provenance.intoto.json``): every DSSE
envelope's signature, every subject's SHA-256 against the file of that name. The provenance
is listed in ``SHA256SUMS`` like every output, so removing it fails the first check.
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.export.checksums import SUMS, read_sums
from imagecomposer.export.manifest import MANIFEST, read_manifest
from imagecomposer.export.provenance import SUFFIX, verify_provenance
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import ExportError, SigningError
from imagecomposer.sign.keys import load_public_key
from imagecomposer.sign.signer import verify_signature


def verify_outputs(output_dir: Path, public_key: Path | None = None) -> tuple[Path, ...]:
    """Raise ExportError (checksums, manifest, provenance subjects) or SigningError
    (signatures) on the first kind of problem found, listing every file with that problem.
    Returns the provenance files verified (none without ``public_key``)."""
    sums_path = output_dir / SUMS
    if not sums_path.is_file():
        raise ExportError(f"{output_dir}: no {SUMS}")
    sums = read_sums(sums_path)
    present = {p.name for p in output_dir.iterdir() if p.is_file()}
    problems: list[str] = []
    for name, digest in sorted(sums.items()):
        if name not in present:
            problems.append(f"{name}: listed in {SUMS} but missing")
        elif sha256_file(output_dir / name) != digest:
            problems.append(f"{name}: SHA256 mismatch")
    for name in sorted(present - set(sums) - {SUMS, SUMS + ".sig"}):
        problems.append(f"{name}: not listed in {SUMS}")
    manifest_path = output_dir / MANIFEST
    if manifest_path.is_file():
        for artifact in read_manifest(manifest_path).get("artifacts", []):
            path = output_dir / str(artifact.get("name"))
            if not path.is_file():
                problems.append(f"{path.name}: in the manifest but missing")
            elif (path.stat().st_size != artifact.get("size")
                  or sha256_file(path) != artifact.get("sha256")):
                problems.append(f"{path.name}: does not match the manifest")
    if problems:
        raise ExportError(f"verification of {output_dir} failed:\n  " + "\n  ".join(problems))
    if public_key is None:
        return ()
    key = load_public_key(public_key)
    if SUMS + ".sig" not in present:
        raise SigningError(f"{output_dir}: {SUMS}.sig is missing")
    bad: list[str] = []
    for name in sorted(n for n in present if n.endswith(".sig")):
        target = output_dir / name.removesuffix(".sig")
        if not target.is_file():
            bad.append(f"{name}: signs a missing file")
            continue
        try:
            verify_signature(target, (output_dir / name).read_bytes(), key)
        except SigningError:
            bad.append(f"{name}: bad signature")
    if bad:
        raise SigningError(f"signature check of {output_dir} failed:\n  " + "\n  ".join(bad))
    provenance = tuple(output_dir / n for n in sorted(present) if n.endswith(SUFFIX))
    for path in provenance:
        mismatched = verify_provenance(path, key)
        if mismatched:
            raise ExportError(f"provenance check of {output_dir} failed ({path.name}):\n  "
                              + "\n  ".join(mismatched))
    return provenance
