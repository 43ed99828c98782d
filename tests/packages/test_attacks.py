"""Bad input and attacks: each fails with one clear error and leaves the caches consistent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from imagecomposer.cache import PackageCache
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import (
    ChecksumMismatch,
    DownloadError,
    MetadataExpired,
    SignatureError,
)
from imagecomposer.foundation.http import Http
from imagecomposer.lock import Lock
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import DebArchive, GpgKey, RepoServer
from tests.packages.conftest import make_config, make_spec


def no_partial_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if ".part-" in p.name or p.parent.name == ".tmp"
                 or (".tmp" in p.name and p.name != ".tmp")]  # (.tmp: the staging area)
    assert leftovers == []


def fast_cache(config: Config, **http: float) -> PackageCache:
    return PackageCache(config, http=Http(config.credentials, retries=1, backoff=0.01, **http))


def resolve(config: Config) -> Lock:
    return Resolver(config).resolve(make_spec()).lock


def test_tampered_inrelease(config: Config, archive: DebArchive) -> None:
    path = archive.release_dir("bookworm") / "InRelease"
    path.write_text(path.read_text().replace("Suite: bookworm", "Suite: bookwurm"))
    with pytest.raises(SignatureError, match="BAD signature"):
        resolve(config)
    assert not list((config.metadata_cache_dir / "solv").glob("*")) if \
        (config.metadata_cache_dir / "solv").exists() else True
    no_partial_files(config.core.cache_dir)


def test_tampered_packages(config: Config, archive: DebArchive) -> None:
    packages = archive.release_dir("bookworm") / "main/binary-amd64/Packages.xz"
    import lzma

    text = lzma.decompress(packages.read_bytes()).replace(b"Version: 5.2.15-2",
                                                          b"Version: 9.9.9-9")
    packages.write_bytes(lzma.compress(text))
    with pytest.raises(ChecksumMismatch, match=r"Checksum mismatch: .*Packages.xz"):
        resolve(config)
    by_hash = config.metadata_cache_dir / "by-hash"
    assert not by_hash.exists() or list(by_hash.iterdir()) == []
    no_partial_files(config.core.cache_dir)


def test_signature_by_unknown_key(tmp_path: Path, www: Path, gpg_key: GpgKey,
                                  rogue_key: GpgKey, server: RepoServer) -> None:
    from tests.fixtures.debrepo import base_system

    rogue = DebArchive(www / "debian", rogue_key)  # well signed, but not by the archive key
    for suite in ("bookworm", "bookworm-updates", "bookworm-security"):
        rogue.add(suite, *(base_system() if suite == "bookworm" else []))
    rogue.publish()
    config = make_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    with pytest.raises(SignatureError, match="not in the configured keyring"):
        resolve(config)


def test_release_gpg_fallback_and_missing_signature(config: Config,
                                                    archive: DebArchive) -> None:
    for suite in ("bookworm", "bookworm-updates", "bookworm-security"):
        (archive.release_dir(suite) / "InRelease").unlink()
    assert resolve(config).package("bash") is not None  # Release + Release.gpg verified
    (archive.release_dir("bookworm") / "Release.gpg").unlink()
    with pytest.raises(SignatureError, match="not signed"):
        Resolver(config).resolve(make_spec(("openssh-server",)))


def test_expired_release(tmp_path: Path, config: Config, archive: DebArchive,
                         server: RepoServer, gpg_key: GpgKey) -> None:
    archive.valid_until["bookworm-security"] = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    archive.publish()
    with pytest.raises(MetadataExpired, match=r"expired on .*check_valid_until: false"):
        resolve(config)
    snapshot = make_config(tmp_path, server.url + "/debian", gpg_key.keyring,
                           check_valid_until=False)
    assert resolve(snapshot).package("bash") is not None


def test_tampered_deb(config: Config, archive: DebArchive) -> None:
    lock = resolve(config)
    deb = archive.deb_path("bash")
    deb.write_bytes(deb.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    cache = fast_cache(config)
    with pytest.raises(ChecksumMismatch, match=r"Checksum mismatch: .*bash"):
        cache.fetch(lock, parallel=1)
    bash = lock.package("bash")
    assert bash is not None and not cache.path_for(bash).exists()
    assert all(e.sha256 != bash.sha256 for e in cache.list())
    no_partial_files(cache.root)


def test_truncated_download(config: Config, server: RepoServer, archive: DebArchive) -> None:
    lock = resolve(config)
    bash = lock.package("bash")
    assert bash is not None
    server.truncate.add(bash.url[len(server.url):])
    cache = fast_cache(config)
    with pytest.raises(DownloadError, match=r"Download failed: .*bash.*after 2 attempts"):
        cache.fetch(lock)
    assert not cache.path_for(bash).exists()
    no_partial_files(cache.root)
    server.truncate.clear()
    assert cache.fetch(lock)["bash"].is_file()  # the next build recovers


def test_stalling_server(config: Config, server: RepoServer) -> None:
    lock = resolve(config)
    libc = lock.package("libc6")
    assert libc is not None
    server.stall.add(libc.url[len(server.url):])
    cache = fast_cache(config, stall_timeout=0.5)
    with pytest.raises(DownloadError, match=r"Download failed: .*libc6.*stalled"):
        cache.fetch(lock)
    assert not cache.path_for(libc).exists()
    no_partial_files(cache.root)


def test_404_for_one_package(config: Config, server: RepoServer) -> None:
    lock = resolve(config)
    udev = lock.package("udev")
    assert udev is not None
    server.missing.add(udev.url[len(server.url):])
    cache = fast_cache(config)
    with pytest.raises(DownloadError, match=r"Download failed: .*udev.*404 Not Found"):
        cache.fetch(lock)
    assert server.count(udev.url[len(server.url):], 404) == 1  # a 404 is not retried
    assert not cache.path_for(udev).exists()
    no_partial_files(cache.root)
    # the other packages that completed are valid entries, each with the right hash
    import hashlib

    for entry in cache.list():
        assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256


def test_release_of_another_suite_is_refused(config: Config, archive: DebArchive) -> None:
    # validly signed, but the updates suite's Release replayed as the release suite's
    import shutil

    shutil.copyfile(archive.release_dir("bookworm-updates") / "InRelease",
                    archive.release_dir("bookworm") / "InRelease")
    with pytest.raises(SignatureError, match="its Release is for bookworm-updates, not "
                                             "bookworm"):
        resolve(config)


def test_ctrl_c_during_download_leaves_no_partial_file(config: Config,
                                                       server: RepoServer) -> None:
    import _thread
    import threading

    from imagecomposer.foundation.errors import BuildInterrupted

    lock = resolve(config)
    libc = lock.package("libc6")
    assert libc is not None
    server.stall.add(libc.url[len(server.url):])  # 100 bytes, then nothing
    cache = fast_cache(config, stall_timeout=1.0)
    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(BuildInterrupted, match="partial downloads were removed"):
        cache.fetch(lock, parallel=2)
    assert not cache.path_for(libc).exists()
    no_partial_files(cache.root)
    import hashlib

    for entry in cache.list():
        assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256
