"""The single choke point through which imagecomposer runs host tools.

Every call logs, at DEBUG level, a command line that can be pasted into a shell to replay it
(environment overrides and working directory included) and the tool's output, every line of
it (what a person reads at the default level are the build's events, not command lines: see
:mod:`imagecomposer.foundation.console`), keeps the tail of the output for error messages,
and turns a failure into a precise :mod:`imagecomposer.foundation.errors` class.
``on_output`` streams the output line by line as it comes (a step's progress, e.g. dpkg's
"Unpacking" lines; those lines are logged as they come, so their timestamps show where the
time went). Children run in their own
process
group so that an interrupt or timeout kills the whole tree they started (a chroot's dpkg and
its maintainer scripts included), and every child dies with the build even when the build is
killed with SIGKILL (PR_SET_PDEATHSIG and a reaper, see :mod:`imagecomposer.foundation.children`).

Arguments wrapped in :class:`~imagecomposer.foundation.redact.Secret` (or values passed as
``secrets``)
never appear in a log line, an error message, the argv an exception keeps, or the output tail:
they are shown as ``'<redacted>'``.

Tests fake tools by putting small executables on ``PATH``; nothing here special-cases them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import typing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs

from imagecomposer.foundation import children
from imagecomposer.foundation.errors import (
    CommandError,
    InsufficientDiskSpace,
    PermissionDenied,
    ToolNotFound,
)
from imagecomposer.foundation.redact import Secret, redact, secrets_in, shown_argv

__all__ = ["Completed", "Secret", "command_line", "require", "run", "spawn", "tail", "which"]

log = logging.getLogger("imagecomposer.run")

TAIL_LINES = 25


@attrs.frozen
class Completed:
    """What a finished command left behind (``argv`` as shown: secrets redacted)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    output_tail: str


def command_line(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | str | None = None,
                 env: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> str:
    """A shell line that replays ``argv`` with the given overrides.

    :class:`Secret` arguments and the ``secrets`` values (also inside other arguments and
    environment values) are shown as ``'<redacted>'``; so are credentials in URLs.
    """
    values = secrets_in(argv, secrets)
    parts = [shlex.join(shown_argv(argv, values))]
    if env:
        parts.insert(0, " ".join(f"{k}={shlex.quote(redact(v, values))}"
                                 for k, v in sorted(env.items())))
    line = " ".join(parts)
    if cwd is not None:
        line = f"(cd {shlex.quote(str(cwd))} && {line})"
    return line


def tail(text: bytes | str, lines: int = TAIL_LINES) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    capture: bool = False,
    check: bool = True,
    timeout: float | None = None,
    error: type[CommandError] = CommandError,
    what: str | None = None,
    secrets: Iterable[str] = (),
    on_output: Callable[[str], None] | None = None,
) -> Completed:
    """Run ``argv``; raise ``error`` (or a more precise class) if it fails.

    ``env`` holds overrides on top of the current environment. With ``capture`` the standard
    output is returned; otherwise it is merged into the logged output. ``what`` names the
    action in error messages ("post-install script ./post.sh"). ``secrets``: values to
    redact wherever they appear (for a secret inside a larger argument, such as a script);
    :class:`Secret` arguments are redacted without being listed. ``on_output`` (not with
    ``capture``) receives each line of the output as it comes (lines end at ``\n`` or
    ``\r``, so progress meters that redraw one line count too), secrets redacted; an
    exception it raises kills the command and is raised here.

    The child dies with the calling thread (PR_SET_PDEATHSIG); this function waits for it in
    that thread, so a call from a worker thread is safe.
    """
    args = [str(a) for a in argv]
    values = secrets_in(argv, secrets)
    shown = shown_argv(argv, values)
    if on_output is not None and capture:
        raise ValueError("on_output streams the merged output: not with capture=True")
    log.debug("+ %s", command_line(argv, cwd=cwd, env=env, secrets=values))
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=children.die_with_parent(),
        )
    except FileNotFoundError as exc:
        raise ToolNotFound(f"Tool not found: {shown[0]} (is its package installed?)",
                           shown) from exc
    except PermissionError as exc:
        raise PermissionDenied(f"Permission denied: cannot execute {shown[0]}", shown) from exc
    children.register(proc.pid)
    timed_out = False
    try:
        if on_output is None:
            out, err = proc.communicate(input=input, timeout=timeout)
        else:
            out, err = _stream(proc, input, timeout, on_output, values), None
    except subprocess.TimeoutExpired:
        _kill(proc)
        timed_out = True  # raised below, not in here: TimeoutExpired holds the real argv
    except BaseException:
        _kill(proc)
        raise
    finally:
        children.unregister(proc.pid)
    if timed_out:
        raise error(f"Command timed out after {timeout} s: {shlex.join(shown)}", shown)
    output = err if capture else out
    output_tail = redact(tail(output or b""), values)
    if on_output is None and output and log.isEnabledFor(logging.DEBUG):
        # all of it (streamed output was logged line by line as it came)
        for line in redact(output.decode("utf-8", "replace"), values).splitlines():
            if line.strip():
                log.debug("  %s", line)
    if check and proc.returncode != 0:
        subject = redact(what, values) if what else None
        raise _failure(error, shown, proc.returncode, output_tail, subject)
    return Completed(tuple(shown), proc.returncode, out if capture else b"", output_tail)


LINE_END = re.compile(rb"[\r\n]")


def _stream(proc: subprocess.Popen[bytes], input: bytes | None, timeout: float | None,
            on_output: Callable[[str], None], secrets: Iterable[str]) -> bytes:
    """Read ``proc``'s output as it comes, handing each line to ``on_output``; the last
    :data:`TAIL_LINES` lines are returned (as the output whose tail is kept).

    An exception ``on_output`` raises (a caller's event callback, a KeyboardInterrupt it
    stands for) kills the command and is raised here, in the calling thread."""
    kept: deque[bytes] = deque(maxlen=TAIL_LINES)
    failed: list[BaseException] = []
    if proc.stdout is None:
        raise ValueError("the output is not a pipe")
    stream = typing.cast("io.BufferedReader", proc.stdout)

    def deliver(line: bytes) -> None:
        if not line.strip():
            return
        kept.append(line)
        text = redact(line.decode("utf-8", "replace"), secrets)
        log.debug("  %s", text)
        if failed:
            return
        try:
            on_output(text)
        except BaseException as exc:
            failed.append(exc)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def read() -> None:
        pending = b""
        for chunk in iter(lambda: stream.read1(65536), b""):
            pending += chunk
            *lines, pending = LINE_END.split(pending)
            for line in lines:
                deliver(line)
        if pending:
            deliver(pending)

    reader = threading.Thread(target=read, name="runner-output", daemon=True)
    reader.start()
    if proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(input or b"")
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    proc.wait(timeout=timeout)
    reader.join()
    if failed:
        raise failed[0]
    return b"\n".join(kept) + b"\n" if kept else b""


def _failure(error: type[CommandError], args: list[str], code: int, output_tail: str,
             what: str | None) -> Exception:
    subject = what or args[0]
    lowered = output_tail.lower()
    if "no space left on device" in lowered:
        return InsufficientDiskSpace(
            f"Insufficient disk space: {subject} failed with 'No space left on device'\n"
            + output_tail)
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return PermissionDenied(f"Permission denied: {subject} (exit code {code})", args, code,
                                output_tail)
    if error.__name__ == "ScriptFailed":
        message = f"Script returned non-zero exit code {code}: {subject}"
    else:
        message = f"Command failed with exit code {code}: {shlex.join(args)}"
    return error(message, args, code, output_tail)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def which(tool: str) -> str | None:
    """Find ``tool`` on PATH, also looking in the sbin directories a non-root PATH lacks."""
    import shutil

    found = shutil.which(tool)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(directory) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require(tool: str, package: str) -> str:
    """The path of ``tool``, or :class:`ToolNotFound` naming the Debian package to install."""
    found = which(tool)
    if found is None:
        raise ToolNotFound(f"Tool not found: {tool} (install the Debian package '{package}')",
                           [tool])
    return found


@contextlib.contextmanager
def spawn(argv: Sequence[str | os.PathLike[str]], *, stdout: int | IO[bytes] | None = None,
          stderr: int | IO[bytes] | None = None, env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None, secrets: Iterable[str] = ()
          ) -> Iterator[subprocess.Popen[bytes]]:
    """Start a long-running tool (QEMU) that the caller watches while it runs.

    The same choke point as :func:`run` (logged replayable command line with secrets
    redacted, precise :class:`ToolNotFound`), but the caller reads its output as it comes.
    The child runs in its own process group and dies with the thread that started it (and
    with the build, SIGKILL included); leaving the ``with`` block, in that same thread,
    kills the whole group, whatever happened inside it.
    """
    args = [str(a) for a in argv]
    values = secrets_in(argv, secrets)
    shown = shown_argv(argv, values)
    log.debug("+ %s", command_line(argv, cwd=cwd, env=env, secrets=values))
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, start_new_session=True,
                                preexec_fn=children.die_with_parent())
    except FileNotFoundError as exc:
        raise ToolNotFound(f"Tool not found: {shown[0]} (is its package installed?)",
                           shown) from exc
    children.register(proc.pid)
    try:
        yield proc
    finally:
        try:
            _kill(proc)
        finally:
            children.unregister(proc.pid)
