"""Paths with chroot semantics, and the system settings (hostname, time zone, locale ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagecomposer.compose.configure import paths, system
from imagecomposer.foundation.errors import ComposeError


def test_write_replaces_a_symlink_and_stays_in_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").symlink_to(outside)
    (tree / "lib").symlink_to("/usr/lib")  # a directory symlink on the way is followed
    assert paths.write(tree, "/etc/hostname", "x\n", mode=0o600) == tree / "etc/hostname"
    assert outside.read_text() == "keep"  # the host file is untouched
    written = tree / "etc/hostname"
    assert not written.is_symlink() and written.read_text() == "x\n"
    assert written.stat().st_mode & 0o777 == 0o600
    assert paths.write(tree, "/lib/x", "y") == tree / "usr/lib/x"
    assert paths.installed(tree, "/lib/x") and not paths.installed(tree, "/lib/none")


def test_hostname_and_hosts(fake_tree: Path) -> None:
    system.hostname(fake_tree, "web1.example.test")
    assert (fake_tree / "etc/hostname").read_text() == "web1.example.test\n"
    hosts = (fake_tree / "etc/hosts").read_text()
    assert "127.0.0.1\tlocalhost\n" in hosts
    assert "127.0.1.1\tweb1.example.test\tweb1\n" in hosts
    assert "::1" in hosts


@pytest.mark.parametrize("bad", ["-bad", "a_b", "x" * 64, "a..b", ""])
def test_invalid_hostname(fake_tree: Path, bad: str) -> None:
    with pytest.raises(ComposeError, match="invalid host name"):
        system.hostname(fake_tree, bad)


def test_timezone_with_tzdata(fake_tree: Path) -> None:
    zone = fake_tree / "usr/share/zoneinfo/Europe/Paris"
    zone.parent.mkdir(parents=True)
    zone.write_bytes(b"TZif")
    system.timezone(fake_tree, "Europe/Paris")
    assert (fake_tree / "etc/localtime").readlink() == Path("/usr/share/zoneinfo/Europe/Paris")
    assert (fake_tree / "etc/timezone").read_text() == "Europe/Paris\n"
    with pytest.raises(ComposeError, match="unknown time zone"):
        system.timezone(fake_tree, "Mars/Olympus")


def test_timezone_without_tzdata(fake_tree: Path) -> None:
    system.timezone(fake_tree, "UTC")  # fine: UTC is the default without tzdata
    assert (fake_tree / "etc/timezone").read_text() == "UTC\n"
    assert not (fake_tree / "etc/localtime").exists()
    with pytest.raises(ComposeError, match="needs the tzdata package"):
        system.timezone(fake_tree, "Europe/Paris")
    with pytest.raises(ComposeError, match="invalid time zone"):
        system.timezone(fake_tree, "../../etc/passwd")


def test_locale_c_needs_no_generation(fake_tree: Path) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("locale-gen must not run for C.UTF-8")

    system.locale(fake_tree, "C.UTF-8", chroot=boom)
    assert (fake_tree / "etc/default/locale").read_text() == "LANG=C.UTF-8\n"


def test_locale_is_generated_in_the_image(fake_tree: Path) -> None:
    calls: list[list[str]] = []
    (fake_tree / "usr/sbin/locale-gen").write_text("#!/bin/sh\n")
    (fake_tree / "etc/locale.gen").write_text("# de_DE.UTF-8 UTF-8\n# en_US.UTF-8 UTF-8\n")
    system.locale(fake_tree, "en_US.UTF-8", chroot=lambda tree, argv, **kw: calls.append(argv))
    assert calls == [["locale-gen"]]
    assert (fake_tree / "etc/locale.gen").read_text() == "# de_DE.UTF-8 UTF-8\nen_US.UTF-8 UTF-8\n"
    assert (fake_tree / "etc/default/locale").read_text() == "LANG=en_US.UTF-8\n"


def test_locale_without_locales_package(fake_tree: Path) -> None:
    with pytest.raises(ComposeError, match="needs the locales package"):
        system.locale(fake_tree, "de_DE.UTF-8")


def test_keyboard(fake_tree: Path) -> None:
    system.keyboard(fake_tree, "de")
    assert 'XKBLAYOUT="de"' in (fake_tree / "etc/default/keyboard").read_text()
    assert (fake_tree / "etc/vconsole.conf").read_text() == "KEYMAP=de\n"


def test_first_boot_identity(fake_tree: Path) -> None:
    (fake_tree / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (fake_tree / "var/lib/dbus").mkdir(parents=True)
    (fake_tree / "var/lib/dbus/machine-id").write_text("0123\n")
    (fake_tree / "var/lib/systemd").mkdir(parents=True)
    (fake_tree / "var/lib/systemd/random-seed").write_bytes(b"seed")
    system.first_boot_identity(fake_tree)
    assert (fake_tree / "etc/machine-id").read_text() == ""
    assert (fake_tree / "var/lib/dbus/machine-id").readlink() == Path("/etc/machine-id")
    assert not (fake_tree / "var/lib/systemd/random-seed").exists()
