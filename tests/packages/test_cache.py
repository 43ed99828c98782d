"""The content-addressed package cache: hits, offline, eviction, throwaway, concurrency."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from pathlib import Path

import attrs
import pytest

from imagecomposer.cache import Caches, PackageCache
from imagecomposer.config.model import Config, PackageCacheConfig, Storage
from imagecomposer.families import provider_for
from imagecomposer.foundation.console import Console
from imagecomposer.foundation.errors import CacheError
from imagecomposer.foundation.events import FetchFinished, FetchStarted, PackageFetched
from imagecomposer.lock import Lock
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import RepoServer
from tests.packages.conftest import make_spec


@pytest.fixture
def lock(config: Config) -> Lock:
    return Resolver(config).resolve(make_spec(("openssh-server",))).lock


def test_fetch_then_hit(config: Config, lock: Lock, server: RepoServer) -> None:
    events: list[object] = []
    cache = PackageCache(config)
    spec = make_spec()
    paths = cache.fetch(lock, parallel=4, provider=provider_for(spec, config),
                        events=events.append)
    assert set(paths) == {p.name for p in lock.packages}
    for package in lock.packages:
        assert hashlib.sha256(paths[package.name].read_bytes()).hexdigest() == package.sha256
    assert events[0] == FetchStarted(len(lock.packages), 0, len(lock.packages),
                                     sum(p.size for p in lock.packages))
    finished = events[-1]
    assert isinstance(finished, FetchFinished) and finished.downloaded == len(lock.packages)
    before = server.count(".deb")
    events.clear()
    again = PackageCache(config).fetch(lock, events=events.append)
    assert again == paths and server.count(".deb") == before  # zero downloads
    assert all(isinstance(e, PackageFetched) and not e.downloaded
               for e in events[1:-1])
    # offline works when everything is cached
    assert PackageCache(config).fetch(lock, offline=True) == paths
    listed = {e.name: e for e in cache.list()}
    assert listed["bash"].version == "5.2.15-2" and listed["bash"].size > 0


def test_offline_missing(config: Config, lock: Lock) -> None:
    with pytest.raises(CacheError, match=r"offline: \d+ package\(s\) of the lock are not"):
        PackageCache(config).fetch(lock, offline=True)


def test_throwaway_store(config: Config, lock: Lock) -> None:
    with PackageCache(config, enabled=False) as cache:
        paths = cache.fetch(lock)
        assert all(p.is_file() for p in paths.values())
        assert config.core.work_dir in cache.root.parents
    assert not cache.root.exists()
    assert not config.package_cache_dir.exists() or not list(
        config.package_cache_dir.rglob("*.deb"))


def test_prune_retention_and_size(config: Config, lock: Lock) -> None:
    cache = PackageCache(config)
    cache.fetch(lock)
    old = lock.package("bash")
    assert old is not None
    key = cache.path_for(old).relative_to(cache.root).as_posix()
    cache.storage.touch([key], when=time.time() - 40 * 86400)  # last used 40 days ago
    would = cache.prune(dry_run=True)
    assert [e.name for e in would] == ["bash"] and cache.path_for(old).exists()
    assert [e.name for e in cache.prune()] == ["bash"] and not cache.path_for(old).exists()
    # size limit: evict least recently used first
    tiny = attrs.evolve(config, storage=Storage(package_cache=PackageCacheConfig(
        max_size_gb=1e-9)))
    removed = PackageCache(tiny).prune()
    assert len(removed) == len(lock.packages) - 1 and PackageCache(tiny).list() == []


def test_clean(config: Config, lock: Lock) -> None:
    cache = PackageCache(config)
    cache.fetch(lock)
    assert len(cache.clean(dry_run=True)) == len(lock.packages)
    assert len(cache.list()) == len(lock.packages)
    assert len(cache.clean()) == len(lock.packages)
    assert cache.list() == [] and json.loads((cache.root / ".store.json").read_text()) == {
        "format": 1, "entries": {}}  # no bookkeeping left either


def test_concurrent_builds_share_the_store(config: Config, lock: Lock) -> None:
    results: list[dict[str, Path]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(PackageCache(config).fetch(lock, parallel=3))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 3 and results[0] == results[1] == results[2]
    listed = PackageCache(config).list()
    assert {e.sha256 for e in listed} == {p.sha256 for p in lock.packages}
    assert {e.name for e in listed} == {p.name for p in lock.packages}  # all recorded


def test_progress_plain_lines(config: Config, lock: Lock,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="imagecomposer.pipeline.packages")
    PackageCache(config).fetch(lock, events=Console(io.StringIO(), tty=False))
    text = caplog.text
    assert f"packages: downloaded {len(lock.packages)} packages" in text
    assert "to download" not in text  # its counts are in that one line; the rest is DEBUG


def test_progress_bar_on_tty(config: Config, lock: Lock) -> None:
    out = io.StringIO()
    PackageCache(config).fetch(lock, events=Console(out, tty=True))
    bar = out.getvalue()
    assert f"{len(lock.packages)}/{len(lock.packages)} packages" in bar
    assert "/s ETA" in bar and "\r" in bar


def test_packages_stage_then_locked_rebuild(config: Config, server: RepoServer,
                                            tmp_path: Path) -> None:
    from imagecomposer.pipeline.packages import run_packages_stage

    lock_path = tmp_path / "out" / "packages.lock.json"
    first = run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path)
    first.cache.close()
    assert Lock.read(lock_path) == first.lock and first.resolution is not None
    downloads = server.count(".deb")
    assert downloads == len(first.lock.packages)
    metadata = server.count("InRelease")
    again = run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path,
                               locked=True)
    assert again.packages == first.packages and again.resolution is None
    assert server.count(".deb") == downloads and server.count("InRelease") == metadata
    # --no-package-cache: a throwaway store, gone after close()
    throwaway = run_packages_stage(make_spec(("openssh-server",)), config,
                                   lock_path=lock_path, locked=True, use_package_cache=False)
    assert server.count(".deb") == 2 * downloads
    throwaway.cache.close()
    assert not throwaway.cache.root.exists()


def test_parts_of_a_killed_build_are_removed(config: Config, lock: Lock) -> None:
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    cache = PackageCache(config)
    staging = cache.root / ".tmp"
    stale = staging / f"{dead.pid}-0a1b"  # a download of a killed build (pid gone)
    stale.mkdir(parents=True)
    (stale / ".entry.part-1-2").write_bytes(b"half a package")
    mine = staging / "1-2c3d"  # pid 1 is alive: someone else's download in progress, kept
    mine.mkdir()
    (mine / ".entry.part-3-4").write_bytes(b"someone else's download in progress")
    cache.fetch(lock)
    assert not stale.exists() and mine.exists()
    assert len(cache.list()) == len(lock.packages)


def test_listing_and_dry_run_clean_count_the_same(config: Config, lock: Lock) -> None:
    cache = PackageCache(config)
    cache.fetch(lock)
    listing = Caches(config).list(["packages"])
    info = listing["packages"]
    assert info.count == len(lock.packages) == len(cache.list())
    assert "bash 5.2.15-2 amd64" in info.table() and repr(cache).startswith("PackageCache(")
    removal = Caches(config).clean(dry_run=True, only=["packages"])
    assert removal.count == info.count and removal.bytes == info.size
    assert removal.table().splitlines()[0] == "cache clean (dry run): would remove"
    assert len(cache.list()) == len(lock.packages)  # nothing removed
