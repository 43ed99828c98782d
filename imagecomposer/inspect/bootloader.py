"""The boot loader and its entries: systemd-boot (Type #1 loader entries, Type #2 unified
kernel images), GRUB (``grub.cfg`` menu entries), shim, syslinux/extlinux."""

from __future__ import annotations

import re
import shlex
import struct
from collections.abc import Sequence

import attrs

from imagecomposer.inspect.facts import View, parse_env, text
from imagecomposer.inspect.fsbase import FileRecord, Tree
from imagecomposer.inspect.report import BootEntry, Bootloader


@attrs.frozen
class BootPartition:
    """A partition boot loaders read (ESP, XBOOTLDR, a FAT /boot)."""

    label: str  # how paths on it are qualified: "esp:/loader/loader.conf"
    tree: Tree
    files: tuple[FileRecord, ...]


def pe_sections(data: bytes) -> dict[str, bytes]:
    """Named sections of a PE file (a UKI's .cmdline, .osrel, .uname); {} if not PE."""
    try:
        if data[:2] != b"MZ":
            return {}
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        if data[pe:pe + 4] != b"PE\0\0":
            return {}
        count = struct.unpack_from("<H", data, pe + 6)[0]
        optional = struct.unpack_from("<H", data, pe + 20)[0]
        table = pe + 24 + optional
        sections = {}
        for index in range(count):
            at = table + 40 * index
            name = data[at:at + 8].rstrip(b"\0").decode("ascii", "replace")
            vsize, _va, rsize, raw = struct.unpack_from("<IIII", data, at + 8)
            sections[name] = data[raw:raw + min(vsize or rsize, rsize)]
        return sections
    except struct.error:
        return {}


def _type1(part: BootPartition, path: str, content: str) -> BootEntry:
    values: dict[str, list[str]] = {}
    for line in content.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            values.setdefault(key, []).append(value.strip())
    linux = values.get("linux", values.get("efi", [None]))[0]
    return BootEntry(path.rsplit("/", 1)[-1].removesuffix(".conf"),
                     values.get("title", [None])[0], "type1",
                     f"{part.label}:{linux}" if linux else None,
                     tuple(f"{part.label}:{i}" for i in values.get("initrd", [])),
                     " ".join(values["options"]) if "options" in values else None,
                     f"{part.label}:{path}")


def _uki(part: BootPartition, path: str, data: bytes) -> BootEntry:
    sections = pe_sections(data)
    osrel = parse_env(text(sections.get(".osrel")))
    cmdline = text(sections.get(".cmdline"))
    return BootEntry(path.rsplit("/", 1)[-1], osrel.get("PRETTY_NAME"), "uki",
                     f"{part.label}:{path}", (),
                     cmdline.strip("\0 \n") if cmdline is not None else None,
                     f"{part.label}:{path}")


_MENUENTRY = re.compile(r"^\s*menuentry\s+(['\"])(.*?)\1", re.MULTILINE)


def grub_entries(where: str, content: str) -> list[BootEntry]:
    entries: list[BootEntry] = []
    for match in _MENUENTRY.finditer(content):
        body_start = content.find("{", match.end())
        depth, index = 0, body_start
        while index < len(content):
            depth += {"{": 1, "}": -1}.get(content[index], 0)
            if depth == 0:
                break
            index += 1
        linux: str | None = None
        options: str | None = None
        initrds: tuple[str, ...] = ()
        for line in content[body_start + 1:index].splitlines():
            words = line.strip().split(None, 1)
            if not words:
                continue
            if words[0] in ("linux", "linuxefi", "linux16"):
                rest = (words[1] if len(words) > 1 else "").split(None, 1)
                linux = rest[0] if rest else None
                options = rest[1] if len(rest) > 1 else ""
            elif words[0] in ("initrd", "initrdefi", "initrd16"):
                initrds = tuple((words[1] if len(words) > 1 else "").split())
        if linux is not None:
            entries.append(BootEntry(f"grub-{len(entries)}", match.group(2), "grub", linux,
                                     initrds, options, where))
    return entries


def syslinux_entries(where: str, content: str) -> list[BootEntry]:
    entries: list[BootEntry] = []
    label: str | None = None
    linux: str | None = None
    append: str | None = None
    initrds: tuple[str, ...] = ()

    def flush() -> None:
        if label is not None and linux is not None:
            extra = [w.removeprefix("initrd=") for w in shlex.split(append or "")
                     if w.startswith("initrd=")]
            options = " ".join(w for w in (append or "").split() if not w.startswith("initrd="))
            entries.append(BootEntry(label, label, "syslinux", linux,
                                     initrds + tuple(p for x in extra for p in x.split(",")),
                                     options, where))

    for line in content.splitlines():
        words = line.strip().split(None, 1)
        if not words:
            continue
        key, value = words[0].upper(), (words[1] if len(words) > 1 else "").strip()
        if key == "LABEL":
            flush()
            label, linux, append, initrds = value, None, None, ()
        elif key in ("KERNEL", "LINUX"):
            linux = value
        elif key == "APPEND":
            append = value
        elif key == "INITRD":
            initrds = tuple(value.split(","))
    flush()
    return entries


def bootloader(parts: Sequence[BootPartition], view: View | None) -> Bootloader:
    loaders: list[str] = []
    kinds: list[str] = []
    entries: list[BootEntry] = []
    default: str | None = None
    for part in parts:
        paths = {r.path.lower(): r.path for r in part.files if r.kind == "file"}
        wanted = [p for low, p in paths.items()
                  if low.startswith("/loader/entries/") and low.endswith(".conf")]
        wanted += [p for low, p in paths.items()
                   if low.startswith("/efi/linux/") and low.endswith(".efi")]
        wanted += [p for low, p in paths.items() if low in ("/loader/loader.conf",
                                                            "/syslinux.cfg", "/extlinux.conf",
                                                            "/syslinux/syslinux.cfg",
                                                            "/extlinux/extlinux.conf")]
        wanted += [p for low, p in paths.items()
                   if low.startswith("/efi/") and low.endswith("/grub.cfg")]
        boot_efi = [p for low, p in paths.items() if low.startswith("/efi/")
                    and low.endswith(".efi") and not low.startswith("/efi/linux/")]
        data = part.tree.read_many(wanted + boot_efi)
        for path in sorted(boot_efi):
            low = path.lower()
            loaders.append(f"{part.label}:{path}")
            binary = data.get(path) or b""
            if "/shim" in low:
                kinds.append("shim")
            elif "systemd-boot" in low or b"systemd-boot" in binary:
                kinds.append("systemd-boot")
            elif "grub" in low or b"GNU GRUB" in binary:
                kinds.append("grub")
            elif "syslinux" in low:
                kinds.append("syslinux")
        for path in sorted(wanted):
            found = data.get(path)
            if found is None:
                continue
            content = found
            low = path.lower()
            if low.startswith("/loader/entries/"):
                entries.append(_type1(part, path, text(content) or ""))
            elif low.startswith("/efi/linux/"):
                entries.append(_uki(part, path, content))
            elif low == "/loader/loader.conf":
                for line in (text(content) or "").splitlines():
                    if line.strip().startswith("default"):
                        default = line.strip().split(None, 1)[-1]
            elif low.endswith("grub.cfg"):
                entries += grub_entries(f"{part.label}:{path}", text(content) or "")
            else:
                kinds.append("syslinux")
                entries += syslinux_entries(f"{part.label}:{path}", text(content) or "")
        if any(r.path.lower() in ("/ldlinux.sys", "/syslinux/ldlinux.sys") for r in part.files):
            kinds.append("syslinux")
    if view is not None:
        configs = view.read_many(["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg",
                                  "/boot/syslinux/syslinux.cfg", "/boot/extlinux/extlinux.conf"])
        for path, config in sorted(configs.items()):
            if config is None:
                continue
            content = config
            if "grub" in path:
                kinds.append("grub")
                entries += grub_entries(path, text(content) or "")
            else:
                kinds.append("syslinux")
                entries += syslinux_entries(path, text(content) or "")
    order = ("shim", "systemd-boot", "grub", "syslinux")
    kind = next((k for k in order if k in kinds), "unknown" if loaders else "none")
    return Bootloader(kind, tuple(loaders), default, tuple(entries))
