"""Issue 18 item 4's "Done when": builds SIGKILLed at random moments leave nothing behind.

A small Debian spec is built up to the configuration stage (dpkg in the chroot, then the
disk assembly) through the real CLI in a subprocess, 10 times, each killed with SIGKILL at
a random moment. After each kill: within ~1 s no process the build started is left, and
nothing is mounted under the workspace. After the last one: a final build succeeds, no
partial file is left anywhere, the caches are consistent, and no log line or error holds
the spec's password hash.

A moment is a random point of the build's log (its start, a stage starting, dpkg running,
the tree being stored in the cache, useradd, the initramfs, mkfs writing the partial disk
image) plus a random delay after it, so every phase gets hit without waiting for whole
builds. Both are drawn from a seeded generator; the seed is printed, and
``IMAGECOMPOSER_INTERRUPT_SEED=N`` replays a run. Each build changes the hostname
(``--set``), so the configuration stage always has work to do; in 2 of the first 9 the
installed-tree cache entry and the compose record are dropped, so that build runs dpkg. The
10th always dies while mkfs writes the partial disk image, so the final build has a killed
build's leftovers to remove (and must log each).
About 3 minutes on an idle 2-core machine, most of it the first, unkilled build.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation import children
from imagecomposer.foundation.cleanup import mounts_below
from imagecomposer.pipeline.workspace import Workspace

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

BUILDS = 10
DPKG_BUILDS = 2
# `openssl passwd -6 -salt interrupt0001 not-a-real-password`
HASH = ("$6$interrupt0001$QnAeA9lQHr0vDHMWWPNC5KzAlr7c/JfCJ2Wq/eqRV8yu302/c.zZUE0QkMvMJJ0epM9"
        "brKGC0NcY2wgr6/ND31")
SPEC = f"""\
image:
  name: interrupted
  version: "1"
  base: {{os: debian, version: "12", type: minimal, arch: x86_64}}
variables: {{hostname: interrupted}}
customizations:
  hostname: ${{hostname}}
  packages: {{recommends: false}}
  root_password_hash: "{HASH}"
  users:
    - {{name: admin, password_hash: "{HASH}"}}
  bootloader: none
disk:
  size: 1GiB
  partition_table: gpt
  partitions:
    - {{name: root, type: root, size: rest, filesystem: ext4, mountpoint: /}}
output: {{formats: [raw], compression: none}}
"""
STAGES = ("validate", "packages", "compose", "configuration")
# (log line that starts a phase, longest delay after it in seconds): the builds log at
# debug level, where every step has its line
MOMENTS = (("", 3.0), ("validate: started", 1.0), ("configuration: started", 2.0),
           ("configuration: system, users", 1.0), ("DEBUG: initramfs\n", 2.0),
           ("assembling interrupted.raw", 1.0), ("ext4 for partition 'root'", 3.0))
LAST_MOMENT = ("ext4 for partition 'root'", 0.5)
DPKG_MOMENTS = (("compose: started", 1.0), ("installing ", 3.0), ("+ unshare ", 5.0),
                ("storing the installed tree", 2.0))


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state, ppid, ..., starttime at 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every process below ``pid``."""
    kids: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))):
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
            starts[int(entry.name)] = fields[19]
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def still_running(processes: dict[int, str]) -> list[int]:
    """Those of ``processes`` that run (the same process: same start time; not a zombie)."""
    alive = []
    for pid, start in processes.items():
        fields = proc_stat(pid)
        if fields is not None and fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


def naming(paths: tuple[Path, ...]) -> list[str]:
    """Live processes whose command line names one of ``paths``."""
    found = []
    needles = [str(p).encode() for p in paths]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = proc_stat(int(entry.name))
        if fields and fields[0] != "Z" and any(n in cmdline for n in needles):
            shown = cmdline.replace(b"\0", b" ")[:200].decode(errors="replace")
            found.append(f"{entry.name}: {shown}")
    return found


def leftovers(workspace: Path, output: Path, cache: Path) -> list[Path]:
    found = [*workspace.glob("tmp*"), *workspace.glob("*.partial"),
             *workspace.glob("*/*.partial"), *output.parent.glob(f".{output.name}.staging-*"),
             *cache.glob("*/.tmp/*"),  # every cache's staging areas (docs/cache.md)
             *(cache / "packages").glob("objects/*/.*")]
    return sorted(found)


def seed_cache(config: Config, cache: Path) -> None:
    """Start from the session's package and metadata caches, when earlier tests filled
    them (hard links: package files are content-addressed and never written in place)."""
    source = config.core.cache_dir
    if (source / "packages").is_dir():
        subprocess.run(["cp", "-al", str(source / "packages"), str(cache / "packages")],
                       check=True)
        (cache / "packages" / ".lock").unlink(missing_ok=True)
    if (source / "metadata").is_dir():
        shutil.copytree(source / "metadata", cache / "metadata", symlinks=True)


def test_sigkill_at_random_moments_leaves_nothing_behind(config: Config,
                                                         tmp_path: Path) -> None:
    began = time.monotonic()
    seed = int(os.environ.get("IMAGECOMPOSER_INTERRUPT_SEED")
               or random.SystemRandom().randrange(1 << 32))
    print(f"\ninterrupt test seed {seed} (replay: IMAGECOMPOSER_INTERRUPT_SEED={seed})")
    rng = random.Random(seed)
    cache, work = tmp_path / "cache", tmp_path / "work"
    cache.mkdir()
    seed_cache(config, cache)
    config_file = tmp_path / "imagecomposer.yml"
    config_file.write_text(f"core: {{cache_dir: '{cache}', work_dir: '{work}'}}\n")
    spec = tmp_path / "interrupted.yml"
    spec.write_text(SPEC)
    workspace = Workspace.for_spec(work, "interrupted", spec).root
    output = tmp_path / "output" / "interrupted"
    logs: list[Path] = []

    def start(n: int) -> tuple[subprocess.Popen[bytes], Path]:
        log_file, console = tmp_path / f"build-{n}.log", tmp_path / f"build-{n}.out"
        logs.extend((log_file, console))
        with console.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "imagecomposer", "--config", str(config_file),
                 "--log-level", "debug", "--log-file", str(log_file), "build", "--stage",
                 "configuration",
                 "--set", f"hostname=host{n}", str(spec)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=children.die_with_parent())  # an aborted test kills it too
        return proc, console

    # The first build is not killed: it fills the caches.
    t0 = time.monotonic()
    proc, console = start(0)
    assert proc.wait(timeout=1800) == 0, console.read_text()[-3000:]
    print(f"first build: {time.monotonic() - t0:.0f} s")
    dpkg_builds = set(rng.sample(range(1, BUILDS), DPKG_BUILDS))

    for n in range(1, BUILDS + 1):
        if n in dpkg_builds:  # no installed tree to restore: this one runs dpkg
            for entry in (cache / "trees").glob("v2-*"):
                shutil.rmtree(entry)
            Workspace(workspace).forget("compose")
        marker, longest = rng.choice(DPKG_MOMENTS if n in dpkg_builds else MOMENTS)
        if n == BUILDS:  # the last one dies writing the disk: the final build must clean up
            marker, longest = LAST_MOMENT
        delay = rng.uniform(0.0, longest)
        t0 = time.monotonic()
        proc, console = start(n)
        watched: dict[int, str] = {}
        deadline = None
        while proc.poll() is None and (deadline is None or time.monotonic() < deadline):
            watched.update(descendants(proc.pid))  # everything it started, as it goes
            if deadline is None and marker in console.read_text(errors="replace"):
                deadline = time.monotonic() + delay
            time.sleep(0.05)
        watched.update(descendants(proc.pid))
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        last = (console.read_text(errors="replace").strip().splitlines() or [""])[-1]
        left = leftovers(workspace, output, cache)
        print(f"build {n}: {'finished' if finished else 'killed'} {delay:.1f} s after "
              f"{marker!r} ({time.monotonic() - t0:.1f} s), {len(left)} leftovers: "
              f"{last[:120]}")
        assert "Traceback" not in console.read_text(errors="replace")
        if finished:
            assert code == 0, console.read_text()[-3000:]
        # Within ~1 s nothing it started runs, and nothing is mounted under the workspace.
        t0 = time.monotonic()
        while still_running(watched) and time.monotonic() - t0 < 1.0:
            time.sleep(0.02)
        survivors = {p: " ".join(Path(f"/proc/{p}/cmdline").read_text().split("\0"))
                     for p in still_running(watched)}
        assert not survivors, f"seed {seed}, build {n}: still running: {survivors}"
        named = naming((workspace, cache, output))
        assert not named, f"seed {seed}, build {n}: still running: {named}"
        assert not mounts_below(workspace), f"seed {seed}, build {n}: mounts left"

    left = leftovers(workspace, output, cache)
    if not finished:  # killed while mkfs wrote the disk image
        assert [p for p in left if p.name.endswith(".partial")], f"seed {seed}: {left}"
    proc, console = start(BUILDS + 1)
    assert proc.wait(timeout=1800) == 0, f"seed {seed}: " + console.read_text()[-3000:]
    for path in left:  # the workspace's and the output's (the caches clean their own)
        if path.is_relative_to(workspace) or path.parent == output.parent:
            assert f"INFO: removed {path}, left by an interrupted build" \
                in console.read_text(), f"seed {seed}"
    assert (output / "interrupted.lock.json").is_file()
    assert (workspace / "configuration" / "interrupted.raw").is_file()
    assert not leftovers(workspace, output, cache), f"seed {seed}"

    # The caches are consistent: the commands see no damage, every package file has the
    # SHA256 its name says, every installed tree is complete.
    for action in (["list"], ["prune", "--dry-run"]):
        done = subprocess.run([sys.executable, "-m", "imagecomposer", "--config",
                               str(config_file), "cache", *action],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert not done.stderr.strip(), done.stderr  # no warning about a bad entry
        text = done.stdout.lower()
        assert not any(w in text for w in ("corrupt", "mismatch", "traceback")), text
        if action[0] == "prune":  # columns ... damaged, leftovers, in use: damaged 0 in each
            header, *rows = [line.split() for line in text.splitlines()[1:]]
            assert header[-5:-3] == ["damaged", "leftovers"], text
            assert all(row[-3] == "0" for row in rows if row[0] != "total"), text
    for package in (cache / "packages" / "objects").glob("*/*.*"):
        digest = hashlib.sha256(package.read_bytes()).hexdigest()
        assert package.name.split(".", 1)[0] == digest, f"seed {seed}: damaged {package}"
    for tree in (cache / "trees").glob("v2-*"):
        assert (tree / "tree/var/lib/dpkg/status").is_file(), f"seed {seed}: incomplete {tree}"
        assert (tree / "seal.json").is_file(), f"seed {seed}: not sealed {tree}"

    # The password hash was given to useradd/usermod in every build: no log holds it.
    for log in logs:
        if log.exists():
            assert HASH not in log.read_text(errors="replace"), f"{log} holds the hash"
    print(f"interrupt test: {time.monotonic() - began:.0f} s")
