"""The single host-tool runner: replayable log lines, precise errors, process-group kill."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.foundation.errors import (
    CommandError,
    InsufficientDiskSpace,
    PermissionDenied,
    ScriptFailed,
    ToolNotFound,
)
from imagecomposer.foundation.runner import Secret, command_line, require, run

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


# --- secrets ---------------------------------------------------------------------------------

HASH = "$6$rounds=5000$saltsalt$Zm9vYmFyYmF6cXV4c2VjcmV0aGFzaDAxMjM0NTY3ODk"


def _chain(exc: BaseException | None) -> str:
    """Every message and argv along an exception's cause/context chain."""
    text = ""
    while exc is not None:
        text += f"{exc!s} {exc!r} {getattr(exc, 'argv', '')} {getattr(exc, 'cmd', '')}\n"
        exc = exc.__cause__ or exc.__context__
    return text


def test_secret_arguments_are_redacted_in_the_log(fake_tool: FakeTool,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    fake_tool("usermod", 'echo "$@"')
    caplog.set_level(logging.DEBUG, "imagecomposer")
    done = run(["usermod", "--password", Secret(HASH), "alice"], capture=True)
    assert done.stdout == f"--password {HASH} alice\n".encode()  # the tool got the value
    assert "+ usermod --password '<redacted>' alice" in caplog.text
    assert HASH not in caplog.text
    assert HASH not in " ".join(done.argv)


def test_secret_arguments_never_reach_an_error(fake_tool: FakeTool,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The tool echoes its arguments and fails: neither the message, the kept argv, the
    output tail nor the log holds the secret."""
    fake_tool("useradd", 'echo "useradd: bad hash $*" >&2; exit 1')
    caplog.set_level(logging.DEBUG, "imagecomposer")
    with pytest.raises(CommandError) as info:
        run(["useradd", "--password", Secret(HASH), "bob"], what=f"useradd bob {HASH}")
    assert "exit code 1" in str(info.value)
    assert "<redacted>" in info.value.stderr_tail
    assert HASH not in _chain(info.value)
    assert HASH not in caplog.text
    with pytest.raises(ScriptFailed) as script:
        run(["useradd", Secret(HASH)], error=ScriptFailed, what=f"script {HASH}")
    assert HASH not in _chain(script.value)


def test_secret_arguments_never_reach_a_timeout_error(fake_tool: FakeTool) -> None:
    fake_tool("slow", "sleep 30")
    with pytest.raises(CommandError, match="timed out") as info:
        run(["slow", Secret(HASH)], timeout=0.2)
    assert HASH not in _chain(info.value)


def test_secret_values_inside_other_arguments_and_the_environment(
        fake_tool: FakeTool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "imagecomposer")
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", f"echo {HASH!r}; echo $PASS; exit 2"], env={"PASS": f"x{HASH}"},
            secrets=[HASH])
    assert HASH not in caplog.text
    assert HASH not in _chain(info.value)
    assert "+ PASS='x<redacted>' sh -c" in caplog.text


def test_url_credentials_are_redacted_in_command_lines() -> None:
    line = command_line(["curl", "https://user:hunter2@mirror.example/debian/"])
    assert "hunter2" not in line and "user" not in line
    assert "https://<redacted>@mirror.example/debian/" in line


def test_the_debug_log_has_all_of_the_output(fake_tool: FakeTool,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """--log-file is the full debug log (issue 12): every line a tool printed, not only the
    tail kept for error messages."""
    fake_tool("chatty", "for i in $(seq 1 40); do echo line$i; done")
    caplog.set_level(logging.DEBUG, "imagecomposer")
    result = run(["chatty"])
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [m for m in logged if m.startswith("  line")] == [f"  line{i}" for i in range(1, 41)]
    assert result.output_tail.splitlines()[0] == "line16"  # the tail: the last 25


def test_streamed_output_reaches_the_callback_and_the_log_once(
        fake_tool: FakeTool, caplog: pytest.LogCaptureFixture) -> None:
    """``on_output`` sees each line as it comes (a line redrawn with \\r too); the debug log
    has each line once; an exception of the callback kills the command and is raised."""
    fake_tool("dpkgish", "for i in $(seq 1 40); do echo Unpacking p$i; done; "
                         "printf 'progress 1\\rprogress 2\\r'; echo done")
    caplog.set_level(logging.DEBUG, "imagecomposer")
    seen: list[str] = []
    result = run(["dpkgish"], on_output=seen.append)
    assert seen == [f"Unpacking p{i}" for i in range(1, 41)] + [
        "progress 1", "progress 2", "done"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("  ")]
    assert logged == [f"  {line}" for line in seen]
    assert result.output_tail.splitlines()[-1] == "done"

    fake_tool("endless", "while true; do echo Unpacking x; sleep 0.05; done")

    def stop(line: str) -> None:
        raise KeyboardInterrupt

    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(["endless"], on_output=stop, timeout=30)
    assert time.monotonic() - began < 10
