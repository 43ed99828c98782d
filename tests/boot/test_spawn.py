"""runner.spawn: the long-running twin of runner.run kills the whole process group."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ToolNotFound


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (already killed, not yet reaped by its parent) counts as dead
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


def test_spawn_kills_children_and_grandchildren(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    with runner.spawn(["sh", "-c", script], stdout=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 5
        while not (pids.exists() and len(pids.read_text().split()) == 2):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert proc.poll() is None
    grandchild, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild) and not _alive(child)


def test_spawn_also_kills_on_error() -> None:
    with pytest.raises(RuntimeError), runner.spawn(["sleep", "300"]) as proc:
        raise RuntimeError("boom")
    assert proc.returncode is not None


def test_spawn_missing_tool() -> None:
    with pytest.raises(ToolNotFound, match="Tool not found: no-such-tool-xyz"), \
            runner.spawn(["no-such-tool-xyz"]):
        pass
