"""The progress display as a user sees it: on a terminal (a pty), the long steps (here the
conversion and hashing of ``imagecomposer export``) are one line redrawn in place; through a
pipe there is no redrawing at all (issue 12)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import environment

MIB = 1 << 20


@pytest.fixture
def dense_raw(tmp_path: Path) -> Path:
    """160 MiB of data: the qcow2 is as big, so both steps report along the way."""
    raw = tmp_path / "big.raw"
    block = bytes(range(1, 256)) * (MIB // 255 + 1)
    with raw.open("wb") as f:
        for _ in range(160):
            f.write(block[:MIB])
    return raw


def run_in_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal (stdin, stdout, stderr)
        os.execve(sys.executable, [sys.executable, "-m", "imagecomposer", *argv], env)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_long_steps_show_progress_on_a_terminal(dense_raw: Path, tmp_path: Path) -> None:
    env = environment(tmp_path)
    env["COLUMNS"] = "200"
    code, text = run_in_pty(["export", str(dense_raw), "--format", "qcow2", "-o",
                             str(tmp_path / "tty")], env)
    assert code == 0, text
    assert "Traceback" not in text
    redraws = text.split("\r\x1b[K")
    for step in ("converting to qcow2 [", "hashing big.qcow2 ["):
        # a bar with the step's total (how far it got before a redraw depends on the load)
        assert any(r.startswith(step) and re.search(r"B/160\.\d MiB", r) for r in redraws), text
    assert f"{tmp_path / 'tty' / 'big.qcow2'}  " in text  # the result line, after it

    piped = subprocess.run([sys.executable, "-m", "imagecomposer", "export", str(dense_raw),
                            "--format", "qcow2", "-o", str(tmp_path / "pipe")],
                           capture_output=True, text=True, env=env, check=True)
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert piped.stderr == ""  # a step shorter than the plain-line interval says nothing
