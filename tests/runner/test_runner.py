"""The single host-tool runner: replayable log lines, precise errors, process-group kill."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.errors import (
    CommandError,
    InsufficientDiskSpace,
    PermissionDenied,
    ScriptFailed,
    ToolNotFound,
)
from imagecomposer.runner import command_line, require, run

FakeTool = Callable[[str, str], Path]


def test_logs_a_replayable_command_line(fake_tool: FakeTool, caplog: pytest.LogCaptureFixture,
                                        tmp_path: Path) -> None:
    fake_tool("greet", 'echo "hello $WHO"')
    caplog.set_level(logging.DEBUG, "imagecomposer")
    result = run(["greet", "a b"], env={"WHO": "x y"}, cwd=tmp_path, capture=True)
    assert result.stdout == b"hello x y\n"
    assert f"+ (cd {tmp_path} && WHO='x y' greet 'a b')" in caplog.text


def test_command_line_quotes() -> None:
    assert command_line(["mkfs.ext4", "-L", "my root"]) == "mkfs.ext4 -L 'my root'"


def test_failure_keeps_output_tail(fake_tool: FakeTool) -> None:
    fake_tool("broken", "for i in $(seq 1 40); do echo line$i; done; exit 3")
    with pytest.raises(CommandError, match="exit code 3") as info:
        run(["broken"])
    assert info.value.returncode == 3
    assert "line40" in info.value.stderr_tail
    assert "line10" not in info.value.stderr_tail


def test_script_failure_uses_the_seed_phrase(fake_tool: FakeTool) -> None:
    fake_tool("post.sh", "echo oops >&2; exit 1")
    with pytest.raises(ScriptFailed, match="Script returned non-zero exit code 1: post-install"):
        run(["post.sh"], error=ScriptFailed, what="post-install script post.sh")


def test_no_space_and_permission_are_recognised(fake_tool: FakeTool) -> None:
    fake_tool("full", "echo 'write: No space left on device' >&2; exit 1")
    fake_tool("denied", "echo 'open: Permission denied' >&2; exit 1")
    with pytest.raises(InsufficientDiskSpace, match="Insufficient disk space"):
        run(["full"])
    with pytest.raises(PermissionDenied, match="Permission denied: denied"):
        run(["denied"])


def test_missing_tool() -> None:
    with pytest.raises(ToolNotFound, match="Tool not found: no-such-tool-xyz"):
        run(["no-such-tool-xyz"])
    with pytest.raises(ToolNotFound, match="install the Debian package 'pkg'"):
        require("no-such-tool-xyz", "pkg")


def test_timeout_kills_the_whole_process_group(fake_tool: FakeTool, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    fake_tool("spawner", f"sleep 60 & echo $! > {pidfile}; wait")
    t0 = time.monotonic()
    with pytest.raises(CommandError, match="timed out"):
        run(["spawner"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    child = int(pidfile.read_text())
    time.sleep(0.2)
    stat = Path(f"/proc/{child}/stat")
    # Gone, or a zombie waiting for init to reap it: either way no longer running.
    assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z"
