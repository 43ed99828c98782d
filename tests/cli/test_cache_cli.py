"""`imagecomposer cache list|prune|clean` through a real process: one table covering all five
caches, entries with --verbose or --cache NAME, and list and clean --dry-run counting the
same entries."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagecomposer.cache.images import CacheKey, ImageCache
from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.cache.registry import Caches
from imagecomposer.cache.report import CacheListing
from imagecomposer.cache.store import package_store
from imagecomposer.cache.trees import TreeCache
from imagecomposer.config.model import Config, Core
from imagecomposer.families.metadata import MetadataStore
from imagecomposer.foundation.http import Http


def run(cache: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMAGECOMPOSER_") or k == "IMAGECOMPOSER_SEAL_KEY"}
    env.update(IMAGECOMPOSER_CACHE_DIR=str(cache), HOME=str(cache.parent))
    done = subprocess.run([sys.executable, "-m", "imagecomposer", "cache", *args],
                          capture_output=True, text=True, env=env, cwd=cache.parent,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}


@pytest.fixture
def filled(tmp_path: Path) -> Config:
    """Two entries in each of the five caches, written through their own APIs."""
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    packages = package_store(config.package_cache_dir, config)
    for name in ("bash", "dash"):
        data = f"package {name}".encode()
        sha = hashlib.sha256(data).hexdigest()
        packages.write(f"objects/{sha[:2]}/{sha}.deb", lambda p, d=data: p.write_bytes(d),
                       meta={"label": f"{name} 1.0 amd64"})
    metadata = MetadataStore.for_config(config, Http(()))
    metadata.put_index(b"Package: bash\n", ".xz")
    metadata.remember_verified(b"signed", Path(__file__), "text")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text("ID=debian\n")
    trees = TreeCache.for_config(config)
    trees.store("a" * 64, tree)
    trees.store("b" * 64, tree)
    initramfs = InitramfsCache.for_config(config)
    for key in ("1" * 64, "2" * 64):
        initramfs.store(key, {"initrd.img-6.1": b"i"}, label="initrd.img-6.1")
    images = ImageCache.for_config(config)
    out = tmp_path / "out"
    out.mkdir()
    (out / "edge.raw").write_bytes(b"raw image")
    for lock in ("aa", "bb"):
        images.store(CacheKey("edge", lock * 32, (("lock", lock * 32),)), out)
    return config


def test_list_prune_clean_through_the_command(filled: Config) -> None:
    cache = filled.core.cache_dir
    listed = run(cache, "list")
    table = rows(listed)
    assert listed.splitlines()[0].split() == ["cache", "entries", "size", "limits",
                                              "oldest", "use", "newest", "use", "directory"]
    for name in ("packages", "metadata", "trees", "initramfs", "images"):
        assert table[name][1] == "2", listed
        assert str(cache / name) in " ".join(table[name])
    assert table["total"][1] == "10"
    assert "5 per image, 20.0 GiB, 30 days" in listed
    assert "bash 1.0 amd64" not in listed  # entries only when asked for
    verbose = Caches(filled).list().table(entries=True)  # what --verbose prints
    assert verbose.startswith(listed.rstrip("\n"))
    assert "bash 1.0 amd64" in verbose and "edge " in verbose and "initrd.img-6.1" in verbose
    assert "111111111111 initrd.img-6.1" in verbose and "gpgv verdict " in verbose
    only = run(cache, "list", "--cache", "trees", "--cache", "initramfs")
    assert set(rows(only)) >= {"trees", "initramfs", "total"} and "packages" not in rows(only)
    assert "lock aaaaaaaaaaaaaaaa" in only  # the trees' entries

    # clean --dry-run counts what list counts, and removes nothing
    dry = run(cache, "clean", "--dry-run")
    assert dry.splitlines()[0] == "cache clean (dry run): would remove"
    assert {n: r[1] for n, r in rows(dry).items() if n != "cache"} == \
        {n: r[1] for n, r in table.items() if n != "cache"}
    assert rows(run(cache, "list"))["total"][1] == "10"

    # prune finds a damaged package (checked against its name) and nothing else
    victim = next((cache / "packages/objects").glob("*/*.deb"))
    victim.write_bytes(b"damaged")
    pruned = run(cache, "prune", "-v")
    assert rows(pruned)["packages"][1:2] == ["1"] and rows(pruned)["total"][1] == "1"
    assert "damaged: its SHA256 is" in pruned and not victim.exists()

    cleaned = run(cache, "clean", "--images-only")  # the old flag: --cache images
    assert rows(cleaned)["images"][1] == "2" and rows(cleaned)["total"][1] == "2"
    after = Caches(filled).list()
    assert after["images"].count == 0 and after["trees"].count == 2 and after.count == 7


def test_listing_objects_for_python_and_jupyter(filled: Config) -> None:
    listing = Caches(filled).list()
    assert isinstance(listing, CacheListing)
    text = repr(listing)
    assert text.startswith("<CacheListing 10 entries") and len(text) < 200
    page = listing._repr_html_()
    assert page.startswith("<table>") and page.count("<tr>") == 7  # header, 5, total
    trees = listing["trees"]
    assert repr(trees).startswith("<cache trees: 2 entries") and "lock aaaa" in str(trees)
    assert trees._repr_html_().count("<tr>") == 3
    removal = Caches(filled).clean(dry_run=True, only=["images"])
    assert repr(removal).startswith("<CacheRemoval clean: would remove 2 entries")
    assert "<table>" in removal._repr_html_()
