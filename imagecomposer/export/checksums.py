"""``SHA256SUMS`` in the format ``sha256sum -c`` reads, and its parsing for verification."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import ExportError

SUMS = "SHA256SUMS"


def write_sums(directory: Path, names: Iterable[str], *,
               known: Mapping[str, str] | None = None,
               digest: Callable[[Path], str] = sha256_file) -> Path:
    """Hash the named files of ``directory`` into ``directory/SHA256SUMS`` (sorted);
    ``known`` digests (by name, of files just hashed) are not computed again."""
    known = known or {}
    lines = [f"{known.get(name) or digest(directory / name)}  {name}\n"
             for name in sorted(names)]
    path = directory / SUMS
    path.write_text("".join(lines))
    return path


def read_sums(path: Path) -> dict[str, str]:
    """``{file name: hex digest}``; malformed lines are an error, not skipped."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or "/" in name or not name:
            raise ExportError(f"{path}:{number}: malformed line")
        sums[name.removeprefix("*")] = digest.lower()
    return sums
