"""Signatures made by Signer verify with stock OpenSSL and fail after a one-byte change."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from imagecomposer.foundation.errors import SigningError
from imagecomposer.sign import Signer, verify_file

KEYS = {
    "ed25519": ["-algorithm", "ed25519"],
    "ecdsa-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ecdsa-p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
}


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, check=check)


def make_key(tmp: Path, kind: str, *, passphrase: str | None = None) -> tuple[Path, Path]:
    key = tmp / f"{kind}.key"
    extra = ["-aes256", "-pass", f"pass:{passphrase}"] if passphrase else []
    openssl("genpkey", *KEYS[kind], *extra, "-out", key)
    pub = tmp / f"{kind}.pub"
    pw = ["-passin", f"pass:{passphrase}"] if passphrase else []
    openssl("pkey", "-in", key, *pw, "-pubout", "-out", pub)
    return key, pub


def openssl_verifies(kind: str, algorithm: str, pub: Path, data: Path, sig: Path) -> bool:
    if kind == "ed25519":
        done = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", data,
                       "-sigfile", sig, check=False)
    else:
        opts = (["-sigopt", "rsa_padding_mode:pss"] if algorithm == "rsa-pss" else [])
        done = openssl("dgst", "-sha256", "-verify", pub, *opts, "-signature", sig, data,
                       check=False)
    return done.returncode == 0


CASES = [("ed25519", "auto"), ("ecdsa-p256", "auto"), ("ecdsa-p384", "auto"),
         ("rsa", "rsa-pkcs1v15"), ("rsa", "rsa-pss"), ("rsa", "auto")]


@pytest.mark.parametrize(("kind", "algorithm"), CASES)
def test_openssl_verifies_and_one_byte_change_fails(tmp_path: Path, kind: str,
                                                   algorithm: str) -> None:
    key, pub = make_key(tmp_path, kind)
    data = tmp_path / "artifact.bin"
    data.write_bytes(b"imagecomposer artifact\n" * 5000)
    signer = Signer.from_key_file(key, algorithm=algorithm)  # type: ignore[arg-type]
    sig = signer.sign_file(data)
    assert sig == tmp_path / "artifact.bin.sig"
    assert openssl_verifies(kind, signer.algorithm, pub, data, sig)
    verify_file(data, sig, pub)
    assert signer.public_key_pem() == pub.read_bytes()

    raw = bytearray(data.read_bytes())
    raw[1234] ^= 0x01
    data.write_bytes(bytes(raw))
    assert not openssl_verifies(kind, signer.algorithm, pub, data, sig)
    with pytest.raises(SigningError, match="bad signature"):
        verify_file(data, sig, pub)


def test_rsa_auto_is_pkcs1v15_and_pss_is_selectable(tmp_path: Path) -> None:
    key, _ = make_key(tmp_path, "rsa")
    assert Signer.from_key_file(key).algorithm == "rsa-pkcs1v15"
    assert Signer.from_key_file(key, algorithm="rsa-pss").sig_alg == "rsa-pss-sha256"
    ed, _ = make_key(tmp_path, "ed25519")
    with pytest.raises(SigningError, match="needs an RSA key"):
        Signer.from_key_file(ed, algorithm="rsa-pss")


def test_empty_file_signs(tmp_path: Path) -> None:
    key, pub = make_key(tmp_path, "ed25519")
    empty = tmp_path / "empty"
    empty.touch()
    sig = Signer.from_key_file(key).sign_file(empty, out=tmp_path / "e.sig")
    verify_file(empty, sig, pub)


@pytest.mark.parametrize("source", ["file", "env"])
def test_encrypted_key_with_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       source: str) -> None:
    key, pub = make_key(tmp_path, "ecdsa-p256", passphrase="s3cret-phrase")
    assert b"ENCRYPTED" in key.read_bytes()
    if source == "file":
        pw = tmp_path / "pass"
        pw.write_text("s3cret-phrase\n")
        signer = Signer.from_key_file(key, passphrase_file=pw)
    else:
        monkeypatch.setenv("IC_TEST_PASS", "s3cret-phrase")
        signer = Signer.from_key_file(key, passphrase_env="IC_TEST_PASS")
    data = tmp_path / "f"
    data.write_text("x")
    assert openssl_verifies("ecdsa-p256", signer.algorithm, pub, data, signer.sign_file(data))


def test_encrypted_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = make_key(tmp_path, "rsa", passphrase="right")
    with pytest.raises(SigningError, match="is encrypted"):
        Signer.from_key_file(key)
    monkeypatch.setenv("IC_WRONG", "wrong")
    with pytest.raises(SigningError, match="wrong passphrase"):
        Signer.from_key_file(key, passphrase_env="IC_WRONG")
    with pytest.raises(SigningError, match="is not set"):
        Signer.from_key_file(key, passphrase_env="IC_UNSET_VARIABLE_XYZ")


def test_bad_inputs(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningError, match="not a private key"):
        Signer.from_key_file(junk)
    with pytest.raises(SigningError, match="cannot read signing key"):
        Signer.from_key_file(tmp_path / "missing.pem")
    key, _ = make_key(tmp_path, "ed25519")
    data = tmp_path / "d"
    data.write_text("d")
    sig = Signer.from_key_file(key).sign_file(data)
    with pytest.raises(SigningError, match="holds a private key"):
        verify_file(data, sig, key)
    _, other_pub = make_key(tmp_path, "ecdsa-p384")
    with pytest.raises(SigningError, match="bad signature"):
        verify_file(data, sig, other_pub)


def test_certificate_must_match_key(tmp_path: Path) -> None:
    key, _ = make_key(tmp_path, "ecdsa-p256")
    cert = tmp_path / "cert.pem"
    openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=imagecomposer test",
            "-days", "2", "-out", cert)
    signer = Signer.from_key_file(key, cert=cert)
    assert signer.certificate is not None
    data = tmp_path / "d"
    data.write_text("hello")
    verify_file(data, signer.sign_file(data), cert)  # a certificate works as the public key
    other, _ = make_key(tmp_path, "ed25519")
    with pytest.raises(SigningError, match="does not belong"):
        Signer.from_key_file(other, cert=cert)


def test_private_key_never_in_logs_repr_or_errors(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key, _ = make_key(tmp_path, "rsa", passphrase="pw")
    pw = tmp_path / "pw"
    pw.write_text("pw")
    signer = Signer.from_key_file(key, passphrase_file=pw)
    data = tmp_path / "d"
    data.write_text("x")
    sig = signer.sign_file(data)
    body = [line for line in key.read_text().splitlines() if "-----" not in line]
    texts = [repr(signer), caplog.text, sig.read_bytes().hex(), signer.public_key_pem().decode()]
    try:
        Signer.from_key_file(key, passphrase_env="NOPE_UNSET")
    except SigningError as exc:
        texts.append(str(exc))
    for chunk in body:
        for text in texts:
            assert chunk not in text
