"""Checks for account secrets: crypt(3) password hashes and OpenSSH public keys.

Plaintext passwords are refused: a password in a YAML file ends up in version control,
build logs and caches. Messages never repeat the offending value.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

HASH_ADVICE = "use password_hash with a crypt(3) hash, e.g. from `openssl passwd -6`"

_B64 = r"[./0-9A-Za-z]"
_HASHES = (
    re.compile(rf"^\$6\$(rounds=[0-9]+\$)?{_B64}{{1,16}}\${_B64}{{86}}$"),  # sha512crypt
    re.compile(rf"^\$5\$(rounds=[0-9]+\$)?{_B64}{{1,16}}\${_B64}{{43}}$"),  # sha256crypt
    re.compile(rf"^\$(y|gy)\${_B64}+\${_B64}+\${_B64}{{43}}$"),  # yescrypt, gost-yescrypt
    re.compile(rf"^\$7\${_B64}{{11}}{_B64}*\${_B64}{{43}}$"),  # scrypt
    re.compile(rf"^\$2[abxy]\$[0-9]{{2}}\${_B64}{{53}}$"),  # bcrypt
)
LOCKED = ("!", "*", "!*")


def password_hash_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable crypt(3) hash, or None when it is."""
    if value in LOCKED:
        return None
    if any(pattern.match(value) for pattern in _HASHES):
        return None
    if value.startswith("$1$"):
        return f"MD5 crypt hashes are too weak; {HASH_ADVICE}"
    if value.startswith("$"):
        return f"not a valid crypt(3) hash (sha512crypt, sha256crypt, yescrypt, bcrypt); " \
               f"{HASH_ADVICE}"
    return f"looks like a plaintext password, which is refused; {HASH_ADVICE}"


_SSH_TYPES = {
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
}


def _embedded_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > len(blob) - 4:
        return None
    try:
        return blob[4:4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def ssh_key_problem(line: str) -> str | None:
    """Why ``line`` is not an OpenSSH public key (authorized_keys format), or None.

    Options before the key type (``from="..." ssh-ed25519 ...``) are accepted. The base64
    body is decoded and the key type embedded in it must match the declared one; keys
    cryptography understands are parsed completely.
    """
    fields = line.strip().split()
    start = next((i for i, f in enumerate(fields) if f in _SSH_TYPES), None)
    if start is None or start + 1 >= len(fields):
        return "not a valid OpenSSH public key (expected 'TYPE BASE64 [comment]', " \
               "e.g. the contents of ~/.ssh/id_ed25519.pub)"
    kind, body = fields[start], fields[start + 1]
    if kind == "ssh-dss":
        return "DSA keys are not accepted by current OpenSSH; use an ed25519 key"
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return "not a valid OpenSSH public key (the key data is not base64)"
    if len(blob) < 16:
        return "not a valid OpenSSH public key (the key data is truncated)"
    embedded = _embedded_type(blob)
    if embedded != kind:
        return f"not a valid OpenSSH public key (declared type '{kind}' does not match the " \
               f"key data)"
    if kind.startswith("sk-"):
        return None
    try:
        load_ssh_public_key(f"{kind} {body}".encode())
    except (ValueError, UnsupportedAlgorithm):
        return "not a valid OpenSSH public key (the key data is corrupt)"
    return None
