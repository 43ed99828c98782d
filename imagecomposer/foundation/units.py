"""Sizes as users write them: ``4GiB``, ``512MiB``, ``1.5G``, ``2000000000``, ``rest``, ``auto``.

``K/M/G/T`` and ``KiB/MiB/GiB/TiB`` are binary (powers of 1024, like sfdisk and mkfs),
``KB/MB/GB/TB`` are decimal. A plain number is bytes.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "B": 1,
    "K": 1024, "KIB": 1024, "KB": 1000,
    "M": 1024**2, "MIB": 1024**2, "MB": 1000**2,
    "G": 1024**3, "GIB": 1024**3, "GB": 1000**3,
    "T": 1024**4, "TIB": 1024**4, "TB": 1000**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
SYMBOLIC = ("rest", "auto")


def parse_size(value: int | str) -> int | None:
    """Bytes, or None for ``rest``/``auto``. Raises ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("a size cannot be true or false")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if value.strip().lower() in SYMBOLIC:
        return None
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit such as 512MiB or 4GiB")
    number, unit = match.group(1), (match.group(2) or "").upper()
    return int(float(number) * _UNITS[unit])


def human_size(size: float) -> str:
    """Bytes for people, one decimal: ``512 B``, ``1.5 MiB``, ``2.0 GiB`` (rates too)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def format_size(size: int | None) -> str:
    """The largest binary unit that divides ``size`` exactly (``4GiB``), for messages."""
    if size is None:
        return "rest"
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"

