"""Secure Boot signing hook for the boot chain (bootloader, kernel).

``sign_efi`` is the one place compose signs an EFI binary. It prefers the Signer
(``imagecomposer.sign.sign_efi``) when that module is present and falls back to ``sbsign``
through the runner, so the boot chain is signed the same way in both cases: in place, via a
temporary file, never leaving a half-signed binary.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from imagecomposer import runner
from imagecomposer.errors import SigningError


def sign_efi(path: Path, key: Path, cert: Path) -> None:
    """Sign the PE/COFF binary ``path`` in place with the db ``key``/``cert``."""
    try:
        signer = importlib.import_module("imagecomposer.sign")
    except ImportError:
        signer = None
    if signer is not None and hasattr(signer, "sign_efi"):
        signer.sign_efi(path, key, cert)
        return
    for what in (key, cert):
        if not what.is_file():
            raise SigningError(f"Secure Boot key or certificate {what} does not exist")
    tmp = path.with_name(path.name + ".signed-tmp")
    try:
        runner.run([runner.require("sbsign", "sbsigntool"), "--key", str(key), "--cert",
                    str(cert), "--output", str(tmp), str(path)],
                   what=f"sbsign {path.name}")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
