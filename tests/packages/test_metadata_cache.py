"""The metadata cache repairs itself (issue 18, item 9).

Each test warms the cache from the fixture archive, damages one cached object the way a
disk or a hand edit would, and checks that the next load detects it, warns, and fetches
or rebuilds it, instead of failing on every run or using it silently. The fixture server
answers conditional requests with 304, as real mirrors do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import shutil
from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import ImageComposerError, RepositoryError
from imagecomposer.lock import Lock
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import DebArchive, GpgKey, RepoServer, base_system
from tests.packages.conftest import make_config, make_spec

INDEX = "main/binary-amd64/Packages.xz"


def resolve(config: Config) -> Lock:
    return Resolver(config).resolve(make_spec(("openssh-server",))).lock


def version(lock: Lock, name: str) -> str:
    package = lock.package(name)
    assert package is not None
    return package.version


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def inrelease(config: Config, server: RepoServer, suite: str = "bookworm") -> Path:
    url = f"{server.url}/debian/dists/{suite}/InRelease"
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return config.metadata_cache_dir / "docs" / digest / "body"


def index_sha(archive: DebArchive, suite: str = "bookworm") -> str:
    return hashlib.sha256((archive.release_dir(suite) / INDEX).read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["flipped", "flipped-and-recorded"])
def test_damaged_cached_inrelease_behind_a_304_is_fetched_again(
        config: Config, server: RepoServer, damage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    resolve(config)
    resolve(config)
    assert server.count("/bookworm/InRelease", 304) == 1  # the mirror revalidates with 304
    cached = inrelease(config, server)
    data = bytearray(cached.read_bytes())
    data[data.index(b"Suite: bookworm") + 7] ^= 0x20  # "Suite: Bookworm"
    cached.write_bytes(bytes(data))
    if damage == "flipped-and-recorded":  # the record agrees: only gpgv can tell
        record = cached.with_name("record.json")
        meta = json.loads(record.read_text())
        meta["sha256"] = hashlib.sha256(data).hexdigest()
        record.write_text(json.dumps(meta))
    fresh = server.count("/bookworm/InRelease", 200)
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)  # no "BAD signature": fetched again, verified
    assert version(lock, "bash") == "5.2.15-2"
    assert server.count("/bookworm/InRelease", 200) == fresh + 1  # not conditional: a 200
    found = warnings(caplog)
    assert len(found) == 1 and "bookworm/InRelease" in found[0], found
    assert "without a conditional request" in found[0]
    revalidated = server.count("/bookworm/InRelease", 304)
    resolve(config)
    assert server.count("/bookworm/InRelease", 304) == revalidated + 1  # repaired: a 304


def test_edited_verified_entry_is_not_trusted(tmp_path: Path, www: Path, gpg_key: GpgKey,
                                              server: RepoServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    archive = DebArchive(www / "debian", gpg_key, by_hash=True)
    archive.add("bookworm", *base_system())
    archive.add("bookworm-updates")
    archive.add("bookworm-security")
    archive.publish()
    config = make_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    resolve(config)
    real = index_sha(archive)
    entry = next(p for p in (config.metadata_cache_dir / "verified").iterdir()
                 if "Suite: bookworm\n" in p.read_text() and real in p.read_text())
    entry.write_text(entry.read_text().replace(real, "0" * 64))  # names another index
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)  # before: a 404 for by-hash/SHA256/000... on every run
    assert version(lock, "bash") == "5.2.15-2"
    assert any(str(entry) in w and "checking the signature again" in w
               for w in warnings(caplog))
    assert real in entry.read_text()  # written again from gpgv's output


def test_damaged_by_hash_index_is_downloaded_again(config: Config, archive: DebArchive,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    resolve(config)
    cached = config.metadata_cache_dir / "by-hash" / f"{index_sha(archive)}.xz"
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    shutil.rmtree(config.metadata_cache_dir / "solv")  # so the index is read again
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)  # before: an LZMAError traceback on every run
    assert version(lock, "bash") == "5.2.15-2"
    assert any(str(cached) in w and "downloading it again" in w for w in warnings(caplog))
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == index_sha(archive)


def test_broken_index_of_the_repository_is_a_clear_error(config: Config, archive: DebArchive,
                                                        gpg_key: GpgKey) -> None:
    # the repository signs a Packages.xz that is not xz: one error, no LZMAError traceback
    dist = archive.release_dir("bookworm")
    good = (dist / INDEX).read_bytes()
    broken = good[: len(good) // 2]
    (dist / INDEX).write_bytes(broken)
    release = (dist / "Release").read_text().replace(
        f" {hashlib.sha256(good).hexdigest()} {len(good):>8} {INDEX}",
        f" {hashlib.sha256(broken).hexdigest()} {len(broken):>8} {INDEX}")
    (dist / "Release").write_text(release)
    (dist / "InRelease").write_bytes(gpg_key.sign(release.encode(), clearsign=True))
    with pytest.raises(RepositoryError, match=r"Packages\.xz cannot be decompressed") as info:
        resolve(config)
    assert isinstance(info.value, ImageComposerError)
    assert not isinstance(info.value.__cause__, lzma.LZMAError)


def test_damaged_solv_cache_is_rebuilt(config: Config, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    resolve(config)
    solv = max((config.metadata_cache_dir / "solv").glob("*/pool.solv"),
               key=lambda p: p.stat().st_size)  # bookworm's, with the base system
    good = solv.read_bytes()
    assert b"5.2.15-2" in good
    solv.write_bytes(good.replace(b"5.2.15-2", b"5.2.15-3"))  # a flipped bit, still loads
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)
    assert version(lock, "bash") == "5.2.15-2"  # before: 5.2.15-3, used silently
    assert any(str(solv) in w and "rebuilding it" in w for w in warnings(caplog))
    assert solv.read_bytes() == good
    # the sidecar (Essential, Priority, alternatives) is checked too
    sidecar = solv.with_suffix(".json")
    facts = json.loads(sidecar.read_text())
    facts["essential"] = []
    sidecar.write_text(json.dumps(facts))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resolve(config)
    assert any(str(solv) in w and "json does not match" in w for w in warnings(caplog))
    assert json.loads(sidecar.read_text())["essential"] != []
