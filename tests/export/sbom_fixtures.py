"""A tiny root tree with a hand-written dpkg status and copyright files, and its Lock."""

from __future__ import annotations

import hashlib
from pathlib import Path

from imagecomposer.lock import Lock, LockedPackage, LockedRepository

STATUS = """\
Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files

Package: bash
Essential: yes
Status: install ok installed
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Version: 5.2.15-2+b7
Depends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 More text.

Package: debianutils
Status: install ok installed
Maintainer: Debian Install System Team <debian-boot@lists.debian.org>
Architecture: amd64
Version: 5.7-0.5~deb12u1
Description: Miscellaneous utilities specific to Debian

Package: libfoo1
Status: install ok installed
Maintainer: Foo Team <foo@example.org>
Architecture: amd64
Source: foo (1:2.0-1)
Version: 1:2.0-1
Description: library with an epoch

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
Description: only its conffiles are left
"""

BASH_COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bash

Files: *
Copyright: 1987-2022 Free Software Foundation, Inc.
License: GPL-3+

Files: debian/*
Copyright: Matthias Klose
License: GPL-2+ or Expat

Files: lib/readline/*
Copyright: FSF
License: Custom-Readline
 Permission is granted to do things with readline.

License: GPL-3+
 This program is free software; see /usr/share/common-licenses/GPL-3.
"""

FOO_COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: Foo
License: BSD-3-clause
"""


def make_tree(root: Path) -> Path:
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    doc = root / "usr/share/doc"
    (doc / "bash").mkdir(parents=True)
    (doc / "bash/copyright").write_text(BASH_COPYRIGHT)
    (doc / "libfoo-common").mkdir()
    (doc / "libfoo-common/copyright").write_text(FOO_COPYRIGHT)
    (doc / "libfoo1").symlink_to("/usr/share/doc/libfoo-common")  # absolute, inside the tree
    (doc / "base-files").mkdir()
    (doc / "base-files/copyright").write_text("This is the Debian prepackaged version...\n")
    return root


def _pkg(name: str, version: str, depends: tuple[str, ...] = (), url: str | None = None,
         maintainer: str | None = None) -> LockedPackage:
    return LockedPackage(
        name=name, version=version, arch="amd64", repository="main",
        url=url or f"http://deb.invalid/pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb",
        sha256=hashlib.sha256(name.encode()).hexdigest(), size=1000, maintainer=maintainer,
        depends=depends)


def make_lock(extra: tuple[LockedPackage, ...] = ()) -> Lock:
    return Lock(
        os="debian", version="12", arch="amd64", kind="deb",
        repositories=(LockedRepository("main", "http://deb.invalid/debian", "deb", "bookworm",
                                       ("main",)),),
        packages=(
            _pkg("base-files", "12.4+deb12u5", maintainer="Santiago Vila <sanvila@debian.org>"),
            _pkg("debianutils", "5.7-0.5~deb12u1"),
            _pkg("bash", "5.2.15-2+b7", ("base-files", "debianutils"),
                 maintainer="Matthias Klose <doko@debian.org>"),
            _pkg("libfoo1", "1:2.0-1", url="file:///srv/repo/libfoo1_2.0-1_amd64.deb"),
            *extra,
        ),
        requested=("bash",),
    )
