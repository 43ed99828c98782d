"""A large .deb's data decompressed ahead of dpkg (issue 16): the same package, data
uncompressed; anything unexpected falls back to the original file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from imagecomposer.families.deb import install, repack


def build_deb(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: big\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@example.org>\n"
        "Description: test\n")
    (root / "usr/lib/big").mkdir(parents=True)
    (root / "usr/lib/big/data").write_bytes(bytes(range(256)) * 4096)
    (root / "usr/lib/big/link").symlink_to("data")
    deb = tmp_path / "big_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb],
                   check=True, capture_output=True)
    return deb


def run(*argv: str | Path) -> bytes:
    return subprocess.run(argv, check=True, capture_output=True).stdout


def test_a_deb_with_its_data_decompressed_is_the_same_package(tmp_path: Path) -> None:
    deb = build_deb(tmp_path)
    (tmp_path / "out").mkdir()
    copy = repack.decompressed(deb, tmp_path / "out")
    assert copy == tmp_path / "out" / deb.name and copy.is_file()
    assert run("ar", "t", copy).split() == [b"debian-binary", b"control.tar.xz", b"data.tar"]
    assert run("dpkg-deb", "--fsys-tarfile", copy) == run("dpkg-deb", "--fsys-tarfile", deb)
    assert run("dpkg-deb", "--info", copy) != b""
    assert run("dpkg-deb", "--field", copy) == run("dpkg-deb", "--field", deb)
    assert run("dpkg-deb", "--ctrl-tarfile", copy) == run("dpkg-deb", "--ctrl-tarfile", deb)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [deb.name]  # no scratch left


def test_what_cannot_be_decompressed_is_given_to_dpkg_as_it_is(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"not an ar archive")
    (tmp_path / "out").mkdir()
    assert repack.decompressed(bogus, tmp_path / "out") == bogus
    assert not (tmp_path / "out" / bogus.name).exists()


def test_only_large_packages_are_decompressed_ahead(tmp_path: Path) -> None:
    small, large = tmp_path / "a.deb", tmp_path / "b.deb"
    small.write_bytes(b"x")
    with large.open("wb") as f:
        f.truncate(repack.LARGE)
    assert repack.large([small, large, small]) == [1]
    assert install.repack is repack  # the installer uses it
