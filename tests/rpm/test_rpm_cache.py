"""RPMs in the package store get the same integrity check as .debs (issue 18, item 2)."""

from __future__ import annotations

import hashlib
import logging

import pytest
from rpm_helpers import RpmFixture, make_spec

from imagecomposer.cache.store import PackageCache
from imagecomposer.config.model import Config
from imagecomposer.families import provider_for
from imagecomposer.resolver.resolver import Resolver


def test_damaged_cached_rpm_is_evicted_and_fetched_again(
        rpm_fixture: RpmFixture, rpm_config: Config,
        caplog: pytest.LogCaptureFixture) -> None:
    spec = make_spec(rpm_fixture, install=("alpha",))
    lock = Resolver(rpm_config).resolve(spec).lock
    alpha = lock.package("alpha")
    assert alpha is not None
    provider = provider_for(spec, rpm_config)
    with PackageCache(rpm_config) as cache:
        cache.fetch(lock, provider=provider)
        path = cache.path_for(alpha)
        assert path.suffix == ".rpm"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # a flipped byte, same size
        path.write_bytes(bytes(data))
        with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
            files = cache.fetch(lock, provider=provider)  # no ChecksumMismatch: re-fetched
        assert hashlib.sha256(files["alpha"].read_bytes()).hexdigest() == alpha.sha256
        assert f"alpha {alpha.version} at {path} is damaged" in caplog.text
        path.write_bytes(bytes(data))
        assert [e.path for e in cache.prune()] == [path]  # `cache prune` removes it too
