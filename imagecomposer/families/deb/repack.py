"""A large package's data decompressed ahead of dpkg, on another core (issue 16).

dpkg unpacks one package at a time and decompresses each package's data itself, single
threaded: for a minimal Debian image, xz is most of ``dpkg --unpack``'s CPU, and the kernel
package alone is 411 MB of data (a 67 MB .deb, ~5 s of CPU) while the second core idles.
:func:`decompressed` makes a copy of a .deb whose data member is an uncompressed
``data.tar`` (dpkg has always accepted one): the same ``debian-binary``, the same control
archive, the same files; the installer makes it while dpkg unpacks the packages that come
before it in the transaction. The copy is made from the verified .deb by this process, in a
private directory, and never stored.
"""

from __future__ import annotations

import logging
from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CommandError

log = logging.getLogger(__name__)

LARGE = 32 << 20  # .deb size from which its data is decompressed ahead of dpkg

SCRIPT = (
    'set -euo pipefail; deb=$1; out=$2; dir=$3\n'
    'control=$(ar t "$deb" | grep -m1 "^control\\.tar")\n'
    'mkdir "$dir"; cd "$dir"\n'
    'ar x "$deb" debian-binary "$control"\n'
    'dpkg-deb --fsys-tarfile "$deb" > data.tar\n'
    'ar rcD "$out" debian-binary "$control" data.tar\n'
    'cd /; rm -rf "$dir"\n'
)


def large(files: list[Path]) -> list[int]:
    """Indexes of the packages of ``files`` worth decompressing ahead."""
    return [i for i, f in enumerate(files) if f.stat().st_size >= LARGE]


def decompressed(deb: Path, into: Path) -> Path:
    """``into/<name of deb>``: ``deb`` with its data uncompressed; ``deb`` itself when that
    cannot be made (no ``ar`` on the host, an unexpected archive): dpkg reads it as usual."""
    out = into / deb.name
    try:
        runner.require("ar", "binutils")
        runner.run(["bash", "-c", SCRIPT, "repack", str(deb), str(out),
                    str(into / f"{deb.name}.d")], what=f"decompressing {deb.name} ahead of dpkg")
    except CommandError as exc:
        log.debug("cannot decompress %s ahead of dpkg (%s): dpkg decompresses it", deb, exc)
        out.unlink(missing_ok=True)
        return deb
    return out
