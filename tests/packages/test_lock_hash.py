"""Lock.hash: the SHA256 of the canonical JSON, computed once per lock (a build asks for it
seven times) and never stale: an evolved or re-read lock has its own."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import attrs
import pytest

from imagecomposer.lock import Lock
from tests.export.sbom_fixtures import make_lock


def test_hash_is_the_canonical_json_digest_serialised_once(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    lock = make_lock()
    calls = []
    original = Lock.to_json
    monkeypatch.setattr(Lock, "to_json", lambda self: calls.append(1) or original(self))
    first = lock.hash
    assert [lock.hash for _ in range(6)] == [first] * 6
    assert len(calls) == 1
    assert first == hashlib.sha256(original(lock).encode()).hexdigest()


def test_hash_follows_the_content(tmp_path: Path) -> None:
    lock = make_lock()
    before = lock.hash
    fewer = attrs.evolve(lock, packages=lock.packages[:2])
    assert fewer.hash != before
    assert fewer.hash == hashlib.sha256(fewer.to_json().encode()).hexdigest()
    lock.write(tmp_path / "a.lock.json")
    again = Lock.read(tmp_path / "a.lock.json")
    assert again == lock and again.hash == before
    assert pickle.loads(pickle.dumps(lock)).hash == before
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        lock.hash = "0" * 64  # type: ignore[misc]
