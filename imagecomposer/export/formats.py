"""Output formats and compressions: how each is made, and which combinations are legal.

The format and compression names are the settings registry's
(:mod:`imagecomposer.foundation.settings`); which compressions a format accepts is spec
validation's matrix (:data:`imagecomposer.spec.combinations.FORMATS`), so the Exporter's own
guard and validation agree (``Invalid combination of compression 'gzip' with format 'vhd'``).
Formats that are consumed as they are (uploaded as an Azure page blob, imported by vSphere,
attached by a hypervisor) refuse an outer compression; raw and the sparse download formats
accept any.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from imagecomposer.foundation.errors import ExportError
from imagecomposer.spec import combinations

MIB = 1 << 20


@attrs.frozen
class FormatInfo:
    name: str
    suffix: str  # file name suffix of the converted image
    qemu_format: str  # qemu-img -O value
    options: tuple[str, ...] = ()  # qemu-img -o values
    round_to_mib: bool = False  # Azure: the virtual size must be a whole number of MiB
    checkable: bool = False  # `qemu-img check` supports the format


FORMATS: dict[str, FormatInfo] = {f.name: f for f in (
    FormatInfo("raw", ".raw", "raw"),
    FormatInfo("qcow2", ".qcow2", "qcow2", ("compat=1.1",), checkable=True),
    FormatInfo("vhd", ".vhd", "vpc", ("subformat=dynamic", "force_size=on")),
    FormatInfo("vhd-fixed", ".fixed.vhd", "vpc", ("subformat=fixed", "force_size=on"),
               round_to_mib=True),
    FormatInfo("vhdx", ".vhdx", "vhdx", ("subformat=dynamic", "block_size=2M"), checkable=True),
    FormatInfo("vmdk", ".vmdk", "vmdk", ("subformat=monolithicSparse",), checkable=True),
    FormatInfo("vmdk-stream", ".stream.vmdk", "vmdk", ("subformat=streamOptimized",)),
    FormatInfo("vdi", ".vdi", "vdi", ("static=off",), checkable=True),
)}


@attrs.frozen
class CompressionInfo:
    name: str
    suffix: str


COMPRESSIONS: dict[str, CompressionInfo] = {c.name: c for c in (
    CompressionInfo("none", ""),
    CompressionInfo("gzip", ".gz"),
    CompressionInfo("xz", ".xz"),
    CompressionInfo("zstd", ".zst"),
)}


def format_info(name: str) -> FormatInfo:
    try:
        return FORMATS[name]
    except KeyError:
        raise ExportError(f"unknown output format '{name}' (known: "
                          f"{', '.join(FORMATS)})") from None


def _allowed(name: str) -> tuple[str, ...]:
    """Legal compressions of a format: spec validation's matrix, so both agree."""
    return combinations.FORMATS[name].compressions


def combination_problems(formats: Iterable[str], compression: str) -> list[str]:
    """Every illegal format/compression pair, as the messages validation shows."""
    problems: list[str] = []
    if compression not in COMPRESSIONS:
        problems.append(f"unknown compression '{compression}' (known: "
                        f"{', '.join(COMPRESSIONS)})")
        return problems
    for name in formats:
        info = FORMATS.get(name)
        if info is None:
            problems.append(f"unknown output format '{name}' (known: {', '.join(FORMATS)})")
        elif compression not in _allowed(name):
            problems.append(f"Invalid combination of compression '{compression}' with "
                            f"format '{name}'")
    return problems


def check_combination(formats: Iterable[str], compression: str) -> None:
    problems = combination_problems(formats, compression)
    if problems:
        raise ExportError("; ".join(problems))


def round_up_mib(size: int) -> int:
    return -(-size // MIB) * MIB
