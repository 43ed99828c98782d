"""Issue 18 item 4: one build per workspace, and a killed build's leftovers are removed.

Hermetic: the concurrent builds resolve against a signed test archive on 127.0.0.1 whose
server stalls one package download, so the first build is reliably still running (and
holding the workspace) when the second starts.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagecomposer.cli.main import main
from imagecomposer.foundation.errors import WorkspaceBusy
from imagecomposer.pipeline.workspace import Workspace, lock_holder
from tests.fixtures.debrepo import DebArchive, GpgKey, RepoServer, base_system

HOLD = """
import sys, time
from pathlib import Path
from imagecomposer.pipeline.workspace import Workspace
with Workspace(Path(sys.argv[1])).locked():
    Path(sys.argv[2]).touch()
    time.sleep(float(sys.argv[3]))
"""


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Another process holding the workspace ``tmp_path/ws`` for up to 60 s."""
    ready = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "ws"), str(ready),
                             "60"])
    wait_for(ready)
    yield proc, tmp_path / "ws"
    proc.kill()
    proc.wait()


def test_a_held_workspace_fails_at_once_naming_the_holder(
        holder: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, root = holder
    t0 = time.monotonic()
    with pytest.raises(WorkspaceBusy) as info, Workspace(root).locked():
        pass
    assert time.monotonic() - t0 < 1
    assert info.value.pid == proc.pid
    assert info.value.command is not None and "Workspace(Path(sys.argv[1])).locked()" \
        in info.value.command
    text = str(info.value)
    assert text.startswith("Workspace busy: another build of this spec is running "
                           f"(pid {proc.pid}: ")
    assert str(root) in text and "--wait" in text
    assert lock_holder(root / ".lock")[0] == proc.pid


def test_wait_queues_behind_the_holder(holder: tuple[subprocess.Popen[bytes], Path],
                                       caplog: pytest.LogCaptureFixture) -> None:
    proc, root = holder
    caplog.set_level(logging.INFO, "imagecomposer")
    threading.Timer(0.5, proc.terminate).start()
    t0 = time.monotonic()
    with Workspace(root).locked(wait=True):
        waited = time.monotonic() - t0
        assert (root / ".lock").read_text() == f"{os.getpid()}\n"
    assert 0.3 < waited < 10
    assert f"waiting for the build that holds {root} (pid {proc.pid}" in caplog.text


def test_the_lock_dies_with_a_killed_holder(
        holder: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, root = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Workspace(root).locked():  # no stale lock to clear by hand
        pass


# --- the real pipeline: two builds of the same spec at once -------------------------------


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> GpgKey:
    return GpgKey.create(tmp_path_factory.mktemp("gpg-archive"))


@pytest.fixture
def served(tmp_path: Path, gpg_key: GpgKey) -> Iterator[tuple[RepoServer, DebArchive]]:
    www = tmp_path / "www"
    archive = DebArchive(www / "debian", gpg_key)
    archive.add("bookworm", *base_system())
    archive.add("bookworm-updates")
    archive.add("bookworm-security")
    archive.publish()
    with RepoServer(www) as server:
        yield server, archive


def write_config(tmp_path: Path, mirror: str, keyring: Path) -> Path:
    config = tmp_path / "imagecomposer.yml"
    config.write_text(
        f"core: {{cache_dir: '{tmp_path}/cache', work_dir: '{tmp_path}/work'}}\n"
        f"providers:\n  debian: {{kind: deb, mirror: '{mirror}', "
        f"security_mirror: '{mirror}', keyring: '{keyring}'}}\n")
    return config


SPEC = "image: {name: same, base: {os: debian, version: '12', type: minimal}}\n"


def test_two_builds_of_the_same_spec_one_gets_a_clear_error(
        tmp_path: Path, gpg_key: GpgKey, served: tuple[RepoServer, DebArchive],
        capsys: pytest.CaptureFixture[str]) -> None:
    server, archive = served
    config = write_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    spec = tmp_path / "same.yml"
    spec.write_text(SPEC)
    libc = "/" + archive.deb_path("libc6").relative_to(tmp_path / "www").as_posix()
    server.stall.add(libc)  # the first build sits in its download, holding the workspace
    argv = ["--config", str(config), "build", "--stage", "packages", str(spec)]
    first = subprocess.Popen([sys.executable, "-m", "imagecomposer", *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while server.count(libc) == 0:
            assert first.poll() is None and time.monotonic() < deadline, "no download began"
            time.sleep(0.05)
        t0 = time.monotonic()
        assert main(argv) == 1
        assert time.monotonic() - t0 < 5
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("ERROR") == 1
        assert f"Workspace busy: another build of this spec is running (pid {first.pid}: " \
               in err
        assert "imagecomposer" in err and "--wait" in err
    finally:
        first.kill()
        first.wait()
    server.stall.clear()
    assert main(argv) == 0  # the killed build's lock went with it


# --- what a killed build left -----------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_next_build_removes_what_a_killed_build_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = tmp_path / "keyring.gpg"  # validate checks that it exists (issue 12)
    keyring.write_bytes(b"")
    config = write_config(tmp_path, "http://127.0.0.1:9/debian", keyring)
    spec = tmp_path / "same.yml"
    spec.write_text(SPEC)
    root = Workspace.for_spec(tmp_path / "work", "same", spec).root
    scratch = root / "tmp-configuration" / "root" / "etc"
    scratch.mkdir(parents=True)
    (scratch / "big").write_bytes(os.urandom(1 << 20))
    (root / "configuration").mkdir()
    partial = root / "configuration" / ".same.raw.k1ll3d.partial"
    with partial.open("wb") as fh:  # a 2 GiB sparse disk image holding 3 MiB
        fh.truncate(2 << 30)
        fh.write(os.urandom(3 << 20))
    (root / "compose" / "root").mkdir(parents=True)  # a stage's output: stays
    out = tmp_path / "output" / "same"
    dead = out.with_name(f".same.staging-{dead_pid()}-0123abcd")
    live = out.with_name(f".same.staging-{os.getppid()}-4567cdef")  # a running build's
    for staging in (dead, live):
        staging.mkdir(parents=True)
        (staging / "same.raw").write_bytes(b"x" * 8192)
    # the staging areas of killed cache writers (a tree copy, an image store): every cache's
    stale_tree = tmp_path / "cache" / "trees" / ".tmp" / f"{dead_pid()}-0123abcd"
    (stale_tree / "entry" / "etc").mkdir(parents=True)
    stale_image = tmp_path / "cache" / "images" / ".tmp" / f"{dead_pid()}-4567abcd"
    (stale_image / "entry" / "files").mkdir(parents=True)

    assert main(["--config", str(config), "build", "--stage", "validate", str(spec)]) == 0

    assert not (root / "tmp-configuration").exists() and not partial.exists()
    assert not dead.exists() and not stale_tree.exists() and not stale_image.exists()
    assert live.is_dir() and (root / "compose" / "root").is_dir()
    err = capsys.readouterr().err
    assert f"INFO: removed {partial}, left by an interrupted build (3.0 MiB)" in err
    assert f"INFO: removed {root / 'tmp-configuration'}, left by an interrupted build (1.0" \
        in err
    assert f"INFO: removed {dead}, left by an interrupted build (" in err
    assert "INFO: removing the leftovers of an interrupted build freed 4." in err


def test_killing_a_multi_spec_build_kills_every_build(
        tmp_path: Path, gpg_key: GpgKey, served: tuple[RepoServer, DebArchive]) -> None:
    """``build a.yml b.yml`` runs one child process per spec: they die with it."""
    server, archive = served
    config = write_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    specs = []
    for name in ("first", "second"):
        specs.append(tmp_path / f"{name}.yml")
        specs[-1].write_text(SPEC.replace("name: same", f"name: {name}"))
    libc = "/" + archive.deb_path("libc6").relative_to(tmp_path / "www").as_posix()
    server.stall.add(libc)
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "imagecomposer", "--config", str(config), "build", "--stage",
         "packages", *map(str, specs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    builds: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(builds) < 2 or server.count(libc) == 0:
            assert time.monotonic() < deadline, "the builds never started downloading"
            builds = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                      and _parent(int(p.name)) == coordinator.pid]
            time.sleep(0.05)
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait()
        deadline = time.monotonic() + 1
        while [p for p in builds if _running(p)] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [p for p in builds if _running(p)], "a build outlived its coordinator"
    finally:
        coordinator.kill()
        for pid in builds:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _parent(pid: int) -> int | None:
    fields = _fields(pid)
    return int(fields[1]) if fields else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _running(pid: int) -> bool:
    fields = _fields(pid)
    return bool(fields) and fields[0] != "Z"


def test_interrupting_a_multi_spec_build_stops_every_build_cleanly(
        tmp_path: Path, gpg_key: GpgKey, served: tuple[RepoServer, DebArchive]) -> None:
    """SIGTERM to ``build a.yml b.yml`` (what a CI runner sends on cancel): each build unwinds
    once, as a single build does on Ctrl-C, and the command exits 130 without a trace."""
    server, archive = served
    config = write_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    specs = []
    for name in ("first", "second"):
        specs.append(tmp_path / f"{name}.yml")
        specs[-1].write_text(SPEC.replace("name: same", f"name: {name}"))
    libc = "/" + archive.deb_path("libc6").relative_to(tmp_path / "www").as_posix()
    server.stall.add(libc)
    argv = ["--config", str(config), "build", "--stage", "packages", *map(str, specs)]
    coordinator = subprocess.Popen([sys.executable, "-m", "imagecomposer", *argv],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while server.count(libc) < 2:  # both builds sit in their download
            assert coordinator.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        builds = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                  and _parent(int(p.name)) == coordinator.pid]
        t0 = time.monotonic()
        coordinator.send_signal(signal.SIGTERM)
        _, err = coordinator.communicate(timeout=45)
        seconds = time.monotonic() - t0
    finally:
        coordinator.kill()
    assert coordinator.returncode == 130, err
    assert "Traceback" not in err
    for name in ("first", "second"):  # where each build stopped, once
        assert len(re.findall(rf"ERROR: \S*{name}.yml: packages failed after [0-9.]+ s: "
                              "Interrupted by signal SIGTERM", err)) == 1, err
    assert err.endswith("ERROR: Interrupted by signal SIGTERM\n")
    # the builds (and the coordinator's child reaper) end with it: allow the kernel a moment
    # to deliver PR_SET_PDEATHSIG and the reaper to read its pipe's end
    deadline = time.monotonic() + 3
    while [p for p in builds if _running(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = {p: _cmdline(p) for p in builds if _running(p)}
    assert not survivors, f"outlived their coordinator: {survivors}"
    for name in ("first", "second"):
        root = Workspace.for_spec(tmp_path / "work", name, tmp_path / f"{name}.yml").root
        assert not list(root.glob("tmp*"))
    assert seconds < 30, f"interrupted in {seconds:.1f} s"
    # no workspace is still held
    assert main([*argv[:3], "--stage", "validate", *map(str, specs)]) == 0
