"""Secure Boot signing of EFI binaries with ``sbsign``/``sbverify`` (sbsigntool).

sbsign reads the key file itself and cannot be given a passphrase without a terminal, so an
encrypted key is refused here rather than decrypted into a temporary file: decrypted key
material must never land in a workspace.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagecomposer.foundation.errors import CommandError, SigningError
from imagecomposer.foundation.runner import require, run


def _check_unencrypted(key: Path) -> None:
    try:
        head = key.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read Secure Boot key {key}: {exc.strerror}") from None
    if b"ENCRYPTED" in head:
        raise SigningError(f"Secure Boot key {key} is encrypted; sbsign cannot use an "
                           "encrypted key non-interactively")


def sign_efi(binary: Path, key: Path, cert: Path, *, out: Path | None = None) -> Path:
    """Sign an EFI binary (PE/COFF) for Secure Boot; in place unless ``out`` is given."""
    sbsign = require("sbsign", "sbsigntool")
    _check_unencrypted(key)
    target = out if out is not None else binary
    tmp = target.with_name(f".{target.name}.signing{os.getpid()}")
    try:
        run([sbsign, "--key", key, "--cert", cert, "--output", tmp, binary],
            what=f"sbsign {binary.name}")
        tmp.replace(target)
    except CommandError as exc:
        raise SigningError(f"Secure Boot signing of {binary} failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def verify_efi(binary: Path, cert: Path) -> None:
    """Check an EFI binary's Authenticode signature against ``cert``."""
    sbverify = require("sbverify", "sbsigntool")
    try:
        run([sbverify, "--cert", cert, binary], what=f"sbverify {binary.name}")
    except CommandError as exc:
        raise SigningError(f"Secure Boot signature of {binary} does not verify against "
                           f"{cert}: {exc}") from None
