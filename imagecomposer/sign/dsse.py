"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1).

The signature covers the pre-authentication encoding (PAE) of the payload type and the
payload, never the JSON of the envelope::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where ``LEN`` is the length in bytes as ASCII decimal without leading zeros and ``SP`` one
space. Anyone can check an envelope without imagecomposer: decode ``payload``, build the PAE
and verify ``sig`` with the public key (Ed25519:
``openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in pae.bin -sigfile sig.bin``).

An envelope is serialized as one line of JSON with sorted keys and no spaces, so the same
payload and a deterministic key (Ed25519, RSA PKCS#1 v1.5) give the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from imagecomposer.foundation.errors import SigningError
from imagecomposer.sign.keys import PublicKey, key_id
from imagecomposer.sign.signer import Signer, verify_bytes

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(signer: Signer, payload: bytes,
                  payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    """The envelope of ``payload``, signed by ``signer`` (keyid: SHA-256 of its public key)."""
    signature = signer.sign_bytes(pae(payload_type, payload))
    return {"payload": base64.b64encode(payload).decode(), "payloadType": payload_type,
            "signatures": [{"keyid": signer.key_id,
                            "sig": base64.b64encode(signature).decode()}]}


def envelope_line(envelope: dict[str, Any]) -> str:
    """One line of canonical JSON (sorted keys, no spaces), with its newline."""
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")) + "\n"


def open_envelope(envelope: Any, key: PublicKey, *, what: str = "envelope") -> tuple[str, bytes]:
    """Check ``envelope`` (parsed JSON) against ``key``; its payload type and payload.

    At least one signature must verify with ``key``; a signature with another key id is
    skipped (a key id is a hint, never trusted: the signature is what counts).
    SigningError, naming ``what``, on anything else."""
    if not isinstance(envelope, dict):
        raise SigningError(f"{what}: not a DSSE envelope")
    payload_type, payload_b64 = envelope.get("payloadType"), envelope.get("payload")
    signatures = envelope.get("signatures")
    if not isinstance(payload_type, str) or not isinstance(payload_b64, str) \
            or not isinstance(signatures, list) or not signatures:
        raise SigningError(f"{what}: not a DSSE envelope (payloadType, payload and "
                           "signatures are required)")
    try:
        payload = base64.b64decode(payload_b64, validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in signatures
                if isinstance(s, dict) and isinstance(s.get("sig"), str)]
    except (binascii.Error, ValueError):
        raise SigningError(f"{what}: malformed base64 in the DSSE envelope") from None
    message = pae(payload_type, payload)
    if not any(verify_bytes(message, sig, key) for sig in sigs):
        raise SigningError(f"{what}: bad signature: the DSSE envelope is not signed by key "
                           f"{key_id(key)[:16]} or was modified")
    return payload_type, payload
