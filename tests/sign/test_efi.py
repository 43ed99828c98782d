"""Secure Boot signing with the real osslsigncode/sbverify on a real (tiny) EFI application."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from imagecomposer.foundation.errors import SigningError
from imagecomposer.sign import sign_efi, verify_efi

pytestmark = pytest.mark.skipif(
    shutil.which("osslsigncode") is None or shutil.which("sbverify") is None
    or shutil.which("ld") is None, reason="needs osslsigncode, sbsigntool and binutils")

HOST_STUBS = (Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"),)


def efi_binary(tmp: Path) -> Path:
    """The host's systemd-boot when installed, else a minimal EFI app built with binutils."""
    for stub in HOST_STUBS:
        if stub.is_file():
            return Path(shutil.copy(stub, tmp / stub.name))
    (tmp / "app.s").write_text(".text\n.globl _start\n_start:\n xor %eax,%eax\n ret\n"
                               ".data\nx: .quad 1\n")
    subprocess.run(["as", tmp / "app.s", "-o", tmp / "app.o"], check=True)
    subprocess.run(["ld", "-shared", "-Bsymbolic", "-nostdlib", tmp / "app.o",
                    "-o", tmp / "app.so"], check=True)
    subprocess.run(["objcopy", "-j", ".text", "-j", ".data", "--target=efi-app-x86_64",
                    tmp / "app.so", tmp / "app.efi"], check=True)
    return tmp / "app.efi"


def self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-subj", f"/CN={name}", "-days", "2"],
                   check=True, capture_output=True)
    return key, cert


def test_sign_and_verify_efi(tmp_path: Path) -> None:
    binary = efi_binary(tmp_path)
    key, cert = self_signed(tmp_path, "db")
    with pytest.raises(SigningError, match="does not verify"):
        verify_efi(binary, cert)  # unsigned
    signed = sign_efi(binary, key, cert, out=tmp_path / "signed.efi")
    verify_efi(signed, cert)
    _, other = self_signed(tmp_path, "other")
    with pytest.raises(SigningError, match="does not verify"):
        verify_efi(signed, other)
    # in place
    sign_efi(binary, key, cert)
    verify_efi(binary, cert)
    assert not list(tmp_path.glob(".*signing*"))


def test_sign_efi_failures(tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path, "db")
    notpe = tmp_path / "not.efi"
    notpe.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(SigningError, match="Secure Boot signing"):
        sign_efi(notpe, key, cert, out=tmp_path / "out.efi")
    assert not (tmp_path / "out.efi").exists()
    enc = tmp_path / "enc.key"
    subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:x", "-out", enc],
                   check=True)
    with pytest.raises(SigningError, match="encrypted"):
        sign_efi(efi_binary(tmp_path), enc, cert)


def test_same_binary_key_and_epoch_sign_to_the_same_bytes(tmp_path: Path) -> None:
    """The signing time is the epoch, not the clock: two signings a second apart (two
    builds) give the same bytes, and another epoch gives other bytes."""
    binary = efi_binary(tmp_path)
    key, cert = self_signed(tmp_path, "db")
    first = sign_efi(binary, key, cert, out=tmp_path / "first.efi", epoch=1686355200)
    time.sleep(1.1)
    second = sign_efi(binary, key, cert, out=tmp_path / "second.efi", epoch=1686355200)
    other = sign_efi(binary, key, cert, out=tmp_path / "other.efi", epoch=1700000000)
    assert first.read_bytes() == second.read_bytes()
    assert other.read_bytes() != first.read_bytes()
    for signed in (first, other):
        verify_efi(signed, cert)
    # the signature carries the epoch as its signing time (UTCTime 230610000000Z)
    assert b"230610000000Z" in first.read_bytes()
