"""One clear error, never a traceback (issue 12, "Errors"), through a real process: an
unwritable output or work directory is found before the first stage; an OSError anywhere is
one line naming the path; a closed pipe ends the command quietly; an invalid option value
prints its own command's usage.

Unwritable: as root (who writes anywhere) the directory is made immutable (``chattr +i``:
``Operation not permitted``, the issue's case); otherwise its write bit is removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import EXAMPLES, Hermetic, Run, environment

MINIMAL = EXAMPLES / "debian-12-minimal.yml"


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be created in."""
    path = tmp_path / "locked"
    path.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"chattr +i does not work here: {made.stderr!r}")
        try:
            yield path
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)


@pytest.mark.parametrize("which", ["output", "work"])
def test_an_unwritable_directory_is_reported_before_the_first_stage(
        cli: Run, tmp_path: Path, which: str, locked: Path) -> None:
    env = environment(tmp_path)
    args = ["build", str(MINIMAL)]
    if which == "output":
        target = locked / "out"
        args += ["-o", str(target)]
    else:
        target = locked / "work"
        env["IMAGECOMPOSER_WORK_DIR"] = str(target)
    done = cli(*args, check=1, env=env)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ERROR: Permission denied: cannot write the ") and \
        str(target) in lines[0], lines
    assert "started" not in done.stderr  # before the first stage
    assert not target.exists()


def test_an_oserror_is_one_line_naming_the_path(cli: Run, locked: Path) -> None:
    target = locked / "imagecomposer.yml"
    done = cli("config", "init", target, check=1)
    assert done.stderr.startswith(f"ERROR: config: Permission denied: {target}"), done.stderr
    assert len(done.stderr.splitlines()) == 1


def closed_stdout(args: list[str | Path], env: dict[str, str], cwd: Path
                  ) -> tuple[int, str]:
    """Run the CLI with a stdout nobody reads (``| head`` that already ended)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "imagecomposer", *map(str, args)],
                              stdout=write, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=cwd, check=False)
    finally:
        os.close(write)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("args", [["schema"], ["cache", "list"], ["config", "show"]])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    code, err = closed_stdout(args, environment(tmp_path), tmp_path)
    assert (code, err) == (128 + signal.SIGPIPE, "")


def test_resolve_writes_the_lock_before_printing(hermetic: Hermetic, tmp_path: Path) -> None:
    lock = tmp_path / "web.lock.json"
    code, err = closed_stdout(["--config", hermetic.config, "resolve", "--lock", lock,
                               hermetic.spec()], environment(tmp_path), tmp_path)
    assert code == 128 + signal.SIGPIPE and "Traceback" not in err and "Error" not in err
    assert lock.is_file() and '"packages"' in lock.read_text()


def test_an_invalid_timeout_prints_the_usage_of_build(cli: Run) -> None:
    done = cli("build", "--timeout", "soon", MINIMAL, check=2)
    assert done.stderr.startswith("usage: imagecomposer build ")
    assert done.stderr.rstrip().endswith("argument --timeout: invalid duration 'soon' "
                                         "(use e.g. 90s, 30m, 1h30m)")


def test_a_usage_error_of_a_command_prints_that_commands_usage(cli: Run) -> None:
    done = cli("validate", "--set", "novalue", MINIMAL, check=2)
    assert done.stderr.startswith("usage: imagecomposer validate ")
    assert "ERROR: --set takes NAME=VALUE, got 'novalue'" in done.stderr
