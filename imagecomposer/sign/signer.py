"""Detached signatures of any file that stock OpenSSL verifies.

A signature file holds the raw signature bytes, nothing else, so that anyone can check an
artifact without imagecomposer:

- RSA / ECDSA: signature over the SHA-256 digest of the file (ECDSA in DER form, as OpenSSL
  writes it): ``openssl dgst -sha256 -verify pub.pem -signature F.sig F`` (RSA-PSS adds
  ``-sigopt rsa_padding_mode:pss``).
- Ed25519: pure Ed25519 over the file's bytes (there is no prehash variant OpenSSL's CLI
  checks): ``openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in F -sigfile F.sig``.
  Files are memory-mapped rather than read, so a multi-GiB image does not fill the heap.
"""

from __future__ import annotations

import base64
import contextlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from imagecomposer.foundation import display
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import SigningError
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.sign.keys import (
    Algorithm,
    PrivateKey,
    PublicKey,
    Requested,
    algorithm_for,
    key_id,
    load_certificate,
    load_private_key,
    load_public_key,
    public_pem,
    read_passphrase,
)
from imagecomposer.spec.model import Sign

CHUNK = 1 << 20


def _digest(path: Path) -> bytes:
    return bytes.fromhex(sha256_file(path))


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[bytes | memoryview]:
    """The file's bytes without copying them into the heap (empty files cannot be mapped)."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                yield view
            finally:
                view.release()


def _pss() -> padding.PSS:
    # Salt as long as the digest: what OpenSSL's rsa_pss_saltlen:digest produces and what
    # its default verification (auto-detected salt length) accepts.
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@attrs.frozen
class Signer:
    """Signs files with one private key (kept in memory only, hidden from ``repr``)."""

    _key: PrivateKey = attrs.field(repr=False, alias="key")
    algorithm: Algorithm
    certificate: x509.Certificate | None = attrs.field(default=None, repr=False)
    source: str = ""  # the key file's path, for messages

    @classmethod
    def from_key_file(cls, key: Path, *, cert: Path | None = None,
                      passphrase_file: Path | None = None, passphrase_env: str | None = None,
                      algorithm: Requested = "auto") -> Signer:
        passphrase = read_passphrase(passphrase_file, passphrase_env)
        private = load_private_key(key, passphrase)
        certificate = None
        if cert is not None:
            certificate = load_certificate(cert)
            if public_pem(certificate.public_key()) != public_pem(private.public_key()):  # type: ignore[arg-type]
                raise SigningError(f"certificate {cert} does not belong to key {key}")
        return cls(key=private, algorithm=algorithm_for(private, algorithm),
                   certificate=certificate, source=str(key))

    @classmethod
    def from_spec(cls, sign: Sign) -> Signer:
        return cls.from_key_file(sign.key, cert=sign.cert, passphrase_file=sign.passphrase_file,
                                 passphrase_env=sign.passphrase_env, algorithm=sign.algorithm)

    def __repr__(self) -> str:
        """Algorithm, public key id and key file: never key material."""
        return display.call("Signer", algorithm=self.algorithm, key_id=self.key_id[:16],
                            certificate=self.certificate is not None, source=self.source or None)

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @property
    def sig_alg(self) -> str:
        """The algorithm as recorded in manifests ("ed25519", "rsa-pss-sha256", ...)."""
        return self.algorithm if self.algorithm == "ed25519" else f"{self.algorithm}-sha256"

    def public_key_pem(self) -> bytes:
        return public_pem(self.public_key)

    def sign_bytes_of(self, path: Path) -> bytes:
        """The raw signature of a file's content."""
        key = self._key
        try:
            if isinstance(key, ed25519.Ed25519PrivateKey):
                with _mapped(path) as data:
                    return key.sign(data)
            prehashed = utils.Prehashed(hashes.SHA256())
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key.sign(_digest(path), ec.ECDSA(prehashed))
            pad = _pss() if self.algorithm == "rsa-pss" else padding.PKCS1v15()
            return key.sign(_digest(path), pad, prehashed)
        except OSError as exc:
            raise SigningError(f"cannot sign {path}: {exc.strerror}") from None

    def sign_bytes(self, data: bytes) -> bytes:
        """The raw signature of ``data`` (not prehashed: Ed25519 over the bytes, RSA/ECDSA
        over their SHA-256 as ``openssl dgst -sha256`` and DSSE verifiers expect)."""
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        pad = _pss() if self.algorithm == "rsa-pss" else padding.PKCS1v15()
        return key.sign(data, pad, hashes.SHA256())

    def sign_file(self, path: Path, *, out: Path | None = None) -> Path:
        """Write the detached signature of ``path`` to ``out`` (default ``path.sig``)."""
        out = out if out is not None else path.with_name(path.name + ".sig")
        signature = self.sign_bytes_of(path)
        try:
            atomic_write(out, signature)
        except OSError as exc:
            raise SigningError(f"cannot write signature {out}: {exc.strerror}") from None
        return out


def signature_b64(signature_file: Path) -> str:
    return base64.b64encode(signature_file.read_bytes()).decode()


def verify_signature(path: Path, signature: bytes, key: PublicKey) -> None:
    """Check a raw signature of ``path``; RSA accepts PKCS#1 v1.5 and PSS."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            with _mapped(path) as data:
                key.verify(signature, data)
            return
        prehashed = utils.Prehashed(hashes.SHA256())
        digest = _digest(path)
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(prehashed))
            return
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        except InvalidSignature:
            key.verify(signature, digest,
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                   salt_length=padding.PSS.AUTO), prehashed)
    except InvalidSignature:
        raise SigningError(f"bad signature: {path} does not match its signature") from None
    except OSError as exc:
        raise SigningError(f"cannot verify {path}: {exc.strerror}") from None


def verify_bytes(data: bytes, signature: bytes, key: PublicKey) -> bool:
    """Whether ``signature`` is a valid signature of ``data`` (as :meth:`Signer.sign_bytes`
    makes them; RSA accepts PKCS#1 v1.5 and PSS)."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                key.verify(signature, data,
                           padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                       salt_length=padding.PSS.AUTO), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify_file(path: Path, signature: Path, public_key_or_cert: Path) -> None:
    """Verify the detached signature file of ``path``; SigningError when it does not match."""
    key = load_public_key(public_key_or_cert)
    try:
        raw = signature.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read signature {signature}: {exc.strerror}") from None
    verify_signature(path, raw, key)
