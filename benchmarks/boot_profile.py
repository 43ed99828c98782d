"""Where a boot's seconds go, read inside the guest: a unit that prints ``systemd-analyze``
once the boot finished, and the parser of what it printed on the serial console.

The unit (:data:`UNIT`) waits for ``systemctl is-system-running --wait`` (so it takes no
CPU while the system boots and delays nothing: it is not ``Type=oneshot``), then prints
between :data:`BEGIN` and :data:`END`: ``systemd-analyze`` (time until PID 1 started, and
userspace), the critical chain of ``serial-getty@ttyS0.service`` (the login prompt), the
slowest units, and the kernel's timestamps of ``Run /init`` (the kernel hands over to the
initramfs) and of systemd's first message (the initramfs hands over to the real root).

:func:`parse` splits the time to the login prompt measured on the host (QEMU started ->
``login:``) into:

- firmware: QEMU, OVMF and the bootloader reading kernel and initrd, until the kernel's EFI
  stub prints its first line (:data:`EFI_STUB`, timed on the host: ``boot(timestamps=)``);
- kernel: until ``Run /init`` (includes unpacking the initrd);
- initramfs: until systemd starts in the real root (udev, finding and checking the root);
- userspace: systemd until ``serial-getty@ttyS0.service`` started;
- prompt: the rest, agetty printing the prompt after it started (and the host's polling).
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

EFI_STUB = "EFI stub: "  # the kernel's EFI stub, on the firmware's console, before the kernel
BEGIN = "BOOT-PROFILE-BEGIN"
END = "BOOT-PROFILE-END"
NAME = "boot-profile.service"
UNIT = f"""[Unit]
Description=imagecomposer benchmark: print where the boot went once it finished

[Service]
ExecStart=/bin/sh -c 'systemctl is-system-running --wait >/dev/null; echo {BEGIN}; \\
  systemd-analyze; systemd-analyze critical-chain serial-getty@ttyS0.service; \\
  systemd-analyze blame --no-pager | head -n 12; \\
  dmesg | grep -E "Run /init as init process|systemd\\\\[1\\\\]: systemd [0-9]"; echo {END}'
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""
ANSI = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]")
PREFIX = re.compile(r"^(?:.*?login: )?\[\s*[\d.]+\] [\w@.-]+\[\d+\]: ", re.M)
DURATION = re.compile(r"(?:(\d+)min)?\s*(?:(\d+(?:\.\d+)?)s)?\s*(?:(\d+)ms)?")


@attrs.frozen
class Profile:
    """Seconds of one boot to the login prompt, by phase (see the module docstring)."""

    login: float  # host-side: QEMU started -> "login:"
    kernel: float  # kernel start -> Run /init
    initramfs: float  # Run /init -> systemd in the real root
    userspace: float  # systemd -> serial-getty@ttyS0 started
    firmware: float | None = None  # QEMU started -> the EFI stub's line (host-side)
    chain: tuple[str, ...] = ()  # the critical chain of the serial getty
    blame: tuple[str, ...] = ()  # the slowest units

    @property
    def rest(self) -> float:
        """``login`` less the other phases: the prompt's printing (and the firmware when
        it was not timed)."""
        return (self.login - (self.firmware or 0.0) - self.kernel - self.initramfs
                - self.userspace)

    @property
    def split(self) -> str:
        phases = (f"kernel {self.kernel:.1f} + initramfs {self.initramfs:.1f} + userspace "
                  f"{self.userspace:.1f}")
        if self.firmware is None:
            return f"firmware and prompt {self.rest:.1f} + {phases} s"
        return f"firmware {self.firmware:.1f} + {phases} + prompt {self.rest:.1f} s"


def seconds(text: str) -> float:
    """systemd's durations: ``1min 7.293s``, ``786ms``, ``41.748s``."""
    found = DURATION.fullmatch(text.strip())
    if found is None or not any(found.groups()):
        raise ValueError(f"not a systemd duration: {text!r}")
    minutes, secs, millis = found.groups()
    return int(minutes or 0) * 60 + float(secs or 0) + int(millis or 0) / 1000


def parse(console: str, login: float, firmware: float | None = None) -> Profile:
    """The :class:`Profile` of a boot whose console holds the unit's output (``login``:
    the seconds to the login prompt measured on the host; ``firmware``: to the EFI stub's
    line)."""
    text = ANSI.sub("", console).replace("\r", "")
    if BEGIN not in text or END not in text:
        raise ValueError("the console holds no boot profile")
    body = PREFIX.sub("", text[text.index(BEGIN):text.index(END)])
    lines = body.splitlines()

    def first(pattern: str, where: str) -> re.Match[str]:
        found = re.search(pattern, where, re.M)
        if found is None:
            raise ValueError(f"no {pattern!r} in the boot profile")
        return found

    until_init = float(first(r"\[\s*([\d.]+)\] Run /init as init process", body)[1])
    until_systemd = float(first(r"\[\s*([\d.]+)\] systemd\[1\]: systemd \d", body)[1])
    startup = first(r"Startup finished in (.*?) =", body)[1]
    kernel = next(seconds(part.split("(")[0]) for part in startup.split(" + ")
                  if "(kernel)" in part)
    getty = seconds(first(r"serial-getty@ttyS0\.service @([\dmins. ]+?)\s*$", body)[1])
    start = next(i for i, line in enumerate(lines) if line.startswith("serial-getty@"))
    end = start + 1
    while end < len(lines) and "└─" in lines[end]:
        end += 1
    blame = tuple(line.strip() for line in lines[end:]
                  if re.fullmatch(r"\s*[\dminms. ]+ \S+\.[a-z]+", line))
    return Profile(login=login, firmware=firmware, kernel=until_init,
                   initramfs=until_systemd - until_init,
                   userspace=kernel + getty - until_systemd, chain=tuple(lines[start:end]),
                   blame=blame)


def add_to_tree(tree: Path) -> None:
    """Install and enable the unit in a root tree (the peer image)."""
    units = tree / "etc/systemd/system"
    (units / NAME).write_text(UNIT)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / NAME
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{NAME}")


def add_to_spec(spec_path: Path) -> None:
    """Add the unit to a copy of the minimal example (its file next to the spec, copied by
    ``customizations.files`` and enabled by ``customizations.services``)."""
    (spec_path.parent / NAME).write_text(UNIT)
    text = spec_path.read_text()
    files, services = "  files:\n", "  services:\n    enabled: [systemd-networkd]\n"
    if files not in text or services not in text:
        raise ValueError(f"{spec_path} has no files and services sections to extend")
    text = text.replace(files, f"{files}    - {{source: ./{NAME}, destination: "
                        f"/etc/systemd/system/{NAME}, mode: \"0644\"}}\n", 1)
    text = text.replace(services, services.replace("]", f", {NAME}]"), 1)
    spec_path.write_text(text)
