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
import os
import shutil
from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.families.deb import release as rel
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
                 if "Suite: bookworm\n" in verdict(p) and real in verdict(p))
    entry.write_text(entry.read_text().replace(real, "0" * 64))  # names another index
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)  # before: a 404 for by-hash/SHA256/000... on every run
    assert version(lock, "bash") == "5.2.15-2"
    assert any(str(entry) in w and "checking the signature again" in w
               for w in warnings(caplog))
    assert real in entry.read_text()  # written again from gpgv's output


def verdict(path: Path) -> str:
    """The text a cached gpgv verdict holds."""
    text: str = json.loads(path.read_text())["text"]
    return text


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


# --- someone who can write the cache (issue 18: no tampered cache entry is ever used) ----------


def test_a_pool_and_its_checksum_record_replaced_together_are_refused(
        config: Config, caplog: pytest.LogCaptureFixture) -> None:
    resolve(config)
    solv = max((config.metadata_cache_dir / "solv").glob("*/pool.solv"),
               key=lambda p: p.stat().st_size)  # bookworm's, with the base system
    good = solv.read_bytes()
    forged = good.replace(b"5.2.15-2", b"5.2.15-9")  # a newer bash, of the attacker's
    solv.write_bytes(forged)
    sums_path = solv.with_name("pool.sum")
    sums = json.loads(sums_path.read_text())
    sums["solv"] = hashlib.sha256(forged).hexdigest()  # the record made to match
    sums_path.write_text(json.dumps(sums))
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)
    assert version(lock, "bash") == "5.2.15-2"  # before: 5.2.15-9, the forged pool
    assert any(str(solv) in w and "seal does not match" in w for w in warnings(caplog))
    assert solv.read_bytes() == good  # rebuilt from the verified index


def _verified_entry(config: Config, signed: bytes, keyrings: list[Path]) -> Path:
    """The cache's gpgv verdict for ``signed`` (under whichever keyring gpgv was given)."""
    for keyring in keyrings:
        digest = hashlib.sha256(signed)
        digest.update(hashlib.sha256(keyring.read_bytes()).digest())
        path = config.metadata_cache_dir / "verified" / digest.hexdigest()
        if path.exists():
            return path
    raise AssertionError("no verdict for these bytes")


@pytest.mark.parametrize("verdict_form", ["plain text", "with a seal copied"])
def test_a_forged_release_with_a_forged_verdict_is_refused(
        config: Config, archive: DebArchive, server: RepoServer, gpg_key: GpgKey,
        verdict_form: str, caplog: pytest.LogCaptureFixture) -> None:
    """A cached gpgv verdict stands for a signature check: whoever can write the cache must
    not be able to make one. Here the attacker rewrites the cached InRelease (its record
    too, so the mirror's 304 keeps it) to name an index of theirs, plants that index, and
    plants the verdict that lets the forged InRelease skip gpgv."""
    resolve(config)
    body = inrelease(config, server)
    real_bytes = body.read_bytes()
    keyrings = [gpg_key.keyring, *(config.metadata_cache_dir / "keyrings").rglob("*")]
    keyrings = [k for k in keyrings if k.is_file()]
    real_verdict = _verified_entry(config, real_bytes, keyrings)
    keyring = next(k for k in keyrings if _verified_entry(config, real_bytes, [k]) ==
                   real_verdict)
    # the attacker's index: bash 5.2.15-9
    real_sha = index_sha(archive)
    good_index = (config.metadata_cache_dir / "by-hash" / f"{real_sha}.xz").read_bytes()
    evil_index = lzma.compress(lzma.decompress(good_index).replace(b"5.2.15-2", b"5.2.15-9"))
    evil_sha = hashlib.sha256(evil_index).hexdigest()
    (config.metadata_cache_dir / "by-hash" / f"{evil_sha}.xz").write_bytes(evil_index)
    real_line = f" {real_sha} {len(good_index):>8} {INDEX}"
    assert real_line in real_bytes.decode()
    evil_bytes = real_bytes.replace(real_line.encode(),
                                    f" {evil_sha} {len(evil_index):>8} {INDEX}".encode())
    body.write_bytes(evil_bytes)
    record_path = body.with_name("record.json")
    record = json.loads(record_path.read_text())
    record["sha256"] = hashlib.sha256(evil_bytes).hexdigest()  # etag kept: the mirror says 304
    record_path.write_text(json.dumps(record))
    shutil.rmtree(config.metadata_cache_dir / "solv")
    text = rel.cleartext(evil_bytes)
    assert text is not None
    digest = hashlib.sha256(evil_bytes)
    digest.update(hashlib.sha256(keyring.read_bytes()).digest())
    forged = config.metadata_cache_dir / "verified" / digest.hexdigest()
    if verdict_form == "plain text":  # what the cache held before verdicts were sealed
        forged.write_text(text)
    else:
        forged.write_text(json.dumps({"text": text,
                                      "seal": json.loads(real_verdict.read_text())["seal"]}))
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)
    assert version(lock, "bash") == "5.2.15-2"  # before: 5.2.15-9 from the forged index
    assert any(str(forged) in w and "not a sealed verdict" in w for w in warnings(caplog))
    assert body.read_bytes() == real_bytes  # fetched again without a conditional request


def test_a_keyring_planted_in_the_cache_does_not_decide_trust(
        tmp_path: Path, archive: DebArchive, server: RepoServer, gpg_key: GpgKey,
        rogue_key: GpgKey, caplog: pytest.LogCaptureFixture) -> None:
    """An armored key is dearmored for gpgv; that keyring decides which signatures are
    accepted, so it is never kept in the cache. Here the attacker replaces it (where it was
    kept) with their own key, and rewrites the cached InRelease, signed by that key, to name
    an index of theirs."""
    config = make_config(tmp_path, server.url + "/debian", gpg_key.armored)
    resolve(config)
    metadata = config.metadata_cache_dir
    real_sha = index_sha(archive)
    good_index = (metadata / "by-hash" / f"{real_sha}.xz").read_bytes()
    evil_index = lzma.compress(lzma.decompress(good_index).replace(b"5.2.15-2", b"5.2.15-9"))
    evil_sha = hashlib.sha256(evil_index).hexdigest()
    (metadata / "by-hash" / f"{evil_sha}.xz").write_bytes(evil_index)
    body = inrelease(config, server)
    real_bytes = body.read_bytes()
    text = rel.cleartext(real_bytes)
    assert text is not None
    real_line = f" {real_sha} {len(good_index):>8} {INDEX}"
    evil_bytes = rogue_key.sign(
        text.replace(real_line, f" {evil_sha} {len(evil_index):>8} {INDEX}").encode(),
        clearsign=True)
    body.write_bytes(evil_bytes)
    record_path = body.with_name("record.json")
    record = json.loads(record_path.read_text())
    record["sha256"] = hashlib.sha256(evil_bytes).hexdigest()  # etag kept: the mirror says 304
    record_path.write_text(json.dumps(record))
    planted = metadata / "keyrings" / \
        f"{hashlib.sha256(gpg_key.armored.read_bytes()).hexdigest()[:24]}.gpg"
    planted.parent.mkdir(exist_ok=True)
    # the real key and theirs: everything else still verifies
    planted.write_bytes(gpg_key.keyring.read_bytes() + rogue_key.keyring.read_bytes())
    shutil.rmtree(metadata / "solv")
    with caplog.at_level(logging.WARNING):
        lock = resolve(config)
    assert version(lock, "bash") == "5.2.15-2"  # before: 5.2.15-9, signed by the rogue key
    assert body.read_bytes() == real_bytes  # fetched again without a conditional request
    assert [p.name for p in planted.parent.iterdir()] == [planted.name]  # none of ours


def test_private_keyring_directories_of_killed_builds_go(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepared keyrings live outside the cache, in a directory of the process; a killed
    build cannot remove its own, so the next one does (those of live processes stay)."""
    import subprocess

    from imagecomposer.families.metadata import MetadataStore
    from imagecomposer.foundation.http import Http

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    child = subprocess.Popen(["true"])
    child.wait()
    dead = tmp_path / f"ic-metadata-{child.pid}-abc123"
    (dead / "keyrings").mkdir(parents=True)
    alive = tmp_path / f"ic-metadata-{os.getppid()}-def456"
    alive.mkdir()
    store = MetadataStore(tmp_path / "cache", Http(()))
    private = store.private_dir("keyrings")
    assert private.parent.name.startswith(f"ic-metadata-{os.getpid()}-")
    assert private.parent.stat().st_mode & 0o777 == 0o700
    assert not dead.exists() and alive.exists()
    del store
    import gc

    gc.collect()
    assert not private.exists()  # removed with its store
