"""Every child the runner starts dies with the build, also when the build gets SIGKILL.

A helper process stands in for the build: it calls ``runner.run`` (or ``runner.spawn``) on a
shell that forks grandchildren and waits for them, the way dpkg runs maintainer scripts.
The test SIGKILLs the helper and then looks in /proc for anything it left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagecomposer.foundation import children, runner

HELPERS = {
    "run": "import sys\nfrom imagecomposer.foundation import runner\nrunner.run(sys.argv[1:])\n",
    "spawn": ("import sys\nfrom imagecomposer.foundation import runner\n"
              "with runner.spawn(sys.argv[1:]) as proc:\n    proc.wait()\n"),
}


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for its new parent to reap it."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and (fields := _stat(int(proc.name))):
            kids.setdefault(int(fields[1]), []).append(int(proc.name))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Helpers:
    """Starts helper "builds"; at teardown kills whatever they started, pass or fail."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def start(self, kind: str, script: str, ready: Path) -> tuple[subprocess.Popen[bytes],
                                                                  list[int]]:
        helper = subprocess.Popen([sys.executable, "-c", HELPERS[kind], "sh", "-c", script])
        self.pids.append(helper.pid)
        started = wait_until(ready.exists, 10)
        # the shell forks each "sleep 300 &" before it execs sleep: until then the fork shows
        # the shell's command line (under load it can still be one when the ready file is
        # there), so wait until every sleep of the script is one
        sleeps = script.count("sleep 300")
        wait_until(lambda: sum(cmdline(p).startswith("sleep") for p in descendants(helper.pid))
                   >= sleeps, 10)
        kids = descendants(helper.pid)
        self.pids += kids
        assert started, "the helper's child never started"
        return helper, kids

    def cleanup(self) -> None:
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def helpers() -> Iterator[Helpers]:
    made = Helpers()
    yield made
    made.cleanup()


def kill_and_check(helper: subprocess.Popen[bytes], watched: list[int]) -> None:
    """SIGKILL the helper; within 1 s nothing of ``watched`` may still run."""
    helper.send_signal(signal.SIGKILL)
    helper.wait()
    gone = wait_until(lambda: not any(alive(p) for p in watched), 1.0)
    survivors = [f"{p}: {cmdline(p)}" for p in watched if alive(p)]
    assert gone, f"still running 1 s after the build was killed: {survivors}"


@pytest.mark.parametrize("kind", ["run", "spawn"])
def test_sigkill_of_the_build_kills_the_child_and_its_children(
        tmp_path: Path, kind: str, helpers: Helpers) -> None:
    ready = tmp_path / "ready"
    # sh is the tool; the two sleeps stand for the maintainer scripts dpkg would run.
    helper, started = helpers.start(kind, f"sleep 300 & sleep 300 & touch {ready}; wait",
                                    ready)  # started: the tool, its sleeps, the reaper
    tool = [p for p in started if "touch" in cmdline(p)]
    assert len(tool) == 1
    assert len([p for p in started if int(_stat(p)[2]) == tool[0]]) == 3  # one group
    assert len(started) in (3, 4)  # with the reaper, if one runs
    kill_and_check(helper, started)


@pytest.mark.root
def test_sigkill_reaches_a_pid_namespace_and_what_left_the_group(
        tmp_path: Path, helpers: Helpers) -> None:
    """The chroot path's chain (``unshare --pid --fork --kill-child``): a process inside it
    that left the process group (setsid) still dies with the namespace."""
    ready = tmp_path / "ready"
    inner = f"setsid sleep 300 & sleep 300 & touch {ready}; wait"
    helper, started = helpers.start(
        "run", f"exec unshare --pid --fork --kill-child --mount-proc sh -c '{inner}'", ready)
    sleeps = [p for p in started if cmdline(p).startswith("sleep")]
    assert len(sleeps) == 2
    assert len({_stat(p)[2] for p in sleeps}) == 2  # one of them in a group of its own
    kill_and_check(helper, started)


def test_run_in_a_short_lived_thread_completes() -> None:
    """PDEATHSIG fires when the forking *thread* ends: run() waits in that thread, so a
    command run from a worker thread is not killed early."""
    results: list[bytes] = []
    thread = threading.Thread(target=lambda: results.append(
        runner.run(["sh", "-c", "sleep 0.3; echo done"], capture=True).stdout))
    thread.start()
    thread.join()
    assert results == [b"done\n"]


def test_a_killed_reaper_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    runner.run(["true"])
    first = children.reaper_pid()
    assert first is not None and alive(first)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: not alive(first), 2)
    runner.run(["true"])
    second = children.reaper_pid()
    assert second is not None and second != first and alive(second)
    assert "reaper" in caplog.text
