"""Checks on a downloaded RPM beyond the SHA256 its signed index promises.

The header signature is checked by ``rpmkeys --checksig`` against a private rpm database
holding only the repository's configured keys (never the host's), with
``_pkgverify_level signature`` so that an unsigned package is an error rather than "digests
OK". A package signed by any other key, or tampered with after signing, fails.
"""

from __future__ import annotations

import logging
from pathlib import Path

from imagecomposer.families.rpm.keys import Keyring
from imagecomposer.foundation import runner
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import ChecksumMismatch, CommandError, SignatureError

log = logging.getLogger("imagecomposer.rpm")


def check_sha256(path: Path, expected: str, *, what: str) -> None:
    """The package store's check (:func:`~imagecomposer.foundation.digest.sha256_file`)."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumMismatch(f"Checksum mismatch: {what}: SHA256 is {actual}, "
                               f"the repository's primary.xml says {expected}")


def check_signature(path: Path, keyring: Keyring, *, what: str) -> None:
    """SignatureError unless ``path`` carries a valid header signature by a key in keyring."""
    rpmkeys = runner.require("rpmkeys", "rpm")
    argv = [rpmkeys, "--dbpath", str(keyring.rpmdb),
            "--define", "_pkgverify_level signature", "--checksig", "-v", str(path)]
    try:
        runner.run(argv, what=f"rpmkeys --checksig {what}")
    except CommandError as exc:
        raise SignatureError(
            f"Signature check failed: {what}: {_reason(exc.stderr_tail)} (keys: "
            f"{', '.join(map(str, keyring.sources))})\n{exc.stderr_tail}") from exc


def _reason(output: str) -> str:
    """Why ``rpmkeys --checksig -v`` failed, in words."""
    lines = output.splitlines()
    if any("NOKEY" in line for line in lines):
        return "signed by a key that is not configured"
    if any(line.rstrip().endswith("BAD") or ": BAD" in line for line in lines):
        return "a signature or digest is BAD (the file was modified after signing)"
    if not any("Signature, key ID" in line for line in lines):
        return "the package is not signed"
    return "signature check failed"
