"""Real components on 127.0.0.1 for the cluster tests: a redis-server the session starts,
a signed deb archive served over HTTP, and worker processes (``tests.cluster.workerproc``)
with separate work and cache directories standing in for separate hosts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from imagecomposer.foundation.children import die_with_parent
from tests.fixtures.debrepo import Deb, DebArchive, GpgKey, RepoServer, base_system

ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_TIMEOUT = 8.0  # seconds: a killed worker's build is redelivered this fast (the
# lease renews every 2 s: a margin for a loaded CI machine)
EXTRAS = [Deb("tool-a", "1.0", arch="amd64", depends="libc6"),
          Deb("tool-b", "2.0", arch="amd64", depends="bash"),
          Deb("tool-c", "3.0", arch="amd64")]


# Out of the test process's group (a test's Ctrl-C to its group must not stop them), and
# killed with it if the test process dies (no redis-server or worker left behind).
DETACHED: dict[str, Any] = {"start_new_session": True, "preexec_fn": die_with_parent()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, f"no {what}"
            time.sleep(0.05)


@attrs.define
class RedisServer:
    """redis-server on 127.0.0.1 (``appendonly``: its queues survive a restart)."""

    data: Path
    port: int = attrs.field(factory=free_port)
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed (scripts/setup-host.sh installs it)")
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly \
            else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data),
             "--save", "", *persist],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **DETACHED)
        wait_for_port(self.port, self.process, "redis-server")

    def kill(self) -> None:
        """SIGKILL: the broker's host fails (nothing is flushed on the way out)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@attrs.frozen
class Archive:
    url: str
    keyring: Path
    server: RepoServer


@contextlib.contextmanager
def served_archive(root: Path) -> Iterator[Archive]:
    """The test archive (base system and :data:`EXTRAS`), signed, served on 127.0.0.1."""
    key = GpgKey.create(root / "gpg")
    debian = DebArchive(root / "www" / "debian", key)
    debian.add("bookworm", *base_system(), *EXTRAS)
    debian.add("bookworm-updates")
    debian.add("bookworm-security")
    debian.publish()
    with RepoServer(root / "www") as server:
        yield Archive(server.url + "/debian", key.keyring, server)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with served_archive(tmp_path_factory.mktemp("archive")) as served:
        yield served


def config_file(path: Path, host: Path, archive: Archive, shared: Path | None) -> Path:
    store = f"storage: {{shared_store: '{shared}'}}\n" if shared is not None else ""
    path.write_text(
        f"core: {{cache_dir: '{host}/cache', work_dir: '{host}/work'}}\n{store}"
        f"providers:\n  debian: {{kind: deb, mirror: '{archive.url}', "
        f"security_mirror: '{archive.url}', keyring: '{archive.keyring}'}}\n")
    return path


@attrs.define
class Worker:
    name: str
    host: Path  # its "host": work and cache directories
    config: Path
    url: str
    secrets: Path | None = None
    env: dict[str, str] = attrs.field(factory=dict)  # for the stand-in stages
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.host / f"{self.name}.log").open("ab")
        argv = [sys.executable, "-m", "tests.cluster.workerproc", self.url, str(self.config),
                self.name, str(VISIBILITY_TIMEOUT)]
        if self.secrets is not None:
            argv.append(str(self.secrets))
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log,
                                        env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
                                        **DETACHED)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: the host is gone
        self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def work(self) -> Path:
        return self.host / "work"


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, redis_url: str, archive: Archive
            ) -> Iterator[list[Worker]]:
    """Three workers sharing one store directory, each with its own work and cache."""
    root = tmp_path_factory.mktemp("cluster")
    shared = root / "shared"
    shared.mkdir()
    started = []
    try:
        for n in range(3):
            host = root / f"host{n}"
            host.mkdir()
            worker = Worker(f"w{n}", host, config_file(host / "config.yml", host, archive,
                                                       shared), redis_url)
            worker.start()
            started.append(worker)
        yield started
    finally:
        for worker in started:
            worker.stop()
