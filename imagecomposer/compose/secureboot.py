"""Secure Boot signing of EFI binaries with ``osslsigncode``, checked with ``sbverify``
(sbsigntool).

Same binary, key and epoch, same bytes: the Authenticode signature's signing time is the
build epoch (``osslsigncode sign -time``), not the clock (sbsign has no way to set it, so
two builds' signed bootloaders and kernels differed). A binary that is signed already (the
distribution's kernel) gets this signature instead of its own.

The key file is read by the tool, which cannot be given a passphrase without a terminal or
the command line, so an encrypted key is refused here rather than decrypted into a
temporary file: decrypted key material must never land in a workspace.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagecomposer.foundation.epoch import resolve
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


def sign_efi(binary: Path, key: Path, cert: Path, *, out: Path | None = None,
             epoch: int | None = None) -> Path:
    """Sign an EFI binary (PE/COFF) for Secure Boot, signing time ``epoch`` (default: the
    build epoch, :func:`imagecomposer.foundation.epoch.build_epoch`); in place unless
    ``out`` is given."""
    signer = require("osslsigncode", "osslsigncode")
    _check_unencrypted(key)
    when = resolve(epoch)
    target = out if out is not None else binary
    tmp = target.with_name(f".{target.name}.signing{os.getpid()}")
    try:
        run([signer, "sign", "-h", "sha256", "-time", str(when), "-certs", cert, "-key", key,
             "-in", binary, "-out", tmp], what=f"osslsigncode sign {binary.name}")
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
