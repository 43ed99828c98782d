"""The first fatal download error cancels the others (issue 18, item 11).

A stalling mirror must fail a fetch after about one package's failure time, not after as
many stall timeouts as there are rounds of packages: no transfer starts after the first
failure, and the running ones stop at once instead of waiting for their own stall timeout.
The stall timeout and retries are set small so each test runs in a few seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from imagecomposer.cache import PackageCache
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import DownloadError
from imagecomposer.foundation.http import Http
from imagecomposer.lock import Lock
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import RepoServer
from tests.packages.conftest import make_spec


def lock_of(config: Config) -> Lock:
    return Resolver(config).resolve(make_spec(("openssh-server",))).lock


def paths_of(lock: Lock, server: RepoServer) -> list[str]:
    return [p.url[len(server.url):] for p in lock.packages]


def requested(server: RepoServer, paths: list[str]) -> set[str]:
    return {path for (path, _), n in server.requests.items() if path in paths and n}


def no_partial_files(root: Path) -> None:
    assert [p for p in root.rglob("*") if ".part-" in p.name] == []


def test_stalling_mirror_fails_after_one_round(config: Config, server: RepoServer) -> None:
    lock = lock_of(config)
    paths = paths_of(lock, server)
    assert len(paths) >= 6
    server.stall.update(paths)  # every package: headers, then nothing
    server.stall_bytes = 0
    stall, retries = 1.0, 1
    one_failure = (retries + 1) * stall  # one package: a stall per attempt
    cache = PackageCache(config, http=Http(config.credentials, retries=retries, backoff=0.01,
                                           stall_timeout=stall))
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"Download failed: .*stalled.*after 2 attempts"):
        cache.fetch(lock, parallel=2)
    elapsed = time.monotonic() - started
    # only the two transfers running at the first failure were ever started
    assert len(requested(server, paths)) == 2, sorted(requested(server, paths))
    # a second round would have taken another one_failure (2 s)
    assert elapsed < one_failure + 0.9 * one_failure / 2, f"took {elapsed:.2f} s"
    no_partial_files(cache.root)


def test_running_transfers_stop_at_the_first_error(config: Config,
                                                   server: RepoServer) -> None:
    lock = lock_of(config)
    paths = paths_of(lock, server)
    missing = paths[0]  # taken first: a 404 at once, fatal, never retried
    server.missing.add(missing)
    server.stall.update(paths[1:])  # the others send headers, then nothing
    server.stall_bytes = 0
    stall = 5.0
    cache = PackageCache(config, http=Http(config.credentials, retries=0, stall_timeout=stall))
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"404 Not Found"):
        cache.fetch(lock, parallel=4)  # (4: within the fixture server's listen backlog)
    elapsed = time.monotonic() - started
    assert elapsed < stall / 2, f"the stalled transfers ran on for {elapsed:.2f} s"
    no_partial_files(cache.root)
    assert cache.list() == []
