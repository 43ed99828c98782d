"""Loading rpm-md metadata: every compression, signatures, checksums, caches, filelists."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fixtures.rpmrepo import make_repo
from rpm_helpers import RpmFixture, make_spec, resolve_lock

from imagecomposer.config.model import Config
from imagecomposer.families.rpm import RpmProvider
from imagecomposer.families.rpm.jobs import new_pool
from imagecomposer.foundation.errors import ChecksumMismatch, ConfigError, SignatureError
from imagecomposer.spec.model import Repository


def load(fixture: RpmFixture, config: Config, *repos: str | Repository) -> RpmProvider:
    provider = RpmProvider(make_spec(fixture, *repos), config)
    provider.load(new_pool("x86_64"))
    return provider


@pytest.mark.parametrize("compress", ["gz", "xz", "zstd", "bz2"])
def test_every_compression_loads(rpm_fixture: RpmFixture, rpm_config: Config,
                                 compress: str) -> None:
    repodata = rpm_fixture.repos[f"main-{compress}"] / "repodata"
    suffix = {"gz": ".gz", "xz": ".xz", "zstd": ".zst", "bz2": ".bz2"}[compress]
    assert list(repodata.glob(f"*primary.xml{suffix}"))
    provider = load(rpm_fixture, rpm_config, f"main-{compress}")
    loaded = provider.loaded[f"main-{compress}"]
    assert loaded.repo.nsolvables == 27 and not loaded.from_cache  # every package of main
    assert loaded.filelists  # filedep's /usr/libexec/helper/tool is only in filelists.xml


def test_solv_cache_is_reused(rpm_fixture: RpmFixture, rpm_config: Config,
                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, "imagecomposer.run"):
        first = load(rpm_fixture, rpm_config, "main")
    assert not first.loaded["main"].from_cache
    assert "gpgv --keyring" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, "imagecomposer.run"):
        second = load(rpm_fixture, rpm_config, "main")
    assert second.loaded["main"].from_cache and second.loaded["main"].filelists
    assert "gpgv" not in caplog.text  # same repomd bytes and keyring: verdict reused
    # a pool loaded from .solv selects and solves (createwhatprovides ran in load())
    lock = resolve_lock(make_spec(rpm_fixture, install=("filedep", "alpha")), rpm_config)
    assert {"helper", "beta"} <= {p.name for p in lock.packages}
    solv_files = list((rpm_config.metadata_cache_dir / "rpm" / "solv").glob("*/pool.solv"))
    assert len(solv_files) == 2  # primary only, then primary + filelists


def test_filelists_only_when_needed(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    provider = load(rpm_fixture, rpm_config, "lonely")
    assert not provider.loaded["lonely"].filelists


def test_tampered_repomd_fails(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    repo = rpm_fixture.copy_repo("main", "tampered-repomd")
    repomd = repo / "repodata" / "repomd.xml"
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>1"))
    with pytest.raises(SignatureError, match=r"Signature check failed: .*repomd\.xml"):
        load(rpm_fixture, rpm_config, "tampered-repomd")


def test_tampered_primary_fails(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    repo = rpm_fixture.copy_repo("main-xz", "tampered-primary")
    primary = next((repo / "repodata").glob("*primary.xml.xz"))
    primary.write_bytes(primary.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ChecksumMismatch, match="Checksum mismatch"):
        load(rpm_fixture, rpm_config, "tampered-primary")
    # nothing half-written in the metadata cache
    cache = rpm_config.metadata_cache_dir / "rpm"
    assert not [p for p in cache.rglob("*") if ".part" in p.name or ".tmp" in p.name]
    assert not list(cache.glob("by-hash/*primary*"))


def test_repomd_signed_by_unknown_key(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    repo = make_repo(rpm_fixture.root / "other-key",
                     [rpm_fixture.packages.signed["lonely-1.0"]],
                     sign_with=rpm_fixture.packages.key_b)
    assert (repo / "repodata" / "repomd.xml.asc").is_file()
    with pytest.raises(SignatureError, match="not signed by a configured key"):
        load(rpm_fixture, rpm_config, "other-key")


def test_unsigned_repomd_relies_on_package_signatures(
        rpm_fixture: RpmFixture, rpm_config: Config, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "imagecomposer.rpm"):
        provider = load(rpm_fixture, rpm_config, "unsigned-repomd")
    assert provider.loaded["unsigned-repomd"].repo.nsolvables == 1
    assert "does not sign repomd.xml" in caplog.text


def test_trusted_repository_skips_signatures(
        rpm_fixture: RpmFixture, rpm_config: Config, caplog: pytest.LogCaptureFixture) -> None:
    repo = rpm_fixture.copy_repo("main", "trusted-tampered")
    repomd = repo / "repodata" / "repomd.xml"
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>1"))
    trusted = Repository(name="trusted-tampered", url=rpm_fixture.repo_url("trusted-tampered"),
                         kind="rpm", trusted=True)
    with caplog.at_level(logging.WARNING, "imagecomposer.rpm"):
        provider = load(rpm_fixture, rpm_config, trusted)
    assert "NOT checking any signature" in caplog.text
    assert provider.repositories()[0].trusted


def test_repository_without_key_must_say_trusted(rpm_fixture: RpmFixture,
                                                 rpm_config: Config) -> None:
    keyless = Repository(name="main", url=rpm_fixture.repo_url("main"), kind="rpm")
    with pytest.raises(ConfigError, match="trusted: true"):
        RpmProvider(make_spec(rpm_fixture, keyless), rpm_config)


def test_not_a_repository(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    from imagecomposer.foundation.errors import RepositoryError

    with pytest.raises(RepositoryError, match="not an rpm-md repository"):
        load(rpm_fixture, rpm_config, "does-not-exist")


def test_local_directory_repository(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    local = Repository(name="local", url=str(rpm_fixture.repos["lonely"]),
                       key=rpm_fixture.key, kind="rpm")
    provider = load(rpm_fixture, rpm_config, local)
    assert provider.repositories()[0].url.startswith("file:///")
    assert provider.loaded["local"].repo.nsolvables == 1


def test_keyring_accepts_binary_keys_and_directories(rpm_fixture: RpmFixture,
                                                     rpm_config: Config,
                                                     tmp_path: Path) -> None:
    import subprocess

    keydir = tmp_path / "keys"
    keydir.mkdir()
    binary = subprocess.run(["gpg", "--dearmor"], input=rpm_fixture.key.read_bytes(),
                            capture_output=True, check=True).stdout
    (keydir / "a.gpg").write_bytes(binary)
    (keydir / "b.asc").write_bytes(rpm_fixture.packages.key_b.public.read_bytes())
    repo = Repository(name="main", url=rpm_fixture.repo_url("main"), key=keydir, kind="rpm")
    provider = load(rpm_fixture, rpm_config, repo)
    assert len(provider.trusted_keys()) == 2
    assert all(re.fullmatch(r"key-[0-9A-F]{40}\.asc", k.name) for k in provider.trusted_keys())
