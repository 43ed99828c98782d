"""The build epoch reaches every tool whose output lands in the image, keys the caches whose
content depends on it, and leftovers that differ between builds are removed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from imagecomposer.compose import composer, initramfs, initramfs_cache
from imagecomposer.compose.composer import Composer
from imagecomposer.compose.configure import scripts, users
from imagecomposer.config.model import Config, Core
from imagecomposer.families.deb import install as dpkg_install
from imagecomposer.families.registry import family
from imagecomposer.foundation import normalize
from imagecomposer.foundation.epoch import DEFAULT_EPOCH
from imagecomposer.lock import Lock
from imagecomposer.spec.model import Spec, User
from tests.fixtures.debrepo import Deb

EPOCH = 1_700_000_000
DAY = EPOCH // 86400


@pytest.fixture(autouse=True)
def _no_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def shadow_days(tree: Path) -> dict[str, str]:
    rows = (line.split(":") for line in (tree / "etc/shadow").read_text().splitlines())
    return {row[0]: row[2] for row in rows}


@pytest.mark.root
def test_account_tools_date_password_changes_with_the_epoch(fake_tree: Path) -> None:
    """useradd/usermod/chpasswd write "last password change" as today's day number unless
    SOURCE_DATE_EPOCH is set: two builds on two days differed in /etc/shadow."""
    users.add_user(fake_tree, User(name="alice", groups=("developers",),
                                   password_hash="$6$s$x"), epoch=EPOCH)
    users.root_password(fake_tree, "$6$r$y", epoch=EPOCH)
    days = shadow_days(fake_tree)
    assert days["alice"] == str(DAY) and days["root"] == str(DAY)
    users.add_user(fake_tree, User(name="bob"))  # no epoch given: the default one
    assert shadow_days(fake_tree)["bob"] == str(DEFAULT_EPOCH // 86400)


def test_scripts_and_initramfs_see_the_epoch(fake_tree: Path, spec: Spec,
                                             tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("date\n")
    calls: list[dict[str, Any]] = []

    def chroot(tree: Path, argv: list[str], **kw: Any) -> None:
        calls.append({"argv": argv, **kw})
        if argv[0] == "update-initramfs":
            (tree / f"boot/initrd.img-{argv[-1]}").write_bytes(b"initrd")

    scripts.run_scripts(fake_tree, spec, "post-install", (script,), chroot=chroot,
                        epoch=EPOCH)
    (fake_tree / "boot").mkdir()
    (fake_tree / "boot/vmlinuz-6.1.0-1-amd64").write_bytes(b"kernel")
    (fake_tree / "usr/lib/modules/6.1.0-1-amd64").mkdir(parents=True)
    (fake_tree / "usr/sbin/update-initramfs").write_text("#!/bin/sh\n")
    initramfs.build(fake_tree, chroot=chroot, epoch=EPOCH)
    initramfs.build(fake_tree, chroot=chroot)
    assert [c["env"]["SOURCE_DATE_EPOCH"] for c in calls] == \
        [str(EPOCH), str(EPOCH), str(DEFAULT_EPOCH)]
    assert calls[0]["env"]["IMAGECOMPOSER_SCRIPT"] == "s.sh"


def test_initramfs_cache_is_keyed_by_the_epoch(fake_tree: Path) -> None:
    one = initramfs_cache.key(fake_tree, root_fstype="ext4", epoch=EPOCH)
    assert one == initramfs_cache.key(fake_tree, root_fstype="ext4", epoch=EPOCH)
    assert one != initramfs_cache.key(fake_tree, root_fstype="ext4", epoch=EPOCH + 1)
    assert initramfs_cache.key(fake_tree, root_fstype="ext4") == \
        initramfs_cache.key(fake_tree, root_fstype="ext4", epoch=DEFAULT_EPOCH)


def test_composer_takes_the_epoch_and_keys_the_tree_cache_by_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    lock = Lock(os="debian", version="12", arch="x86_64", kind="deb", repositories=(),
                packages=())
    assert Composer(config).epoch == DEFAULT_EPOCH  # never the clock
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    assert Composer(config).epoch == EPOCH
    explicit = Composer(config, epoch=EPOCH + 1)
    assert explicit.epoch == EPOCH + 1
    assert explicit.tree_key(lock) != Composer(config).tree_key(lock)
    assert explicit.tree_key(lock).startswith(lock.hash)


def test_composer_gives_the_family_installer_its_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Maintainer scripts and scriptlets run inside the family's installer: it gets the
    Composer's epoch (its result is cached under the key that names that epoch)."""
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    lock = Lock(os="debian", version="12", arch="x86_64", kind="deb", repositories=(),
                packages=())
    seen: list[dict[str, Any]] = []

    class Recording:
        def install(self, *args: Any, **kw: Any) -> None:
            seen.append(kw)

    monkeypatch.setattr(composer, "family", lambda kind: Recording())
    Composer(config, epoch=EPOCH).install(lock, {}, tmp_path / "tree")
    Composer(config).install(lock, {}, tmp_path / "tree")
    assert [kw["epoch"] for kw in seen] == [EPOCH, DEFAULT_EPOCH]


def test_leftovers_are_removed_and_links_never_followed(fake_tree: Path,
                                                        tmp_path: Path) -> None:
    host = tmp_path / "host-log"
    host.write_text("host\n")
    for path in ("var/log/dpkg.log", "var/log/apt/history.log", "var/cache/man/index.db",
                 "var/cache/man/fr/index.db",
                 "var/cache/debconf/config.dat-old", "var/cache/ldconfig/aux-cache",
                 "var/lib/systemd/random-seed"):
        (fake_tree / path).parent.mkdir(parents=True, exist_ok=True)
        (fake_tree / path).write_text("2026-01-01 12:00:00 install x\n")
    (fake_tree / "var/log/alternatives.log").symlink_to(host)
    (fake_tree / "var/log/syslog").write_text("kept\n")
    assert normalize.remove_leftovers(fake_tree) == ["/var/cache/ldconfig/aux-cache",
                                                     "/var/lib/systemd/random-seed",
                                                     "/var/cache/man/index.db",
                                                     "/var/cache/man/fr/index.db"]
    removed = normalize.remove_leftovers(fake_tree, family("deb").leftovers)
    assert set(removed) == {"/var/log/dpkg.log", "/var/log/apt/history.log",
                            "/var/cache/debconf/config.dat-old", "/var/log/alternatives.log"}
    assert not (fake_tree / "var/log/alternatives.log").is_symlink()
    assert host.read_text() == "host\n"  # the link went, not its target
    assert (fake_tree / "var/log/syslog").read_text() == "kept\n"
    assert normalize.remove_leftovers(fake_tree, family("deb").leftovers) == []
    assert "/var/log/dnf.rpm.log" in family("rpm").leftovers


def test_essential_extraction_restores_no_times(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The Essential packages are extracted in parallel and share directories: a shared
    directory got the packaged time of whichever tar finished last (seen as /usr/share/man/ru
    differing between two builds of one lock). No time is restored now; dpkg --unpack
    writes every file again with its packaged time right after."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")  # dpkg-deb: entries from 2001
    debs = [Deb(f"icrepro-shared-{i}", files={f"/usr/share/man/xx/man{i}/page{i}.1": b"."})
            .build(tmp_path) for i in (1, 2, 3, 4, 5)]
    tree = tmp_path / "tree"
    tree.mkdir()
    started = time.time()
    dpkg_install.extract(debs, tree)
    entries = list((tree / "usr").rglob("*"))
    assert len(entries) == 13
    assert all(path.lstat().st_mtime >= started - 1 for path in entries)
