"""Facts about the installed OS, from its files: os-release, hostname, time zone, locale,
users and groups (never a password hash), enabled and masked services, kernels."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Protocol

from imagecomposer.inspect.fsbase import Entry
from imagecomposer.inspect.report import Group, Kernel, OsInfo, Services, User

OS_FILES = ("/etc/os-release", "/usr/lib/os-release", "/etc/hostname", "/etc/timezone",
            "/etc/locale.conf", "/etc/default/locale", "/etc/machine-id", "/etc/passwd",
            "/etc/shadow", "/etc/group", "/etc/fstab", "/etc/kernel/cmdline")
SYSTEMD_DIR = "/etc/systemd/system"


class View(Protocol):
    """What facts need from a filesystem (a :class:`~imagecomposer.inspect.fsbase.Tree`, or
    the OS view that spans the image's mounts)."""

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]: ...

    def listdir_many(self, paths: Iterable[str]) -> dict[str, list[Entry] | None]: ...

    def readlink_many(self, paths: Iterable[str]) -> dict[str, str | None]: ...


def text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def parse_env(content: str | None) -> dict[str, str]:
    """KEY=value lines as os-release and locale.conf write them (shell quoting)."""
    values: dict[str, str] = {}
    for line in (content or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = " ".join(parts)
    return values


def os_info(files: Mapping[str, bytes | None]) -> OsInfo | None:
    data = files.get("/etc/os-release") or files.get("/usr/lib/os-release")
    if data is None:
        return None
    values = parse_env(text(data))
    return OsInfo(values.get("ID"), values.get("VERSION_ID"), values.get("NAME"),
                  values.get("PRETTY_NAME"), values.get("VERSION_CODENAME"), values)


def first_line(data: bytes | None) -> str | None:
    content = text(data)
    if content is None:
        return None
    lines = [line.strip() for line in content.splitlines()
             if line.strip() and not line.startswith("#")]
    return lines[0] if lines else None


def timezone(files: Mapping[str, bytes | None], localtime_link: str | None) -> str | None:
    if localtime_link and "zoneinfo/" in localtime_link:
        return localtime_link.split("zoneinfo/", 1)[1]
    return first_line(files.get("/etc/timezone"))


def locale(files: Mapping[str, bytes | None]) -> str | None:
    for path in ("/etc/locale.conf", "/etc/default/locale"):
        lang = parse_env(text(files.get(path))).get("LANG")
        if lang:
            return lang
    return None


def _rows(data: bytes | None, fields: int) -> list[list[str]]:
    rows = []
    for line in (text(data) or "").splitlines():
        if line.strip() and not line.startswith("#"):
            row = line.split(":")
            if len(row) >= fields:
                rows.append(row)
    return rows


def _password_state(hash_field: str | None) -> str:
    if hash_field is None:
        return "unknown"
    if hash_field == "":
        return "none"
    if hash_field.startswith(("!", "*")):
        return "locked"
    return "set"


def users_and_groups(files: Mapping[str, bytes | None]
                     ) -> tuple[tuple[User, ...], tuple[Group, ...]]:
    shadow = {row[0]: row[1] for row in _rows(files.get("/etc/shadow"), 2)}
    groups: list[Group] = []
    member_of: dict[str, list[str]] = {}
    for row in _rows(files.get("/etc/group"), 4):
        try:
            gid = int(row[2])
        except ValueError:
            continue
        members = tuple(m for m in row[3].split(",") if m)
        groups.append(Group(row[0], gid, members))
        for member in members:
            member_of.setdefault(member, []).append(row[0])
    users: list[User] = []
    for row in _rows(files.get("/etc/passwd"), 7):
        try:
            uid, gid = int(row[2]), int(row[3])
        except ValueError:
            continue
        hash_field = shadow.get(row[0], row[1] if row[1] not in ("x", "") else None)
        users.append(User(row[0], uid, gid, row[5], row[6], tuple(sorted(member_of.get(row[0],
                                                                                       []))),
                          _password_state(hash_field)))
    return tuple(users), tuple(groups)


def services(view: View) -> Services:
    top = view.listdir_many([SYSTEMD_DIR])[SYSTEMD_DIR] or []
    wants = [f"{SYSTEMD_DIR}/{e.name}" for e in top
             if e.kind == "dir" and e.name.endswith((".wants", ".requires"))]
    links = [f"{SYSTEMD_DIR}/{e.name}" for e in top if e.kind == "symlink"]
    enabled: set[str] = set()
    for listing in view.listdir_many(wants).values():
        enabled.update(e.name for e in listing or ())
    targets = view.readlink_many(links)
    masked = sorted(path.rsplit("/", 1)[1] for path, target in targets.items()
                    if target == "/dev/null")
    default = targets.get(f"{SYSTEMD_DIR}/default.target")
    return Services(tuple(sorted(enabled)), tuple(masked),
                    default.rsplit("/", 1)[-1] if default else None)


def kernels(view: View, boot_files: Mapping[str, tuple[str | None, tuple[str, ...]]]
            ) -> tuple[Kernel, ...]:
    """Kernels by version: modules in /usr/lib/modules, images and initrds in /boot, plus
    what boot entries name (``boot_files``: version -> (image, initrds))."""
    listings = view.listdir_many(["/usr/lib/modules", "/boot"])
    versions = {e.name for e in listings["/usr/lib/modules"] or () if e.kind == "dir"}
    boot_dir = {e.name for e in listings["/boot"] or ()}
    images: dict[str, str] = {}
    initrds: dict[str, list[str]] = {}
    for name in sorted(boot_dir):
        for prefix in ("vmlinuz-", "vmlinux-", "bzImage-"):
            if name.startswith(prefix):
                images[name.removeprefix(prefix)] = f"/boot/{name}"
        for prefix, suffix in (("initrd.img-", ""), ("initramfs-", ".img"), ("initrd-", "")):
            if name.startswith(prefix) and name.endswith(suffix):
                version = name.removeprefix(prefix).removesuffix(suffix) if suffix else \
                    name.removeprefix(prefix)
                initrds.setdefault(version, []).append(f"/boot/{name}")
    found: list[Kernel] = []
    for version in sorted(versions | set(images) | set(boot_files)):
        entry_image, entry_initrds = boot_files.get(version, (None, ()))
        found.append(Kernel(version, images.get(version) or entry_image,
                            tuple(initrds.get(version, [])) + entry_initrds,
                            version in versions))
    return tuple(found)
