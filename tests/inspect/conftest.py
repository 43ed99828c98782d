"""Small synthetic disk images for the inspect tests, built once per session without root
devices (``imagecomposer.compose.disk.assemble``: sfdisk + mkfs from directories).

``synthetic`` holds an ESP (systemd-boot entry, a signed and an unsigned EFI binary), an ext4
root with the files inspect reads (os-release through a symlink, users with a password hash,
enabled and masked units, a dpkg status, a kernel, an SBOM, links, holes, odd names) and
squashfs, erofs and xfs partitions with the same small data tree. ``variant`` differs by a
package, a file, a changed file and the hostname. ``verity_disk`` has a dm-verity sealed root.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from imagecomposer.compose.disk import assemble, plan_layout
from imagecomposer.compose.disk.verity import VerityInfo
from imagecomposer.spec.model import Disk, Partition

MIB = 1 << 20
KERNEL = "6.1.0-test-amd64"
SECRET_HASH = "$6$saltsalt$SECRETHASHNEVERPRINTED"
AS_ROOT = os.geteuid() == 0


def minimal_pe(payload: bytes = b"\xc3" * 16) -> bytes:
    """A tiny PE32+ EFI application (one .text section) that sbsign accepts."""
    file_align, sect_align, headers = 0x200, 0x1000, 0x200
    raw = payload + bytes(-len(payload) % file_align)
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x0022)
    opt = bytearray(240)
    struct.pack_into("<HBBIIIII", opt, 0, 0x20B, 0, 0, len(raw), 0, 0, sect_align, sect_align)
    struct.pack_into("<II", opt, 32, sect_align, file_align)
    struct.pack_into("<IIII", opt, 52, 0, 2 * sect_align, headers, 0)
    struct.pack_into("<HH", opt, 68, 10, 0)
    struct.pack_into("<QQQQ", opt, 72, 0x100000, 0x1000, 0x100000, 0x1000)
    struct.pack_into("<II", opt, 104, 0, 16)
    section = struct.pack("<8sIIIIIIHHI", b".text", len(payload), sect_align, len(raw), headers,
                          0, 0, 0, 0, 0x60000020)
    head = bytes(dos) + b"PE\0\0" + coff + bytes(opt) + section
    return head + bytes(headers - len(head)) + raw


def run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("sbkey")
    run("openssl", "req", "-quiet", "-newkey", "rsa:2048", "-nodes", "-keyout", work / "db.key",
        "-new", "-x509", "-sha256", "-days", "30", "-subj", "/CN=inspect test db/",
        "-out", work / "db.crt")
    return work / "db.key", work / "db.crt"


def status_file(packages: dict[str, str]) -> str:
    paragraphs = []
    for name, version in sorted(packages.items()):
        paragraphs.append(f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
                          f"Architecture: amd64\nVersion: {version}\nDescription: {name}\n"
                          " more text\n")
    paragraphs.append("Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\n"
                      "Version: 1.0\n")
    return "\n".join(paragraphs)


def data_tree(target: Path) -> Path:
    """The small tree squashfs, erofs and xfs partitions hold."""
    (target / "etc").mkdir(parents=True)
    (target / "usr/lib").mkdir(parents=True)
    (target / "usr/lib/os-release").write_text('ID=data\nPRETTY_NAME="data tree"\n')
    (target / "etc/os-release").symlink_to("../usr/lib/os-release")
    (target / "etc/hostname").write_text("data\n")
    (target / "big.bin").write_bytes(bytes(range(256)) * 5000)
    (target / "empty").write_bytes(b"")
    secret = target / "etc/secret"
    secret.write_text("mode 600\n")
    secret.chmod(0o600)
    if AS_ROOT:
        os.chown(secret, 1000, 27)
    return target


def root_tree(target: Path, *, hostname: str, packages: dict[str, str],
              extra: dict[str, str], esp_partuuid: str, fstab: str = "") -> Path:
    usr = target / "usr"
    (usr / "lib/modules" / KERNEL / "kernel").mkdir(parents=True)
    (usr / "lib/modules" / KERNEL / "modules.dep").write_text("")
    (usr / "lib/systemd/system").mkdir(parents=True)
    (usr / "lib/os-release").write_text('PRETTY_NAME="Synthetic Linux 1"\nNAME="Synthetic"\n'
                                        'ID=synthetic\nVERSION_ID="1"\n'
                                        'VERSION_CODENAME=test\n')
    (usr / "share/sbom").mkdir(parents=True)
    (usr / "share/sbom/synthetic.spdx.json").write_text(json.dumps({
        "spdxVersion": "SPDX-2.3", "packages": [
            {"name": n, "versionInfo": v, "externalRefs": [{
                "referenceType": "purl",
                "referenceLocator": f"pkg:deb/synthetic/{n}@{v}?arch=amd64"}]}
            for n, v in sorted(packages.items())]}))
    (usr / "bin").mkdir()
    (usr / "bin/tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    (usr / "bin/tool").chmod(0o4755)
    os.link(usr / "bin/tool", usr / "bin/tool-hardlink")
    (target / "bin").symlink_to("usr/bin")
    etc = target / "etc"
    (etc / "systemd/system/multi-user.target.wants").mkdir(parents=True)
    (etc / "kernel").mkdir()
    (etc / "os-release").symlink_to("../usr/lib/os-release")
    (etc / "hostname").write_text(f"{hostname}\n")
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    (etc / "locale.conf").write_text("LANG=en_US.UTF-8\n")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                "alice:x:1000:1000:Alice:/home/alice:/bin/zsh\n"
                                "svc:x:999:999::/nonexistent:/usr/sbin/nologin\n")
    (etc / "shadow").write_text(f"root:*:19000:0:99999:7:::\nalice:{SECRET_HASH}:19000::::::\n"
                                "svc:!:19000::::::\n")
    (etc / "shadow").chmod(0o640)
    (etc / "group").write_text("root:x:0:\nsudo:x:27:alice\nalice:x:1000:\nsvc:x:999:\n")
    (etc / "fstab").write_text(f"PARTUUID={esp_partuuid} /boot/efi vfat defaults 0 2\n{fstab}")
    (etc / "kernel/cmdline").write_text("root=LABEL=root quiet\n")
    wants = etc / "systemd/system/multi-user.target.wants"
    (wants / "foo.service").symlink_to("/usr/lib/systemd/system/foo.service")
    (etc / "systemd/system/bad.service").symlink_to("/dev/null")
    (etc / "systemd/system/default.target").symlink_to(
        "/usr/lib/systemd/system/multi-user.target")
    (target / "var/lib/dpkg").mkdir(parents=True)
    (target / "var/lib/dpkg/status").write_text(status_file(packages))
    boot = target / "boot"
    boot.mkdir()
    (boot / f"vmlinuz-{KERNEL}").write_bytes(minimal_pe(b"kernel"))
    (boot / f"initrd.img-{KERNEL}").write_bytes(b"initrd")
    odd = target / "srv/odd dir"
    odd.mkdir(parents=True)
    (odd / "name with spaces.txt").write_text("spaces\n")
    (odd / "ünïcode").write_text("unicode\n")
    (odd / "loop-a").symlink_to("loop-b")
    (odd / "loop-b").symlink_to("loop-a")
    (odd / "abs-chain").symlink_to("/bin/tool")
    with (target / "srv/sparse.img").open("wb") as handle:
        handle.seek(3 * MIB)
        handle.write(b"end of a sparse file")
    for path, content in extra.items():
        (target / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (target / path.lstrip("/")).write_text(content)
    home = target / "home/alice"
    home.mkdir(parents=True)
    (home / "notes").write_text("alice's notes\n")
    if AS_ROOT:
        os.chown(home, 1000, 1000)
        os.chown(home / "notes", 1000, 1000)
        os.chown(etc / "shadow", 0, 42)
    return target


def esp_tree(target: Path, key: tuple[Path, Path], cmdline: str) -> Path:
    (target / "EFI/BOOT").mkdir(parents=True)
    (target / "EFI/systemd").mkdir(parents=True)
    (target / "loader/entries").mkdir(parents=True)
    (target / f"synthetic/{KERNEL}").mkdir(parents=True)
    loader = target / "EFI/systemd/systemd-bootx64.efi"
    loader.write_bytes(minimal_pe(b"systemd-boot 252"))
    shutil.copyfile(loader, target / "EFI/BOOT/BOOTX64.EFI")
    kernel = target / f"synthetic/{KERNEL}/linux"
    kernel.write_bytes(minimal_pe(b"kernel"))
    for binary in (target / "EFI/BOOT/BOOTX64.EFI", kernel):
        signed = binary.with_suffix(".signed")
        run("sbsign", "--key", key[0], "--cert", key[1], "--output", signed, binary)
        signed.replace(binary)
    (target / f"synthetic/{KERNEL}/initrd").write_bytes(b"initrd")
    (target / "loader/loader.conf").write_text("default synthetic-*\ntimeout 0\n")
    (target / f"loader/entries/synthetic-{KERNEL}.conf").write_text(
        f"title Synthetic 1\nversion {KERNEL}\nlinux /synthetic/{KERNEL}/linux\n"
        f"initrd /synthetic/{KERNEL}/initrd\noptions {cmdline}\n")
    return target


Builder = Callable[..., Path]


@pytest.fixture(scope="session")
def build_disk(tmp_path_factory: pytest.TempPathFactory,
               signing_key: tuple[Path, Path]) -> Builder:
    def build(name: str, *, hostname: str = "synth",
              packages: dict[str, str] | None = None, extra: dict[str, str] | None = None,
              filesystems: bool = True, seed: str = "synthetic",
              table: Literal["gpt", "mbr"] = "gpt") -> Path:
        work = tmp_path_factory.mktemp(name)
        parts = [Partition("esp", "esp", 40 * MIB, "vfat", "/boot/efi"),
                 Partition("root", "root", 40 * MIB, "ext4", "/")]
        if filesystems:
            parts += [Partition("sq", "generic", 8 * MIB, "squashfs", "/srv/sq"),
                      Partition("ero", "generic", 8 * MIB, "erofs", "/srv/ero"),
                      Partition("xf", "generic", 300 * MIB, "xfs", "/srv/xf")]
        layout = plan_layout(Disk(None, table, tuple(parts)), seed=seed)
        planned = {p.name: p for p in layout.partitions}
        mounts = ""
        if filesystems:  # one of each way fstab names a filesystem
            mounts = (f"PARTLABEL=sq /srv/sq squashfs ro 0 0\n"
                      f"/dev/disk/by-partuuid/{planned['ero'].partuuid} /srv/ero erofs ro 0 0\n"
                      f"UUID={planned['xf'].fsuuid} /srv/xf xfs defaults 0 0\n")
        root = root_tree(work / "root", hostname=hostname,
                         packages=packages or {"base": "1.0", "tool": "2.0-1"},
                         extra=extra or {}, esp_partuuid=planned["esp"].partuuid,
                         fstab=mounts)
        trees = {"root": root,
                 "esp": esp_tree(work / "esp", signing_key, "root=LABEL=root ro quiet")}
        if filesystems:
            data = data_tree(work / "data")
            trees.update({"sq": data, "ero": data, "xf": data})
        return assemble(layout, trees, work / f"{name}.raw", workdir=work).output

    return build


@pytest.fixture(scope="session")
def synthetic(build_disk: Builder) -> Path:
    return build_disk("synthetic")


@pytest.fixture(scope="session")
def variant(build_disk: Builder) -> Path:
    """``synthetic`` with one package more, one package upgraded, one file more and another
    hostname (so the dpkg status, the SBOM and /etc/hostname change too)."""
    return build_disk("variant", hostname="synth2",
                      packages={"base": "1.0", "tool": "2.1-1", "extra": "0.9"},
                      extra={"/etc/added.conf": "added\n"}, filesystems=True)


@pytest.fixture(scope="session")
def verity_disk(tmp_path_factory: pytest.TempPathFactory,
                signing_key: tuple[Path, Path]) -> Path:
    work = tmp_path_factory.mktemp("verity")
    parts = (Partition("esp", "esp", 40 * MIB, "vfat", "/boot/efi"),
             Partition("root", "root", 24 * MIB, "ext4", "/"),
             Partition("root-verity", "verity", 4 * MIB, "none"))
    layout = plan_layout(Disk(None, "gpt", parts), seed="verity")
    root = root_tree(work / "root", hostname="sealed", packages={"base": "1.0"}, extra={},
                     esp_partuuid=layout.partitions[0].partuuid)
    esp = work / "esp"
    esp.mkdir()

    def entry(info: VerityInfo) -> None:
        esp_tree(esp, signing_key, info.cmdline())

    return assemble(layout, {"root": root, "esp": esp}, work / "verity.raw", workdir=work,
                    on_verity=entry).output
