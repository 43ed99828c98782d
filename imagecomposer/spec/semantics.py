"""Checks of a spec's meaning that a JSON Schema cannot express.

Disk layout (one root, ``rest`` last, sizes fit, types match filesystems, no duplicates),
accounts, files, services, packages, network addresses, repositories and stages. Each check
returns positioned problems; :func:`warnings` returns the ones that do not stop a build.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import PurePosixPath

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.units import format_size
from imagecomposer.foundation.yamldoc.sourcemap import PathKey
from imagecomposer.spec.combinations import (
    ESP_MIN,
    GPT_MAX_PARTITIONS,
    GPT_ONLY_TYPES,
    MBR_MAX_DISK,
    MBR_MAX_PARTITIONS,
    PARTITION_FILESYSTEMS,
    MiB,
)
from imagecomposer.spec.model import STAGES, Spec
from imagecomposer.spec.volumes import logical_volumes, root_count

# 1 MiB before the first partition (alignment) and 1 MiB at the end (backup GPT).
TABLE_OVERHEAD = 2 * MiB


def _duplicates(values: list[str | int | None]) -> set[str | int]:
    return {v for v, n in Counter(v for v in values if v is not None).items() if n > 1}


def check_disk(spec: Spec) -> list[Problem]:
    disk, where = spec.disk, spec.source_map
    parts = disk.partitions
    problems: list[Problem] = []
    if not parts:
        return problems
    roots = root_count(spec)  # partitions of type root and logical volumes mounted at /
    if roots != 1:
        lvm = any(p.volume_group is not None for p in parts)
        problems.append(where.problem(
            ("disk", "partitions"),
            f"needs exactly one partition of type root"
            f"{' (or logical volume mounted at /)' if lvm else ''}, found {roots}"))
    for i, p in enumerate(parts):
        at = ("disk", "partitions", i)
        allowed = PARTITION_FILESYSTEMS.get(p.type)
        if allowed is not None and p.filesystem not in allowed:
            if p.type == "esp":
                message = f"the ESP must be vfat, not {p.filesystem}"
            elif p.type == "swap":
                message = f"a swap partition needs filesystem: swap, not {p.filesystem}"
            else:
                message = (f"Invalid combination of partition type '{p.type}' with filesystem "
                           f"'{p.filesystem}': use {', '.join(allowed)}")
            problems.append(where.problem((*at, "filesystem"), message))
        if p.filesystem == "swap" and p.type != "swap":
            problems.append(where.problem((*at, "filesystem"),
                                          "filesystem swap needs partition type: swap"))
        if p.filesystem in ("swap", "none") and p.mountpoint is not None:
            problems.append(where.problem((*at, "mountpoint"),
                                          f"a {p.filesystem} partition cannot be mounted"))
        if p.type == "root" and p.mountpoint not in (None, "/"):
            problems.append(where.problem((*at, "mountpoint"),
                                          "the root partition is mounted at /"))
        if p.type != "root" and p.mountpoint == "/":
            problems.append(where.problem((*at, "mountpoint"),
                                          "only the partition of type root is mounted at /"))
        if disk.partition_table == "mbr" and (p.type in GPT_ONLY_TYPES or p.type not in
                                              PARTITION_FILESYSTEMS):
            problems.append(where.problem((*at, "type"),
                                          f"partition type '{p.type}' needs a gpt partition "
                                          f"table"))
        if p.size is None and i != len(parts) - 1:
            problems.append(where.problem((*at, "size"),
                                          "only the last partition may have size: rest"))
        if p.type == "esp" and p.size is not None and p.size < ESP_MIN:
            problems.append(where.problem(
                (*at, "size"), f"the ESP must be at least {format_size(ESP_MIN)}"))
        if p.size is not None and p.size % 512:
            problems.append(where.problem((*at, "size"),
                                          "must be a multiple of 512 bytes (the sector size)"))
    if disk.partition_table == "mbr" and len(parts) > MBR_MAX_PARTITIONS:
        problems.append(where.problem(("disk", "partitions"),
                                      f"an mbr table holds at most {MBR_MAX_PARTITIONS} "
                                      f"partitions; use gpt"))
    if disk.partition_table == "gpt" and len(parts) > GPT_MAX_PARTITIONS:
        problems.append(where.problem(("disk", "partitions", GPT_MAX_PARTITIONS),
                                      f"a gpt table holds at most {GPT_MAX_PARTITIONS} "
                                      f"partitions, this disk has {len(parts)}"))
    for field in ("name", "mountpoint", "label", "uuid"):
        values: list[str | int | None] = [getattr(p, field) for p in parts]
        for dup in sorted(_duplicates(values), key=str):
            i = max(i for i, v in enumerate(values) if v == dup)
            problems.append(where.problem(("disk", "partitions", i, field),
                                          f"duplicate partition {field} '{dup}'"))
    fixed = sum(p.size for p in parts if p.size is not None)
    if disk.partition_table == "mbr" and disk.size is None and \
            fixed + TABLE_OVERHEAD > MBR_MAX_DISK:
        problems.append(where.problem(
            ("disk", "partitions"),
            f"the partitions need {format_size(fixed + TABLE_OVERHEAD)} but an mbr partition "
            f"table addresses at most {format_size(MBR_MAX_DISK)}; use gpt"))
    if disk.size is not None:
        needed = fixed + TABLE_OVERHEAD + (MiB if any(p.size is None for p in parts) else 0)
        if needed > disk.size:
            problems.append(where.problem(
                ("disk", "size"),
                f"partitions need {format_size(needed)} (including 2MiB for the partition "
                f"table) but disk.size is {format_size(disk.size)}"))
    return problems


def check_accounts(spec: Spec) -> list[Problem]:
    users, where = spec.customizations.users, spec.source_map
    problems: list[Problem] = []
    names: list[str | int | None] = [u.name for u in users]
    for dup in sorted(_duplicates(names), key=str):
        i = max(i for i, n in enumerate(names) if n == dup)
        problems.append(where.problem(("customizations", "users", i, "name"),
                                      f"duplicate user name '{dup}'"))
    uids: list[str | int | None] = [u.uid for u in users]
    for dup in sorted(_duplicates(uids), key=str):
        i = max(i for i, n in enumerate(uids) if n == dup)
        problems.append(where.problem(("customizations", "users", i, "uid"),
                                      f"duplicate uid {dup}"))
    for i, user in enumerate(users):
        if user.name == "root":
            problems.append(where.problem(
                ("customizations", "users", i, "name"),
                "configure root with customizations.root_password_hash, not as a user"))
        if user.uid == 0:
            problems.append(where.problem(("customizations", "users", i, "uid"),
                                          "uid 0 is root's"))
    return problems


def check_files(spec: Spec) -> list[Problem]:
    files, where = spec.customizations.files, spec.source_map
    problems: list[Problem] = []
    for i, f in enumerate(files):
        at = ("customizations", "files", i)
        dest = PurePosixPath(f.destination)
        if not dest.is_absolute():
            problems.append(where.problem((*at, "destination"),
                                          "must be an absolute path inside the image"
                                          + _absolute_suggestion(f.destination)))
        elif ".." in dest.parts:
            problems.append(where.problem((*at, "destination"), "must not contain '..'"))
        if (f.source is None) == (f.content is None):
            problems.append(where.problem(at, "give exactly one of source or content"))
    destinations: list[str | int | None] = [f.destination for f in files]
    for dup in sorted(_duplicates(destinations), key=str):
        i = max(i for i, d in enumerate(destinations) if d == dup)
        problems.append(where.problem(("customizations", "files", i, "destination"),
                                      f"duplicate file destination '{dup}'"))
    return problems


def _absolute_suggestion(relative: str) -> str:
    """``, like /etc/motd`` for ``etc/motd`` or ``./etc/motd``; nothing when the path climbs
    with ``..`` (where it was meant to land cannot be guessed)."""
    parts = [p for p in PurePosixPath(relative).parts if p != "."]
    if not parts or ".." in parts:
        return ""
    return ", like /" + "/".join(parts)


def check_services_and_network(spec: Spec) -> list[Problem]:
    c, where = spec.customizations, spec.source_map
    problems: list[Problem] = []
    disabled = set(c.services.disabled)
    for i, name in enumerate(c.services.enabled):
        if name in disabled:
            problems.append(where.problem(("customizations", "services", "enabled", i),
                                          f"service '{name}' is both enabled and disabled"))
    for i, iface in enumerate(c.network.interfaces):
        at = ("customizations", "network", "interfaces", i)
        for j, address in enumerate(iface.addresses):
            try:
                ipaddress.ip_interface(address)
            except ValueError:
                problems.append(where.problem((*at, "addresses", j),
                                              f"'{address}' is not an address with a prefix "
                                              f"length (like 192.0.2.10/24)"))
        for field, values in (("gateway", [iface.gateway]), ("dns", list(iface.dns))):
            for j, value in enumerate(values):
                if value is None:
                    continue
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    path = (*at, field) if field == "gateway" else (*at, field, j)
                    problems.append(where.problem(path, f"'{value}' is not an IP address"))
    return problems


def check_repositories_and_stages(spec: Spec) -> list[Problem]:
    where = spec.source_map
    problems: list[Problem] = []
    names: list[str | int | None] = [r.name for r in spec.repositories]
    for dup in sorted(_duplicates(names), key=str):
        i = max(i for i, n in enumerate(names) if n == dup)
        problems.append(where.problem(("repositories", i, "name"),
                                      f"duplicate repository name '{dup}'"))
    stages = spec.build.stages
    order = [STAGES.index(s) for s in stages]
    if order != sorted(set(order)):
        problems.append(where.problem(("build", "stages"),
                                      f"stages must be listed once each, in pipeline order: "
                                      f"{', '.join(STAGES)}"))
    return problems


# filesystems made from a directory whose tool cannot carry extended attributes (SELinux
# labels): the mkfs.xfs prototype file has no syntax for them
NO_XATTRS = frozenset({"xfs"})


def check_security(spec: Spec) -> list[Problem]:
    """SELinux labels the files at build time: every filesystem that holds files must keep
    them (mkfs.ext4 -d, mksquashfs and mkfs.erofs copy extended attributes)."""
    mode = spec.customizations.security.selinux
    if mode == "disabled":
        return []
    volumes: list[tuple[PathKey, str, str | None]] = [
        (("disk", "partitions", i), p.filesystem, "/" if p.type == "root" else p.mountpoint)
        for i, p in enumerate(spec.disk.partitions)]
    volumes += [(at, lv.filesystem, lv.mountpoint) for at, _, lv in logical_volumes(spec)]
    return [spec.source_map.problem(
        (*at, "filesystem"),
        f"SELinux {mode} labels every file at build time, but a {fs} filesystem made from a "
        f"directory cannot hold the labels (mkfs.xfs's prototype file has no extended "
        f"attributes): use ext4 for {mountpoint}")
        for at, fs, mountpoint in volumes if fs in NO_XATTRS and mountpoint is not None]


def warnings(spec: Spec) -> list[Problem]:
    """Legal but suspicious settings."""
    c, where = spec.customizations, spec.source_map
    found: list[Problem] = []
    removed = set(c.packages.remove)
    for i, name in enumerate(c.packages.install):
        if name in removed:
            found.append(where.problem(("customizations", "packages", "install", i),
                                       f"package '{name}' is both installed and removed; "
                                       f"remove wins"))
    for i, repo in enumerate(spec.repositories):
        if repo.trusted:
            found.append(where.problem(("repositories", i, "trusted"),
                                       f"repository '{repo.name}' is trusted without "
                                       f"signature checks"))
    if "validate" not in spec.build.stages:
        found.append(where.problem(("build", "stages"),
                                   "skipping the validate stage is not recommended"))
    if spec.output.sign is not None and "sign" not in spec.build.stages:
        found.append(where.problem(("output", "sign"),
                                   "output.sign is set but the sign stage is not in "
                                   "build.stages"))
    if c.security.read_only_root and not any(
            p.mountpoint == "/var" for p in spec.disk.partitions):
        found.append(where.problem(("customizations", "security", "read_only_root"),
                                   "read_only_root without a partition mounted at /var: "
                                   "/var (logs, dpkg and systemd state) stays read-only; "
                                   "add a var partition (type: var, mountpoint: /var)"))
    if "root=" in c.kernel.cmdline:
        found.append(where.problem(("customizations", "kernel", "cmdline"),
                                   "root= is set by imagecomposer from the disk layout"))
    return found
