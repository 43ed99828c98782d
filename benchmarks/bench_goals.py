"""Issue 16's speed goals, each figure and its ratio against its peer, measured in one run.

Run as root from the repository root (network once: the warm-up build fills the package
cache, which every later row reuses)::

    PYTHONPATH=$PWD:tests/compose python benchmarks/bench_goals.py [--work DIR] [--no-boot]
        [--no-many] [--no-mmdebstrap]

Every build is the CLI (``python -m imagecomposer build``, a child process, as a user runs
it) on a private copy of ``examples/debian-12-minimal.yml`` with every cache in ``--work``:

- cold CLI build: warm package cache, empty tree, initramfs and image caches; against tuned
  mmdebstrap (``compose_vs_mmdebstrap.mmdebstrap``: eatmydata, update-initramfs diverted,
  one zstd initramfs) making only the root filesystem of the same packages from the same
  .debs (goal: <= 30 s and <= 0.75x);
- configuration-only CLI rebuild (one file of the spec changed; goal <= 10 s) and identical
  rebuild (image cache hit; goal <= 1 s);
- four specs sharing most packages built by one ``build a.yml b.yml c.yml d.yml``, cold
  like the first row, against that one cold build (goal <= 2x);
- boot to the login prompt of our image against an image made from that mmdebstrap tree
  with the same bootloader (systemd-boot, the same command line, the same disk layout,
  assembled by our disk code), both booted the same way here, one after the other
  (goal <= 0.7x); and where each boot's seconds went, read inside the guest: both images
  carry ``benchmarks/boot_profile.py``'s unit, which prints ``systemd-analyze`` and the
  kernel's timestamps on the serial console once the boot finished (the private spec copy
  adds it with ``files`` and ``services``, the peer tree gets it enabled).

Prints a Markdown table: figure, peer, ratio, goal; then each boot's critical chain to the
serial getty and its slowest units.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import boot_profile
from benchmarks.compose_vs_mmdebstrap import mmdebstrap
from imagecomposer.boot import BootResult, boot
from imagecomposer.compose import bootloader, initramfs
from imagecomposer.compose.composer import default_disk
from imagecomposer.compose.disk import assemble, plan_layout, tree_size
from imagecomposer.spec import Spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/debian-12-minimal.yml"
EXTRA = ("less", "psmisc", "file", "bzip2")  # one more package in each of the four specs
Row = tuple[str, str, str, str, str]  # what, figure, peer, ratio, goal
CORES = len(os.sched_getaffinity(0))


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far, theirs included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(work: Path, *argv: str | Path) -> tuple[float, float]:
    """Seconds one ``imagecomposer build`` took (it must succeed), and its CPU seconds (the
    whole process tree's user + system time).

    With its bytecode, as an installed package has it: compiled by the first build into
    ``work`` (``PYTHONPYCACHEPREFIX``), whatever ``PYTHONDONTWRITEBYTECODE`` says here (set,
    every build compiled ~900 modules again: 0.5-1 s of each row)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    began, cpu = time.monotonic(), children_cpu()
    done = subprocess.run([sys.executable, "-m", "imagecomposer", "--config",
                           work / "config.yml", "--log-file", work / "build.log", "build",
                           *argv], env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.monotonic() - began, children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, cpu


def cold_caches(work: Path) -> None:
    """Keep the package and metadata caches, empty every other cache and the workspaces."""
    for name in ("trees", "initramfs", "images"):
        shutil.rmtree(work / "cache" / name, ignore_errors=True)
    shutil.rmtree(work / "work", ignore_errors=True)


def deb_dir(work: Path, lock: dict[str, object], into: Path) -> Path:
    """The locked .debs of the package cache under apt's archive names."""
    into.mkdir(parents=True, exist_ok=True)
    packages = lock["packages"]
    assert isinstance(packages, list)
    for p in packages:
        name = f"{p['name']}_{p['version'].replace(':', '%3a')}_{p['arch']}.deb"
        found = next((work / "cache/packages").rglob(f"{p['sha256']}.deb"))
        os.link(found, into / name)
    return into


def peer_image(spec: Spec, tree: Path, esp: Path, out: Path, work: Path) -> Path:
    """A disk like ours from the mmdebstrap tree: same layout, systemd-boot, command line."""
    disk = default_disk(spec)
    names = [p.name for p in disk.partitions]
    layout = plan_layout(disk, seed="peer", content_sizes={n: 1 << 30 for n in names})
    kernels = initramfs.kernels(tree)
    bootloader.install(tree, esp, spec, layout, kernels)
    layout = plan_layout(disk, seed="peer", content_sizes={
        "esp": tree_size(esp), "root": tree_size(tree)})
    assemble(layout, {"esp": esp, "root": tree}, out, workdir=work / "peer-disk")
    return out


def profiled_boot(image: Path, log: Path) -> tuple[BootResult, boot_profile.Profile]:
    """Boot to the login prompt, then wait for the boot profile the image's unit prints."""
    result = boot(image, timeout=600, console_log=log.with_suffix(".console"),
                  afterwards=boot_profile.END, timestamps=[boot_profile.EFI_STUB])
    console = log.with_suffix(".console").read_text(errors="replace")
    return result, boot_profile.parse(console, result.seconds,
                                      dict(result.seen_at).get(boot_profile.EFI_STUB))


def ratio(ours: float, peer: float | None) -> str:
    return f"{ours / peer:.2f}x" if peer else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/icbench-goals"))
    parser.add_argument("--no-boot", action="store_true")
    parser.add_argument("--no-many", action="store_true")
    parser.add_argument("--no-mmdebstrap", action="store_true")
    args = parser.parse_args(argv)
    work = args.work.absolute()
    shutil.rmtree(work, ignore_errors=True)
    spec_dir = work / "spec"
    shutil.copytree(EXAMPLE.parent, spec_dir, ignore=shutil.ignore_patterns("output"))
    spec_path = spec_dir / EXAMPLE.name
    boot_profile.add_to_spec(spec_path)
    (work / "config.yml").write_text(
        f"core: {{cache_dir: {work}/cache, work_dir: {work}/work}}\n"
        f"storage: {{seal_key: {work}/cache.key}}\n")
    rows: list[Row] = []
    profiles: list[tuple[str, boot_profile.Profile]] = []
    try:
        cli(work, spec_path, "-o", work / "warm")  # fills the package cache (network)
        cold_caches(work)
        cold, cold_cpu = cli(work, spec_path, "-o", work / "out")
        spec = Spec.load(spec_path)
        lock = json.loads((work / "out" / f"{spec.image.name}.lock.json").read_text())
        peer_tree = work / "mmdebstrap"
        peer: float | None = None
        peer_cpu = 0.0
        if not args.no_mmdebstrap:
            debs = deb_dir(work, lock, work / "debs")
            began, cpu = time.monotonic(), children_cpu()
            mmdebstrap([p["name"] for p in lock["packages"]], debs, peer_tree)
            peer, peer_cpu = time.monotonic() - began, children_cpu() - cpu
        rows.append(("cold CLI build (warm package cache)", f"{cold:.1f} s (CPU {cold_cpu:.0f} s)",
                     f"mmdebstrap rootfs only {peer:.1f} s (CPU {peer_cpu:.0f} s)"
                     if peer else "-",
                     ratio(cold, peer), "<= 30 s, <= 0.75x"))
        motd = spec_dir / "files/motd"
        motd.write_text(motd.read_text() + "changed\n")
        again, again_cpu = cli(work, spec_path, "-o", work / "out")
        rows.append(("configuration-only CLI rebuild",
                     f"{again:.1f} s (CPU {again_cpu:.1f} s)", "-", "-", "<= 10 s"))
        same, same_cpu = cli(work, spec_path, "-o", work / "out")
        rows.append(("identical CLI rebuild", f"{same:.2f} s (CPU {same_cpu:.2f} s)", "-", "-",
                     "<= 1 s"))
        if not args.no_mmdebstrap and not args.no_boot:
            boot_profile.add_to_tree(peer_tree)
            image = peer_image(spec, peer_tree, work / "peer-esp", work / "peer.raw", work)
            ours, mine = profiled_boot(work / "out" / f"{spec.image.name}.raw", work / "ours")
            theirs, peers = profiled_boot(image, work / "peer")
            profiles += [("ours", mine), ("peer", peers)]
            initrd = next((work / "mmdebstrap/boot").glob("initrd.img-*")).stat().st_size
            rows.append(("boot to login prompt", f"{ours.seconds:.1f} s ({ours.accelerator})",
                         f"mmdebstrap image {theirs.seconds:.1f} s (initrd "
                         f"{initrd / 1e6:.0f} MB)", ratio(ours.seconds, theirs.seconds),
                         "<= 0.7x"))
            rows.append(("boot, guest-side split", mine.split, peers.split, "-", "-"))
        shutil.rmtree(peer_tree, ignore_errors=True)
        if not args.no_many:
            specs = []
            for letter, package in zip("abcd", EXTRA, strict=True):
                text = spec_path.read_text().replace(
                    "name: debian-12-minimal", f"name: many-{letter}").replace(
                    "ca-certificates]", f"ca-certificates, {package}]")
                path = spec_dir / f"{letter}.yml"
                path.write_text(text)
                specs.append(path)
            cold_caches(work)
            many, many_cpu = cli(work, *specs)
            # a build cannot take less than its CPU time spread over every core
            rows.append(("four specs in one build (cold, like row 1)",
                         f"{many:.1f} s (CPU {many_cpu:.0f} s: at least "
                         f"{many_cpu / CORES:.0f} s on {CORES} cores)",
                         f"one cold build {cold:.1f} s (CPU {cold_cpu:.0f} s)",
                         f"{ratio(many, cold)} (CPU floor {ratio(many_cpu / CORES, cold)})",
                         "<= 2x"))
    finally:
        print("| goal | ours | peer | ratio | goal |\n|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        for who, profile in profiles:
            print(f"\n{who}: critical chain to the serial getty, then the slowest units\n")
            print("\n".join(f"    {line}" for line in (*profile.chain, "", *profile.blame)))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
