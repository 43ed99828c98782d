"""Partition type identifiers: spec type names to GPT type GUIDs and MBR type codes.

The GPT GUIDs are those of the UAPI Discoverable Partitions Specification, so that
systemd-gpt-auto-generator (and people reading ``sfdisk --dump``) recognise what each
partition is without an fstab entry. Root and verity types depend on the architecture.
"""

from __future__ import annotations

import re

from imagecomposer.foundation.errors import Problem, ValidationError

ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
XBOOTLDR = "BC13C2FF-59E6-4262-A352-B275FD6F7172"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
HOME = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"
VAR = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
LINUX_GENERIC = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"  # Linux LVM (a physical volume)

ROOT = {
    "x86_64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "aarch64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
}
ROOT_VERITY = {
    "x86_64": "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
    "aarch64": "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
}

# MBR (DOS) partition type codes as sfdisk writes them.
MBR_CODES = {
    "esp": "ef",
    "xbootldr": "ea",
    "swap": "82",
    "root": "83",
    "home": "83",
    "var": "83",
    "verity": "83",
    "generic": "83",
    "lvm": "8e",
}

NAMED_TYPES = tuple(MBR_CODES)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MBR_CODE = re.compile(r"^(0x)?[0-9a-fA-F]{1,2}$")


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def gpt_type(type_: str, arch: str = "x86_64", *, path: str = "") -> str:
    """The GPT type GUID of a spec partition type (a name or an explicit GUID)."""
    if is_guid(type_):
        return type_.upper()
    fixed = {"esp": ESP, "xbootldr": XBOOTLDR, "swap": SWAP, "home": HOME, "var": VAR,
             "generic": LINUX_GENERIC, "lvm": LVM}
    if type_ in fixed:
        return fixed[type_]
    table = {"root": ROOT, "verity": ROOT_VERITY}.get(type_)
    if table is None:
        raise _bad_type(type_, path)
    if arch not in table:
        raise ValidationError([Problem(f"no {type_} partition type known for architecture "
                                       f"'{arch}'", path=path)])
    return table[arch]


def mbr_type(type_: str, *, path: str = "") -> str:
    """The MBR type code of a spec partition type; an explicit GUID is refused on MBR."""
    if type_ in MBR_CODES:
        return MBR_CODES[type_]
    if _MBR_CODE.match(type_):
        return type_.lower().removeprefix("0x")
    if is_guid(type_):
        raise ValidationError([Problem(
            f"partition type GUID {type_} needs a GPT partition table (the disk uses MBR)",
            path=path)])
    raise _bad_type(type_, path)


def _bad_type(type_: str, path: str) -> ValidationError:
    names = ", ".join(NAMED_TYPES)
    return ValidationError([Problem(
        f"unknown partition type '{type_}' (expected one of {names}, or a GUID)", path=path)])
