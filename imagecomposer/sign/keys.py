"""Reading signing keys and certificates with ``cryptography``.

Why a module of its own: it is the only place that touches private key bytes. Key material
is read into memory, parsed, and dropped; it is never logged, never put in an error message
(errors name the file and the reason only) and never copied to a workspace.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imagecomposer.foundation.errors import SigningError
from imagecomposer.foundation.settings import SignAlgorithm

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

Algorithm = Literal["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-pss", "rsa-pkcs1v15"]
Requested = SignAlgorithm  # what a spec or `imagecomposer sign` asks for

_CURVES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}


def read_passphrase(passphrase_file: Path | None, passphrase_env: str | None) -> bytes | None:
    """The passphrase from a file (first line) or an environment variable; never argv."""
    if passphrase_file is not None and passphrase_env is not None:
        raise SigningError("give either passphrase_file or passphrase_env, not both")
    if passphrase_file is not None:
        try:
            data = passphrase_file.read_bytes()
        except OSError as exc:
            raise SigningError(
                f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from None
        return data.splitlines()[0] if data.strip() else b""
    if passphrase_env is not None:
        value = os.environ.get(passphrase_env)
        if value is None:
            raise SigningError(f"passphrase environment variable {passphrase_env} is not set")
        return value.encode()
    return None


def load_private_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    """Parse a PEM (or DER) private key; errors name the file, never its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read signing key {path}: {exc.strerror}") from None
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    try:
        key = loader(data, password=passphrase)
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted" or the reverse.
        if passphrase is None:
            raise SigningError(f"signing key {path} is encrypted: give a passphrase file or "
                               "passphrase environment variable") from None
        key = loader(data, password=None)  # not encrypted: the passphrase is unnecessary
    except ValueError:
        reason = "wrong passphrase or not a private key" if passphrase else "not a private key"
        raise SigningError(f"cannot load signing key {path}: {reason}") from None
    except UnsupportedAlgorithm:
        raise SigningError(f"signing key {path}: unsupported key algorithm") from None
    finally:
        del data
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _CURVES:
        raise SigningError(f"signing key {path}: curve {key.curve.name} is not supported "
                           "(use P-256 or P-384)")
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
                      | rsa.RSAPrivateKey):
        raise SigningError(f"signing key {path}: unsupported key type "
                           f"{type(key).__name__} (use Ed25519, ECDSA P-256/P-384 or RSA)")
    return key


def algorithm_for(key: PrivateKey | PublicKey, requested: Requested = "auto") -> Algorithm:
    """The signature algorithm of a key. RSA defaults to PKCS#1 v1.5 because that is what a
    bare ``openssl dgst -sha256 -verify`` checks; ``rsa-pss`` selects PSS."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        algorithm: Algorithm = "ed25519"
    elif isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        algorithm = "ecdsa-p256" if key.curve.name == "secp256r1" else "ecdsa-p384"
    else:
        return "rsa-pss" if requested == "rsa-pss" else "rsa-pkcs1v15"
    if requested != "auto":
        raise SigningError(f"algorithm {requested} needs an RSA key, not {algorithm}")
    return algorithm


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read certificate {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise SigningError(f"{path} is not an X.509 certificate") from None


def load_public_key(path: Path) -> PublicKey:
    """A public key from a PEM/DER public key file or an X.509 certificate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read public key {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        raise SigningError(f"{path} holds a private key: verification needs the public key "
                           "or the certificate")
    key: object
    try:
        if b"-----BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        elif b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            try:
                key = serialization.load_der_public_key(data)
            except ValueError:
                key = x509.load_der_x509_certificate(data).public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{path} is not a public key or certificate") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
                      | rsa.RSAPublicKey):
        raise SigningError(f"{path}: unsupported public key type {type(key).__name__}")
    return key


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKey) -> str:
    """SHA256 of the DER SubjectPublicKeyInfo: names a key without revealing anything."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()
