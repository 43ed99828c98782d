"""Secure Boot signatures of EFI binaries: who signed them, and whether the signature still
matches the binary.

The Authenticode signature is found in the PE certificate table (``WIN_CERTIFICATE`` of type
PKCS_SIGNED_DATA); ``cryptography`` reads the certificates it carries. ``sbverify --cert
SIGNER`` (sbsigntool) then checks the signature against the binary's digest, with the
signing certificate itself as the trust anchor: that proves the binary was not changed
after signing, not that a firmware would trust the signer (that is the db's business).
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from imagecomposer.foundation import runner
from imagecomposer.inspect.report import Certificate, EfiBinary

PKCS_SIGNED_DATA = 2
SECURITY_DIRECTORY = 4


def signature_blobs(data: bytes) -> list[bytes]:
    """The PKCS#7 SignedData blobs in a PE file's certificate table."""
    try:
        if data[:2] != b"MZ":
            return []
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        if data[pe:pe + 4] != b"PE\0\0":
            return []
        magic = struct.unpack_from("<H", data, pe + 24)[0]
        directories = pe + 24 + (96 if magic == 0x10B else 112)
        count = struct.unpack_from("<I", data, directories - 4)[0]
        if count <= SECURITY_DIRECTORY:
            return []
        offset, size = struct.unpack_from("<II", data, directories + 8 * SECURITY_DIRECTORY)
    except struct.error:
        return []
    blobs = []
    position, end = offset, min(offset + size, len(data))
    while offset and position + 8 <= end:
        length, _revision, kind = struct.unpack_from("<IHH", data, position)
        if length < 8:
            break
        if kind == PKCS_SIGNED_DATA:
            blobs.append(data[position + 8:position + length])
        position += (length + 7) & ~7
    return blobs


def _certificate(cert: x509.Certificate) -> Certificate:
    return Certificate(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                       format(cert.serial_number, "x"),
                       cert.fingerprint(hashes.SHA256()).hex(),
                       cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _leaf_first(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Signing certificates before the CAs that issued them."""
    issuers = {c.issuer for c in certs}
    return sorted(certs, key=lambda c: c.subject in issuers and c.subject != c.issuer)


def efi_binary(label: str, data: bytes, scratch: Path) -> EfiBinary:
    blobs = signature_blobs(data)
    certs: list[x509.Certificate] = []
    for blob in blobs:
        try:
            certs += pkcs7.load_der_pkcs7_certificates(blob)
        except ValueError:
            continue
    if not blobs:
        return EfiBinary(label, False, (), None)
    ordered = _leaf_first(certs)
    return EfiBinary(label, True, tuple(_certificate(c) for c in ordered),
                     _verified(data, ordered[:1], scratch) if ordered else False)


def _verified(data: bytes, signers: list[x509.Certificate], scratch: Path) -> bool | None:
    if runner.which("sbverify") is None:
        return None
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        binary, cert = Path(tmp) / "binary.efi", Path(tmp) / "signer.pem"
        binary.write_bytes(data)
        cert.write_bytes(signers[0].public_bytes(Encoding.PEM))
        done = runner.run(["sbverify", "--cert", cert, binary], capture=True, check=False,
                          what="sbverify")
    return done.returncode == 0
