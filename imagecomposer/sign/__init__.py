"""The Signer: detached signatures of any file, and Secure Boot signing of EFI binaries."""

from imagecomposer.compose.secureboot import sign_efi, verify_efi
from imagecomposer.sign.signer import Signer, verify_file, verify_signature

__all__ = ["Signer", "sign_efi", "verify_efi", "verify_file", "verify_signature"]
