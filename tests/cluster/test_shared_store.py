"""The shared store (storage.shared_store): atomic publication, verification on read, and
its place in the package cache: a package another host published is taken from it, not
downloaded; a damaged object in it is never served."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import attrs
import pytest

from imagecomposer.cache.shared import SharedStore, copy_tree_atomically
from imagecomposer.cache.store import PackageCache
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import CacheError
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Base, Image, Output, Spec
from tests.fixtures.debrepo import served_debian

DATA = b"package bytes\n" * 100
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_publish_is_atomic_and_reads_are_verified(tmp_path: Path) -> None:
    store = SharedStore(tmp_path / "shared")
    source = tmp_path / "source.deb"
    source.write_bytes(DATA)
    path = store.publish("packages", DIGEST, source, "deb")
    assert path == tmp_path / "shared/packages" / DIGEST[:2] / f"{DIGEST}.deb"
    assert path.read_bytes() == DATA and not list((tmp_path / "shared/.tmp").iterdir())
    assert store.copy_to("packages", DIGEST, tmp_path / "copy.deb", "deb")
    assert (tmp_path / "copy.deb").read_bytes() == DATA

    # content that does not match the name is refused on publication...
    source.write_bytes(b"something else")
    other = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(CacheError, match="refusing to publish"):
        store.publish("packages", other, source, "deb")
    assert not store.has("packages", other, "deb")
    assert not list((tmp_path / "shared/.tmp").iterdir())

    # ...and a damaged object (a partial copy, bit rot) is never served, and is removed
    path.write_bytes(DATA[:50])
    assert not store.copy_to("packages", DIGEST, tmp_path / "again.deb", "deb")
    assert not (tmp_path / "again.deb").exists() and not path.exists()


def test_a_dead_writers_staging_file_is_removed(tmp_path: Path) -> None:
    store = SharedStore(tmp_path / "shared")
    store.publish_bytes("bundles", b"x")
    dead = tmp_path / "shared/.tmp" / f"{socket.gethostname()}-999999999-abc"
    alive = tmp_path / "shared/.tmp" / f"{socket.gethostname()}-{os.getpid()}-abc"
    dead.write_bytes(b"partial")
    alive.write_bytes(b"being written")
    assert store.remove_leftovers() == [dead]
    assert alive.exists()


def test_an_output_directory_is_published_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "image.raw").write_bytes(b"disk")
    final = tmp_path / "store/outputs/name/digest"
    assert copy_tree_atomically(out, final)
    assert (final / "image.raw").read_bytes() == b"disk"
    assert not copy_tree_atomically(out, final)  # already there: left as it is
    assert [p.name for p in final.parent.iterdir()] == ["digest"]


def test_the_package_cache_takes_packages_from_the_shared_store(tmp_path: Path) -> None:
    with served_debian(tmp_path) as config:
        shared = tmp_path / "shared"
        spec = Spec(image=Image("x", Base("debian", "12")), output=Output(sbom=()))
        lock = Resolver(config).resolve(spec).lock

        def host(name: str) -> Config:
            core = attrs.evolve(config.core, cache_dir=tmp_path / name / "cache",
                                work_dir=tmp_path / name / "work")
            return attrs.evolve(config, core=core, storage=attrs.evolve(
                config.storage, shared_store=shared))

        first = PackageCache(host("one")).fetch(lock)
        published = sorted(p.name for p in (shared / "packages").rglob("*.deb"))
        assert published == sorted(f"{p.sha256}.deb" for p in lock.packages)

        # a second host downloads nothing: the archive is gone, the store has it all
        mirror = config.providers["debian"].mirror
        gone = attrs.evolve(config.providers["debian"], mirror="http://127.0.0.1:9/debian")
        second = PackageCache(attrs.evolve(host("two"), providers={"debian": gone}))
        got = second.fetch(lock)
        assert {n: p.read_bytes() for n, p in got.items()} == \
            {n: p.read_bytes() for n, p in first.items()}
        assert mirror != gone.mirror

        # a damaged object in the shared store is not served: the third host downloads
        victim = lock.packages[0]
        target = next((shared / "packages").rglob(f"{victim.sha256}.deb"))
        target.write_bytes(b"damaged")
        third = PackageCache(host("three")).fetch(lock)
        assert hashlib.sha256(third[victim.name].read_bytes()).hexdigest() == victim.sha256
        assert target.read_bytes() != b"damaged"  # published again, whole
