"""No damaged or replaced package is ever taken from the store (issue 18, item 2).

Each test warms the store from the fixture archive, then damages one object the way a
disk, a careless user or an attacker with write access would, and checks the next fetch
neither uses it nor fails with a misleading error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest

from imagecomposer.cache import PackageCache
from imagecomposer.cli.main import main
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import CacheError
from imagecomposer.lock import Lock, LockedPackage
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import DebArchive, RepoServer
from tests.packages.conftest import make_spec


@pytest.fixture
def lock(config: Config) -> Lock:
    return Resolver(config).resolve(make_spec(("openssh-server",))).lock


def package(lock: Lock, name: str) -> LockedPackage:
    found = lock.package(name)
    assert found is not None
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def replace_same_size(path: Path, other: Path) -> None:
    """Another real .deb in its place, cut or padded to the same size (still "!<arch>")."""
    size = path.stat().st_size
    path.write_bytes(other.read_bytes()[:size].ljust(size, b"\n"))


@pytest.mark.parametrize("damage", ["replaced", "flipped"])
def test_damaged_entry_is_evicted_and_fetched_again(
        config: Config, lock: Lock, server: RepoServer, archive: DebArchive, damage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    cache = PackageCache(config)
    cache.fetch(lock)
    bash = package(lock, "bash")
    path = cache.path_for(bash)
    if damage == "replaced":
        replace_same_size(path, archive.deb_path("openssh-server"))
    else:
        flip_byte(path)
    assert path.stat().st_size == bash.size and sha256(path) != bash.sha256
    downloads = server.count(Path(bash.url).name)
    with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
        paths = PackageCache(config).fetch(lock)
    assert sha256(paths["bash"]) == bash.sha256  # the good package, downloaded again
    assert server.count(Path(bash.url).name) == downloads + 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "bash" in warnings[0] and str(path) in warnings[0]
    # every other package came from the store, each checked
    assert all(sha256(paths[p.name]) == p.sha256 for p in lock.packages)


def test_offline_fetch_names_a_damaged_entry(config: Config, lock: Lock, tmp_path: Path,
                                             server: RepoServer) -> None:
    from imagecomposer.pipeline.packages import run_packages_stage

    lock_path = tmp_path / "out" / "packages.lock.json"
    first = run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path)
    first.cache.close()
    bash = package(first.lock, "bash")
    path = first.cache.path_for(bash)
    flip_byte(path)
    # --locked with everything cached: offline, so a bad entry is an error naming it
    with pytest.raises(CacheError, match=rf"(?s)damaged.*evicted.*\n  bash {bash.version}: "
                                         rf"{re.escape(str(path))}: SHA256 "):
        run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path,
                           locked=True)
    assert not path.exists()  # evicted: the next locked build downloads it again
    again = run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path,
                               locked=True)
    assert sha256(again.packages["bash"]) == bash.sha256


def test_prune_removes_objects_that_do_not_match_their_name(
        config: Config, lock: Lock, caplog: pytest.LogCaptureFixture) -> None:
    cache = PackageCache(config)
    cache.fetch(lock)
    bash = package(lock, "bash")
    flip_byte(cache.path_for(bash))
    assert [e.name for e in cache.prune(dry_run=True)] == ["bash"]
    assert cache.path_for(bash).exists()
    with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
        assert [e.name for e in cache.prune()] == ["bash"]
    assert not cache.path_for(bash).exists() and "bash" in caplog.text
    assert len(cache.list()) == len(lock.packages) - 1
    assert cache.prune() == []  # the rest is intact


def test_cache_cli_lists_and_prunes_readably(config: Config, lock: Lock, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no configuration file of the machine
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("IMAGECOMPOSER_CONFIG", raising=False)
    monkeypatch.setenv("IMAGECOMPOSER_CACHE_DIR", str(config.core.cache_dir))
    cache = PackageCache(config)
    cache.fetch(lock)
    flip_byte(cache.path_for(package(lock, "udev")))
    assert main(["cache", "list", "--cache", "packages"]) == 0
    listed = capsys.readouterr().out
    assert "CacheEntry(" not in listed and "PosixPath" not in listed
    summary = next(line for line in listed.splitlines() if line.startswith("packages "))
    assert summary.split()[:2] == ["packages", str(len(lock.packages))]
    assert str(config.package_cache_dir) in summary
    assert any(line.split()[:2] == ["bash", "5.2.15-2"] for line in listed.splitlines())
    assert main(["cache", "prune", "--dry-run", "--packages-only"]) == 0  # the old flag
    out = capsys.readouterr().out
    assert out.startswith("cache prune (dry run): would remove")
    row = next(line for line in out.splitlines() if line.startswith("packages "))
    assert row.split()[1] == "1" and row.split()[4] == "1"  # 1 entry, 1 damaged
    assert main(["cache", "prune", "--cache", "packages"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cache prune: removed") and "udev" in out and "damaged" in out
    assert not cache.path_for(package(lock, "udev")).exists()
