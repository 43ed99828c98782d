"""Benchmark: our install / compose of the bootable Debian 12 set against mmdebstrap.

Run as root from the repository root (needs the network once, for apt's indexes and the
.debs, which are kept in --apt-dir)::

    PYTHONPATH=$PWD:tests/compose python benchmarks/compose_vs_mmdebstrap.py --work /var/tmp/b

Measured in the same run from the same local .deb files:

- ``install``: :func:`imagecomposer.families.deb.install.install` of the lock (no initramfs);
- ``compose (cold)``: the whole bootable raw image with an empty tree cache (install,
  configuration, one zstd initramfs, systemd-boot, disk assembly) -- needs the disk side;
- ``compose (configuration only)``: the same build again: the installed tree comes from the
  cache;
- ``mmdebstrap (tuned)``: mmdebstrap --mode=root building only the root filesystem of the same
  package set from the same .debs, with its eatmydata hook and the initramfs generated once
  with zstd (update-initramfs diverted during installation, as we do).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from compose_debset import BOOTABLE, debian_lock

from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config, Core
from imagecomposer.families.deb import install as dpkg_install
from imagecomposer.spec.model import Base, Customizations, Image, Spec, User

DIVERT = ("chroot \"$1\" dpkg-divert --local --rename --add /usr/sbin/update-initramfs && "
          "printf '#!/bin/sh\\nexit 0\\n' > \"$1/usr/sbin/update-initramfs\" && "
          "chmod 755 \"$1/usr/sbin/update-initramfs\"")
INITRAMFS_ONCE = ("rm \"$1/usr/sbin/update-initramfs\" && chroot \"$1\" dpkg-divert --local "
                  "--rename --remove /usr/sbin/update-initramfs && echo COMPRESS=zstd > "
                  "\"$1/etc/initramfs-tools/conf.d/zstd\" && chroot \"$1\" update-initramfs "
                  "-c -k all")


def timed(what: str, results: list[tuple[str, float]], func: object, *args: object) -> None:
    start = time.monotonic()
    out = func(*args)  # type: ignore[operator]
    seconds = time.monotonic() - start
    steps = getattr(out, "timings", None)
    if steps:
        what += " (" + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()) + ")"
    results.append((what, seconds))
    print(f"{what}: {seconds:.1f} s", flush=True)


def mmdebstrap(names: list[str], debs: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    subprocess.run([
        "mmdebstrap", "--mode=root", "--variant=essential", "--include=" + ",".join(names),
        "--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata",
        f"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives && cp {debs}/*.deb "
        "\"$1\"/var/cache/apt/archives/",
        "--skip=download/empty", f"--essential-hook={DIVERT}",
        f"--customize-hook={INITRAMFS_ONCE}", "--aptopt=Acquire::Languages \"none\"",
        "bookworm", str(target), "/etc/apt/sources.list.d/debian.sources",
    ], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--apt-dir", type=Path,
                        default=Path("/var/tmp/imagecomposer-test-apt"))
    parser.add_argument("--skip-mmdebstrap", action="store_true")
    args = parser.parse_args()
    lock, files = debian_lock(args.apt_dir, BOOTABLE)
    print(f"{len(lock.packages)} packages, {sum(p.size for p in lock.packages) / 1e6:.0f} MB")
    results: list[tuple[str, float]] = []
    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timed("install", results, dpkg_install.install, lock, files, work / "install")
    shutil.rmtree(work / "install")
    try:
        import imagecomposer.compose.disk  # noqa: F401
        have_disk = True
    except ImportError:
        have_disk = False
    if have_disk:
        spec = Spec(image=Image(name="bench", base=Base(os="debian", version="12")),
                    customizations=Customizations(hostname="bench", users=(User(name="ops"),)))
        composer = Composer(Config(core=Core(cache_dir=work / "cache")))
        timed("compose (cold)", results, composer.compose, spec, lock, files, work / "c",
              work / "cold.raw")
        again = Spec(image=spec.image, customizations=Customizations(hostname="bench2"))
        timed("compose (configuration only)", results, composer.compose, again, lock, files,
              work / "c", work / "warm.raw")
    if not args.skip_mmdebstrap:
        timed("mmdebstrap (tuned, rootfs only)", results, mmdebstrap,
              [p.name for p in lock.packages], files[lock.packages[0].name].parent,
              work / "mmdebstrap")
        shutil.rmtree(work / "mmdebstrap")
    print("\n| step | seconds |\n|---|---|")
    for what, seconds in results:
        print(f"| {what} | {seconds:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
