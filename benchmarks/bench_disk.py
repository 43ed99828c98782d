"""Disk assembly and boot-to-prompt figures, printed as a Markdown table.

    PYTHONPATH=. python benchmarks/bench_disk.py [--tree DIR] [--boot-image IMG --expect S]

* assembly of a 2 GiB GPT disk (512 MiB FAT32 ESP + ext4 root filling the rest) from a
  directory tree, with mke2fs writing in place at the partition offset (what assemble()
  does) against building a separate ext4 image and copying it in sparsely;
* the same tree as a verity-protected ext4 root and as squashfs;
* the same tree on LVM (root logical volume, ext4 in place at its offset), on LUKS2 (ext4
  staged, encrypted in place by cryptsetup reencrypt), LVM on LUKS2 and LUKS2 on LVM
  (argon2id with 64 MiB and a fixed time cost of 4, so key slots cost little);
* boot to the login prompt of the self-test image (Debian kernel + busybox initramfs via
  systemd-boot), or of ``--boot-image``, under whatever accelerator works here.

The default tree is the Python environment (/opt/icvenv: ~200 MB, ~11k files), a stand-in
for a root filesystem; pass ``--tree`` to measure a real one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagecomposer.boot import boot
from imagecomposer.compose.disk import assemble, filesystems, plan_layout, sparse, tree_size
from imagecomposer.compose.disk.luks import key_sources
from imagecomposer.spec.model import Disk, Encryption, LogicalVolume, Partition, VolumeGroup
from tests.fixtures.selftest import LOGIN, build_selftest_image, fetch_inputs

M = 1 << 20
G = 1 << 30


def timed(label: str, rows: list[tuple[str, str, str]], func: Callable[[], object],
          note: str = "") -> None:
    began = time.monotonic()
    func()
    rows.append((label, f"{time.monotonic() - began:.2f} s", note))


def stacked_rows(rows: list[tuple[str, str, str]], work: Path, esp: Path, tree: Path,
                 out: Path) -> None:
    """LVM and LUKS2 layouts of the same 2 GiB disk and tree."""
    (work / "pass").write_text("benchmark passphrase\n")
    enc = Encryption(passphrase_file=work / "pass", pbkdf_iterations=4)
    esp_part = Partition("esp", "esp", 512 * M)

    def lvm(name: str, encryption: Encryption | None = None,
            root_encryption: Encryption | None = None) -> Partition:
        return Partition(name, "lvm", None, filesystem="none", encryption=encryption,
                         volume_group=VolumeGroup("vg", (
                             LogicalVolume("root", 1024 * M, mountpoint="/",
                                           encryption=root_encryption),
                             LogicalVolume("var", None, mountpoint="/var"))))

    cases = [
        ("2 GiB GPT, vfat + LVM (root LV 1 GiB ext4, var LV)", lvm("system")),
        ("2 GiB GPT, vfat + LUKS2 root (1.5 GiB encrypted)",
         Partition("root", "root", None, encryption=enc)),
        ("2 GiB GPT, vfat + LVM on LUKS2 (1.5 GiB encrypted)", lvm("system", encryption=enc)),
        ("2 GiB GPT, vfat + LUKS2 on LVM (root LV 1 GiB encrypted)",
         lvm("system", root_encryption=enc)),
    ]
    for label, part in cases:
        disk = Disk(size=2 * G, partitions=(esp_part, part))
        layout = plan_layout(disk, seed="bench")

        def run(layout: object = layout, disk: Disk = disk) -> None:
            assemble(layout, {"esp": esp, "root": tree}, out,  # type: ignore[arg-type]
                     workdir=work, keys=key_sources(disk))

        timed(label, rows, run, f"disk file allocated: see {out.name}")
        rows[-1] = (*rows[-1][:2], f"{out.stat().st_blocks * 512 / M:.0f} MiB allocated")
        out.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(sys.prefix))
    parser.add_argument("--boot-image", type=Path)
    parser.add_argument("--expect", default="login:")
    parser.add_argument("--no-boot", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-disk-", dir=args.workdir))
    try:
        esp = work / "esp"
        (esp / "EFI" / "BOOT").mkdir(parents=True)
        inputs = None if args.no_boot else fetch_inputs(work / "inputs")
        if inputs is not None:
            shutil.copyfile(inputs.kernel, esp / "vmlinuz")
            shutil.copyfile(inputs.systemd_boot, esp / "EFI" / "BOOT" / "BOOTX64.EFI")
        content = tree_size(args.tree)
        note = f"tree {content / M:.0f} MiB, ESP {tree_size(esp) / M:.0f} MiB"
        disk = Disk(size=2 * G, partitions=(Partition("esp", "esp", 512 * M),
                                            Partition("root", "root", None)))
        layout = plan_layout(disk, seed="bench")
        out = work / "disk.raw"

        def in_place() -> None:
            assemble(layout, {"esp": esp, "root": args.tree}, out, workdir=work)

        timed("2 GiB GPT, vfat + ext4 in place (assemble)", rows, in_place, note)
        used = out.stat().st_blocks * 512
        rows.append(("  disk file allocated", f"{used / M:.0f} MiB", "sparse, of 2048 MiB"))
        out.unlink()

        def reproducible() -> None:
            os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
            try:
                assemble(layout, {"esp": esp, "root": args.tree}, out, workdir=work)
            finally:
                del os.environ["SOURCE_DATE_EPOCH"]

        timed("  same with SOURCE_DATE_EPOCH set", rows, reproducible,
              "both rows run the debugfs clamp of every inode (every build does)")
        out.unlink()

        def staged() -> None:
            image = work / "root.img"
            with image.open("wb") as handle:
                handle.truncate(layout.root.size)
            filesystems.make_filesystem(layout.root, args.tree, image)
            with out.open("wb") as handle:
                handle.truncate(layout.size)
            sparse.copy_into(image, out, layout.root_partition.start)
            image.unlink()

        timed("  ext4 only, separate image + sparse copy", rows, staged, "for comparison")
        out.unlink()

        def in_place_ext4_only() -> None:
            with out.open("wb") as handle:
                handle.truncate(layout.size)
            filesystems.make_filesystem(layout.root, args.tree, out,
                                        offset=layout.root_partition.start)

        timed("  ext4 only, mke2fs -E offset in place", rows, in_place_ext4_only,
              "for comparison")
        out.unlink()

        verity = Disk(size=2 * G, partitions=(
            Partition("esp", "esp", 512 * M), Partition("root-verity", "verity", 64 * M),
            Partition("root", "root", None)))
        vlayout = plan_layout(verity, seed="bench")
        timed("2 GiB GPT, vfat + ext4 + dm-verity", rows, lambda: assemble(
            vlayout, {"esp": esp, "root": args.tree}, out, workdir=work))
        out.unlink()
        squash = Disk(size=2 * G, partitions=(
            Partition("esp", "esp", 512 * M),
            Partition("root", "root", None, filesystem="squashfs")))
        slayout = plan_layout(squash, seed="bench")
        timed("2 GiB GPT, vfat + squashfs root", rows, lambda: assemble(
            slayout, {"esp": esp, "root": args.tree}, out, workdir=work))
        out.unlink()

        stacked_rows(rows, work, esp, args.tree, out)

        if not args.no_boot:
            image = args.boot_image
            expect = args.expect
            if image is None:
                assert inputs is not None
                began = time.monotonic()
                image = build_selftest_image(inputs, work / "selftest.raw",
                                             workdir=work).output
                rows.append(("self-test image assembly", f"{time.monotonic() - began:.2f} s",
                             "64 MiB: ESP + ext4"))
                expect = LOGIN
            result = boot(image, expect=expect, timeout=300)
            rows.append((f"boot to '{expect}' ({image.name})", f"{result.seconds:.1f} s",
                         f"{result.accelerator}, OVMF"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| what | time | note |\n|---|---|---|")
    for label, value, note in rows:
        print(f"| {label} | {value} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
