"""Every downloaded RPM: SHA256 from primary.xml and a header signature by a configured key."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import attrs
import pytest
from rpm_helpers import RpmFixture, make_spec, resolve_lock

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import ChecksumMismatch, SignatureError
from imagecomposer.lock import LockedPackage
from imagecomposer.spec.model import Repository

from imagecomposer.families.rpm import RpmProvider  # isort: skip


def locked(fixture: RpmFixture, config: Config, repo: str | Repository,
           name: str) -> tuple[RpmProvider, LockedPackage, Path]:
    spec = make_spec(fixture, repo, install=(name,))
    provider = RpmProvider(spec, config)
    lock = resolve_lock(spec, config, provider=provider)
    package = lock.package(name)
    assert package is not None
    repo_name = repo if isinstance(repo, str) else repo.name
    path = fixture.root / repo_name / "Packages" / Path(package.url).name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == package.sha256
    return provider, package, path


def test_signed_package_passes(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    provider, package, path = locked(rpm_fixture, rpm_config, "main", "alpha")
    provider.verify_package(package, path)


def test_tampered_package_fails_checksum(rpm_fixture: RpmFixture, rpm_config: Config,
                                         tmp_path: Path) -> None:
    provider, package, path = locked(rpm_fixture, rpm_config, "main", "alpha")
    tampered = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="Checksum mismatch"):
        provider.verify_package(package, tampered)
    # even when the index is made to agree, the header signature catches it
    agreed = attrs.evolve(package, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(SignatureError, match="BAD"):
        provider.verify_package(agreed, tampered)


def test_unsigned_package_fails(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    provider, package, path = locked(rpm_fixture, rpm_config, "unsigned", "lonely")
    with pytest.raises(SignatureError, match="the package is not signed"):
        provider.verify_package(package, path)


def test_package_signed_by_unknown_key_fails(rpm_fixture: RpmFixture,
                                             rpm_config: Config) -> None:
    provider, package, path = locked(rpm_fixture, rpm_config, "wrong-key", "lonely")
    with pytest.raises(SignatureError, match="key that is not configured"):
        provider.verify_package(package, path)


def test_trusted_repository_accepts_unsigned(rpm_fixture: RpmFixture, rpm_config: Config,
                                             tmp_path: Path) -> None:
    trusted = Repository(name="unsigned", url=rpm_fixture.repo_url("unsigned"), kind="rpm",
                         trusted=True)
    provider, package, path = locked(rpm_fixture, rpm_config, trusted, "lonely")
    provider.verify_package(package, path)
    # trusted skips signatures, never the checksum
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    with copy.open("ab") as fp:
        fp.write(b"x")
    with pytest.raises(ChecksumMismatch):
        provider.verify_package(package, copy)
