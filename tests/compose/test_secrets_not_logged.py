"""Issue 18 item 7: a password hash never reaches a log line or an error message.

The CLI's log set-up is used as a build uses it (console at debug level, plus --log-file);
every line written, and every exception raised, is searched for the hash.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from imagecomposer.cli import logsetup
from imagecomposer.compose.configure import users
from imagecomposer.foundation.errors import CommandError
from imagecomposer.spec.model import User

HASH = "$6$leaktest0001$Q2FuYXJ5SGFzaEZvclRoZUxlYWtUZXN0T25seTAxMjM0NTY3ODlhYmNkZWY"
FakeTool = Callable[[str, str], Path]


@attrs.frozen
class Logs:
    console: io.StringIO
    file: Path


@pytest.fixture
def cli_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    """Logging as ``imagecomposer --log-level debug --log-file F`` sets it up, the console
    being a buffer; restored afterwards."""
    logger = logging.getLogger("imagecomposer")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logs = Logs(io.StringIO(), tmp_path / "build.log")
    monkeypatch.setattr(sys, "stderr", logs.console)
    logsetup.configure("debug", logs.file)
    yield logs
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        logger.addHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _chain(exc: BaseException | None) -> str:
    text = ""
    while exc is not None:
        text += f"{exc!s} {exc!r} {getattr(exc, 'argv', '')} " \
                f"{getattr(exc, 'stderr_tail', '')}\n"
        exc = exc.__cause__ or exc.__context__
    return text


@pytest.mark.root
def test_configuring_users_logs_no_password_hash(fake_tree: Path, cli_logs: Logs) -> None:
    users.root_password(fake_tree, HASH)
    users.add_user(fake_tree, User(name="alice", password_hash=HASH))  # useradd
    users.add_user(fake_tree, User(name="alice", password_hash=HASH, shell="/bin/sh"))  # usermod
    shadow = (fake_tree / "etc/shadow").read_text()
    assert f"root:{HASH}:" in shadow and f"alice:{HASH}:" in shadow  # the hash was applied
    console, logged = cli_logs.console.getvalue(), cli_logs.file.read_text()
    # the hash reaches chpasswd on its standard input: never on a command line (where other
    # users of the build host could read it in /proc), so never in a logged one either
    assert "chpasswd --root" in console and "--encrypted" in logged
    assert "--password '<redacted>'" not in console  # not even redacted
    assert HASH not in console and HASH not in logged


def test_a_failing_useradd_logs_and_raises_no_password_hash(
        fake_tree: Path, fake_tool: FakeTool, cli_logs: Logs) -> None:
    """The tool prints its arguments (as some do in usage errors) and fails."""
    fake_tool("useradd", 'echo "useradd: invalid option in: $*" >&2; exit 2')
    fake_tool("usermod", 'echo "usermod: invalid option in: $*" >&2; exit 2')
    # a chpasswd that echoes what it read on stdin in its error (the output tail is logged)
    fake_tool("chpasswd", 'echo "chpasswd: bad line: $(cat)" >&2; exit 1')
    errors = []
    for call in (lambda: users.add_user(fake_tree, User(name="bob", password_hash=HASH)),
                 lambda: users.root_password(fake_tree, HASH)):
        with pytest.raises(CommandError) as info:
            call()
        errors.append(_chain(info.value))
        logging.getLogger("imagecomposer").error("%s", info.value)  # as the CLI reports it
    assert "<redacted>" in errors[1]  # chpasswd's own output, redacted
    console = cli_logs.console.getvalue()
    assert "invalid option in:" in console
    for text in (*errors, console, cli_logs.file.read_text()):
        assert HASH not in text


def test_url_credentials_never_reach_a_log_line(cli_logs: Logs) -> None:
    """Whatever logs a URL with user-info (an error naming a mirror from the host's apt
    sources, say), the CLI's console and log file show it without the credentials."""
    url = "https://builder:hunter2@mirror.example/debian/dists/bookworm/InRelease"
    log = logging.getLogger("imagecomposer.pipeline.packages")
    log.warning("retrying %s after error: %s", url, "HTTP 503")
    log.error("Download failed: %s", url)
    for text in (cli_logs.console.getvalue(), cli_logs.file.read_text()):
        assert "hunter2" not in text and "builder" not in text
        assert "retrying https://<redacted>@mirror.example/debian/dists/bookworm/InRelease " \
               "after error: HTTP 503" in text
