"""DSSE envelopes: the PAE of the spec, signatures that stock OpenSSL checks over it, and
tampering of any part of an envelope is refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from imagecomposer.foundation.errors import SigningError
from imagecomposer.sign import Signer
from imagecomposer.sign.dsse import envelope_line, open_envelope, pae, sign_envelope
from imagecomposer.sign.keys import load_public_key

from .test_signer import CASES, make_key, openssl_verifies


def test_pae_is_the_specs_encoding() -> None:
    # the test vector of the DSSE protocol document (protocol.md)
    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("", b"") == b"DSSEv1 0  0 "
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"  # lengths in bytes


@pytest.mark.parametrize(("kind", "algorithm"), CASES)
def test_envelopes_verify_with_openssl_over_the_pae(tmp_path: Path, kind: str,
                                                    algorithm: str) -> None:
    key, pub = make_key(tmp_path, kind)
    signer = Signer.from_key_file(key, algorithm=algorithm)  # type: ignore[arg-type]
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    envelope = json.loads(envelope_line(sign_envelope(signer, payload)))
    assert envelope["signatures"][0]["keyid"] == signer.key_id
    # independent: the PAE written out by hand, the signature checked by openssl
    message = tmp_path / "pae.bin"
    message.write_bytes(b"DSSEv1 28 application/vnd.in-toto+json %d %s"
                        % (len(payload), payload))
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    assert openssl_verifies(kind, signer.algorithm, pub, message, sig)
    assert open_envelope(envelope, load_public_key(pub)) == \
        ("application/vnd.in-toto+json", payload)


def test_a_tampered_envelope_or_another_key_is_refused(tmp_path: Path) -> None:
    key, pub = make_key(tmp_path, "ed25519")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_pub = make_key(other_dir, "ed25519")
    envelope = sign_envelope(Signer.from_key_file(key), b'{"a":1}')
    public = load_public_key(pub)
    changed_payload = dict(envelope, payload=base64.b64encode(b'{"a":2}').decode())
    changed_type = dict(envelope, payloadType="application/json")
    for bad in (changed_payload, changed_type):
        with pytest.raises(SigningError, match="line 3: bad signature"):
            open_envelope(bad, public, what="line 3")
    with pytest.raises(SigningError, match="bad signature"):
        open_envelope(envelope, load_public_key(other_pub))
    with pytest.raises(SigningError, match="malformed base64"):
        open_envelope(dict(envelope, payload="not base64!"), public)
    with pytest.raises(SigningError, match="not a DSSE envelope"):
        open_envelope(dict(envelope, signatures=[]), public)
    with pytest.raises(SigningError, match="not a DSSE envelope"):
        open_envelope([envelope], public)
