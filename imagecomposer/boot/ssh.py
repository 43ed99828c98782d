"""Run a command inside a booted image over SSH (``imagecomposer boot --ssh``).

QEMU's user networking forwards a free TCP port on 127.0.0.1 to the guest's port 22
(``hostfwd``). Once the login prompt is on the console, the host's ``ssh`` client connects
as ``user`` with ``key`` (or ssh's default identities), never asking anything
(``BatchMode``), trusting the throwaway host key of the image (not recorded anywhere), and
runs the command. Until sshd answers (it may start after the getty), a refused or reset
connection (ssh's exit code 255) is retried every :data:`RETRY` seconds, for up to
``wait`` seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import BootError, BootToolError

RETRY = 2.0
SSH_FAILED = 255  # ssh's own exit code for a connection or authentication failure


@attrs.frozen
class SshCommand:
    """What to run in the booted image, as whom."""

    command: str
    user: str = "root"
    key: Path | None = None  # private key; None: ssh's default identities
    # seconds to wait for sshd after the login prompt: a first boot under TCG generates its
    # host keys then (117 s measured on the loaded 2-core CI machine)
    wait: float = 300.0


@attrs.frozen
class SshResult:
    returncode: int  # the command's exit code in the image
    output: str  # its standard output
    errors: str  # its standard error (ssh's own warnings removed)
    seconds: float  # from the login prompt to the command's end


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (QEMU binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssh_argv(ssh: SshCommand, port: int) -> list[str]:
    argv = [runner.require("ssh", "openssh-client"), "-p", str(port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
    if ssh.key is not None:
        argv += ["-i", str(ssh.key), "-o", "IdentitiesOnly=yes"]
    return [*argv, f"{ssh.user}@127.0.0.1", "--", ssh.command]


def run_ssh(ssh: SshCommand, port: int, *, alive: Callable[[], bool] | None = None
            ) -> SshResult:
    """Run ``ssh.command`` through the forwarded ``port``, retrying while sshd is not up."""
    if ssh.key is not None and not ssh.key.is_file():
        raise BootError(f"--ssh-key {ssh.key} does not exist")
    began = time.monotonic()
    argv = ssh_argv(ssh, port)
    while True:
        done = runner.run(argv, capture=True, check=False, error=BootToolError,
                          what=f"ssh {ssh.user}@image")
        if done.returncode != SSH_FAILED:
            return SshResult(done.returncode, done.stdout.decode("utf-8", "replace"),
                             done.output_tail, time.monotonic() - began)
        if alive is not None and not alive():
            raise BootError("QEMU exited before the SSH command ran")
        if time.monotonic() - began > ssh.wait:
            raise BootError(f"SSH into the image as {ssh.user} did not succeed within "
                            f"{ssh.wait:.0f} s (is openssh-server installed and enabled, and "
                            f"is the key authorized?):\n"
                            + "\n".join("  | " + line for line in done.output_tail.splitlines()))
        time.sleep(RETRY)
