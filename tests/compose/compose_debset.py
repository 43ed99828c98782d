"""Test-only helper: a real Debian package set as a :class:`Lock`, without our resolver.

The library never uses apt. Tests that install a real Debian tree need a locked package set
before the resolver lands, so this module asks apt in a scratch root (its own state, cache and
an empty dpkg status, with the host's sources) for the transaction: ``apt-get -s`` gives the
install order, ``--print-uris`` the URLs and checksums, and ``--download-only`` fetches the
.debs into a cache directory reused across runs.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from imagecomposer.lock import Lock, LockedPackage, LockedRepository

ESSENTIAL = "?essential"
REQUIRED = "?priority(required)"

# The smallest set that boots with systemd-boot and logs in on the serial console.
BOOTABLE = (
    ESSENTIAL, REQUIRED, "systemd-sysv", "udev", "linux-image-cloud-amd64", "initramfs-tools",
    "zstd", "systemd-boot", "e2fsprogs", "dbus", "apt", "debian-archive-keyring",
)
# The tests also build GRUB images (EFI and BIOS) from the installed tree.
TEST_SET = (*BOOTABLE, "grub-efi-amd64-bin", "grub-pc-bin")


def _apt(root: Path, *args: str) -> str:
    (root / "state" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    status = root / "status"
    if not status.exists():
        status.write_text("")
    argv = [
        "apt-get",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::State::status={status}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", "Dir::Etc::SourceParts=/etc/apt/sources.list.d",
        "-o", "Dir::Etc::Preferences=/dev/null",
        "-o", "Dir::Etc::PreferencesParts=/dev/null",
        "-o", "Dir::Etc::Parts=/dev/null",
        "-o", "APT::Architecture=amd64",
        "-o", "APT::Install-Recommends=false",
        "-o", "Debug::NoLocking=true",
        "-o", "Acquire::Languages=none",
        *args,
    ]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def debian_lock(root: Path, request: Sequence[str] = BOOTABLE) -> tuple[Lock, dict[str, Path]]:
    """Resolve ``request`` with apt in ``root``, download it, return the lock and the files."""
    lists = root / "state" / "lists"
    if not lists.is_dir() or not any(lists.glob("*Packages*")):
        _apt(root, "update")
    simulated = _apt(root, "-s", "install", *request)
    order = [m.group(1) for m in re.finditer(r"^Inst (\S+) ", simulated, re.M)]
    empty = root / "empty-archives"
    (empty / "partial").mkdir(parents=True, exist_ok=True)
    uris = _apt(root, "-o", f"Dir::Cache::archives={empty}", "--print-uris", "-y", "install",
                *request)
    _apt(root, "--download-only", "-y", "install", *request)
    info: dict[str, tuple[str, str, int, str]] = {}
    for m in re.finditer(r"^'(\S+)' (\S+) (\d+)", uris, re.M):
        url, filename, size = m.groups()
        name = filename.split("_", 1)[0]
        data = (root / "cache" / "archives" / filename).read_bytes()
        info[name] = (url, filename, int(size), hashlib.sha256(data).hexdigest())
    fields = _control_fields(root, info)
    packages: list[LockedPackage] = []
    files: dict[str, Path] = {}
    for name in order:
        url, filename, size, sha = info[name]
        version, arch = filename[:-4].split("_")[1:3]
        essential, priority, depends = fields[name]
        packages.append(LockedPackage(
            name=name, version=version.replace("%3a", ":"), arch=arch, repository="debian",
            url=url, sha256=sha, size=size, essential=essential, priority=priority,
            depends=tuple(d for d in depends if d in info)))
        files[name] = root / "cache" / "archives" / filename
    mirror = packages[0].url.split("/pool/")[0]
    lock = Lock(os="debian", version="12", arch="x86_64", kind="deb",
                repositories=(LockedRepository(name="debian", url=mirror, kind="deb",
                                               suite="bookworm", components=("main",)),),
                packages=tuple(packages), requested=tuple(request))
    return lock, files


def _control_fields(root: Path, info: dict[str, tuple[str, str, int, str]]
                    ) -> dict[str, tuple[bool, str | None, list[str]]]:
    out: dict[str, tuple[bool, str | None, list[str]]] = {}
    for name, (_, filename, _, _) in info.items():
        text = subprocess.run(
            ["dpkg-deb", "-f", str(root / "cache" / "archives" / filename),
             "Essential", "Priority", "Pre-Depends", "Depends"],
            check=True, capture_output=True, text=True).stdout
        values = dict(re.findall(r"^(\S+): (.*)$", text, re.M))
        deps = re.findall(r"(?:^|[,|]\s*)([a-z0-9][a-z0-9+.-]*)",
                          values.get("Pre-Depends", "") + "," + values.get("Depends", ""))
        out[name] = (values.get("Essential") == "yes", values.get("Priority"), deps)
    return out
