"""Host name, time zone, locale, keyboard and first-boot identity."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.sandbox import run_in_chroot

HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
RunInChroot = Callable[..., object]


def hostname(tree: Path, name: str) -> None:
    """/etc/hostname and the Debian-style /etc/hosts (127.0.1.1 for the host name)."""
    if not HOSTNAME.match(name) or len(name) > 253:
        raise ComposeError(f"invalid host name {name!r}")
    short = name.split(".", 1)[0]
    alias = f"{name}\t{short}" if short != name else name
    paths.write(tree, "/etc/hostname", f"{name}\n")
    paths.write(tree, "/etc/hosts",
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{alias}\n\n"
                "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
                "ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n")


def timezone(tree: Path, zone: str) -> None:
    """/etc/localtime -> the zone file, and /etc/timezone. Non-UTC zones need tzdata."""
    if ".." in zone.split("/") or zone.startswith("/"):
        raise ComposeError(f"invalid time zone {zone!r}")
    zone_file = f"/usr/share/zoneinfo/{zone}"
    with Root(tree) as root:
        if root.is_file(zone_file):
            root.symlink("/etc/localtime", zone_file)
        elif zone in ("UTC", "Etc/UTC"):
            root.remove("/etc/localtime")  # without tzdata, systemd and glibc default to UTC
        elif not root.exists("/usr/share/zoneinfo"):
            raise ComposeError(f"time zone {zone!r} needs the tzdata package in the image")
        else:
            raise ComposeError(f"unknown time zone {zone!r} (no {zone_file} in the image)")
    paths.write(tree, "/etc/timezone", f"{zone}\n")


def locale(tree: Path, name: str, *, chroot: RunInChroot = run_in_chroot,
           epoch: int | None = None) -> None:
    """Default locale in /etc/default/locale; other than C/POSIX it is generated in the image."""
    paths.write(tree, "/etc/default/locale", f"LANG={name}\n")
    paths.write(tree, "/etc/locale.conf", f"LANG={name}\n")
    if name.split(".")[0] in ("C", "POSIX"):
        return
    with Root(tree) as root:
        if not root.exists("/usr/sbin/locale-gen") or not root.is_file("/etc/locale.gen"):
            raise ComposeError(f"locale {name!r} needs the locales package in the image")
        lines = root.read_text("/etc/locale.gen").splitlines()
    charset = name.split(".", 1)[1] if "." in name else "ISO-8859-1"
    wanted = f"{name} {charset.upper().replace('UTF8', 'UTF-8')}"
    found = False
    for i, line in enumerate(lines):
        if line.lstrip("# ").strip() == wanted:
            lines[i] = wanted
            found = True
    if not found:
        lines.append(wanted)
    paths.write(tree, "/etc/locale.gen", "\n".join(lines) + "\n")
    chroot(tree, ["locale-gen"], env=epoch_env(resolve(epoch)), what=f"locale-gen {name}")


def keyboard(tree: Path, layout: str) -> None:
    """/etc/default/keyboard (console-setup) and /etc/vconsole.conf (systemd)."""
    paths.write(tree, "/etc/default/keyboard",
                f'XKBMODEL="pc105"\nXKBLAYOUT="{layout}"\nXKBVARIANT=""\nXKBOPTIONS=""\n'
                'BACKSPACE="guess"\n')
    paths.write(tree, "/etc/vconsole.conf", f"KEYMAP={layout}\n")


def first_boot_identity(tree: Path) -> None:
    """An empty /etc/machine-id: systemd generates a unique one at every boot until it can
    write it (``machine-id(5)``: an empty file is not a "first boot", so presets are not
    re-applied over the spec's services), so no two machines from one image share an id.
    D-Bus's copy points at it. No random seed is baked in."""
    paths.write(tree, "/etc/machine-id", "", mode=0o444)
    with Root(tree) as root:
        if root.exists("/var/lib/dbus/machine-id", follow=False):
            root.symlink("/var/lib/dbus/machine-id", "/etc/machine-id")
        for seed in ("/var/lib/systemd/random-seed", "/var/lib/systemd/credential.secret"):
            root.remove(seed)
