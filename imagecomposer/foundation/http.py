"""HTTP(S) and file:// access for repository metadata and packages, in one place.

One urllib3 pool per process serves metadata and package downloads. Every body is streamed
to a temporary name next to its destination, hashed *while* it streams, checked, and only
then renamed into place: an interrupted, truncated or tampered transfer never appears under
its final name. Transient failures (connection errors, 5xx, a stalled server, a short body)
are retried with exponential backoff; a 404 or an auth failure is not. A :class:`Cancel`
shared by several downloads stops them all: none starts or retries after it is set, and the
running ones stop at once (their sockets are shut down, so even a stalled read returns).

Credentials come from the global configuration (``Config.credentials``, passed in: a URL prefix, a
user
name and the name of the environment variable or file holding the password). They are never
read from a spec, and they are never written into logs or locks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import urllib3

from imagecomposer.foundation.errors import (
    ChecksumMismatch,
    ConfigError,
    DownloadCancelled,
    DownloadError,
)

log = logging.getLogger("imagecomposer.http")

CHUNK = 1 << 16


@attrs.frozen
class Credentials:
    """HTTP basic credentials for repositories whose URL starts with ``url_prefix``.

    The password is never stored in the config itself: it is read from the environment
    variable ``password_env`` (or the file ``password_file``) when a request needs it.
    """

    url_prefix: str
    username: str
    password_env: str | None = None
    password_file: Path | None = None


class NotFound(DownloadError):
    """The server answered 404 (or the local file does not exist)."""


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _password(cred: Credentials) -> str:
    if cred.password_env:
        value = os.environ.get(cred.password_env)
        if value is None:
            raise ConfigError(f"credentials for {cred.url_prefix}: environment variable "
                              f"{cred.password_env} is not set")
        return value
    if cred.password_file:
        try:
            return cred.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"credentials for {cred.url_prefix}: cannot read "
                              f"{cred.password_file}: {exc.strerror}") from exc
    return ""


class Cancel:
    """A cancellation shared by the downloads of one fetch (thread-safe, set once).

    :meth:`set` wakes downloads waiting for a retry and shuts down the socket of every
    response being read, so a transfer blocked on a stalled server returns at once instead
    of after the stall timeout.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._responses: set[Any] = set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            responses = list(self._responses)
        for resp in responses:
            _shutdown(resp)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when cancelled."""
        return self._event.wait(seconds)

    def check(self, url: str) -> None:
        if self._event.is_set():
            raise DownloadCancelled(f"Download cancelled: {_redact(url)}")

    @contextlib.contextmanager
    def watching(self, resp: Any) -> Iterator[None]:
        """Shut ``resp`` down if the cancellation comes while it is being read."""
        with self._lock:
            self._responses.add(resp)
            cancelled = self._event.is_set()
        if cancelled:
            _shutdown(resp)
        try:
            yield
        finally:
            with self._lock:
                self._responses.discard(resp)


def _shutdown(resp: Any) -> None:
    """Unblock a read of ``resp`` in another thread (urllib3 shuts the socket down)."""
    with contextlib.suppress(ValueError, RuntimeError, OSError):
        resp.shutdown()


class Http:
    """A shared connection pool with retries, a stall timeout and credentials by URL prefix."""

    def __init__(self, credentials: Sequence[Credentials] = (), *, retries: int = 3,
                 backoff: float = 0.5, stall_timeout: float = 30.0,
                 connect_timeout: float = 15.0, maxsize: int = 8) -> None:
        self.credentials = tuple(credentials)
        self.retries = retries
        self.backoff = backoff
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=stall_timeout)
        self.pool = urllib3.PoolManager(num_pools=16, maxsize=maxsize, block=False,
                                        retries=False, timeout=self.timeout)

    def headers(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": "imagecomposer", "Accept-Encoding": "identity"}
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:  # user:password@ in a configured mirror URL
            token = (f"{urllib.parse.unquote(parts.username)}:"
                     f"{urllib.parse.unquote(parts.password or '')}").encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        for cred in self.credentials:
            if url.startswith(cred.url_prefix):
                token = f"{cred.username}:{_password(cred)}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
                break
        headers.update(extra or {})
        return headers

    def _attempts(self, url: str) -> range:
        return range(self.retries + 1)

    def _sleep(self, attempt: int, cancel: Cancel | None = None) -> None:
        delay = self.backoff * (2 ** attempt)
        if cancel is None:
            time.sleep(delay)
        else:
            cancel.wait(delay)

    def get(self, url: str, *, headers: Mapping[str, str] | None = None,
            ) -> tuple[int, bytes, dict[str, str]]:
        """GET a small document: (status, body, response headers). 304 has an empty body.

        Raises :class:`NotFound` on 404 and :class:`DownloadError` after the retries.
        """
        if url.startswith("file:"):
            path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
            try:
                return 200, path.read_bytes(), {}
            except FileNotFoundError:
                raise NotFound(f"Download failed: {url}: no such file") from None
            except OSError as exc:
                raise DownloadError(f"Download failed: {url}: {exc.strerror}") from exc
        last = ""
        for attempt in self._attempts(url):
            try:
                resp = self.pool.request("GET", _redact(url),
                                         headers=self.headers(url, headers),
                                         decode_content=False, redirect=True)
            except urllib3.exceptions.HTTPError as exc:
                last = str(exc)
            else:
                _refuse_final(resp.status, url)
                if resp.status < 500:
                    if resp.status not in (200, 304):
                        raise DownloadError(f"Download failed: {_redact(url)}: {resp.status}")
                    return resp.status, resp.data, {k.lower(): v for k, v in resp.headers.items()}
                last = f"HTTP {resp.status}"
            if attempt < self.retries:
                log.warning("retrying %s after error: %s", _redact(url), last)
                self._sleep(attempt)
        raise DownloadError(f"Download failed: {_redact(url)}: {last} "
                            f"(after {self.retries + 1} attempts)")

    def download(self, url: str, dest: Path, *, sha256: str | None, size: int | None = None,
                 on_bytes: Callable[[int], None] | None = None,
                 cancel: Cancel | None = None) -> None:
        """Stream ``url`` to ``dest``, verifying ``sha256`` and ``size`` before the rename.

        ``on_bytes(n)`` is called as data arrives (negative n when a retry discards bytes).
        Once ``cancel`` is set the download stops at its next chunk (a stalled read at once)
        with :class:`DownloadCancelled`, and no retry starts.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}-{threading.get_ident():x}-"
                             f"{time.monotonic_ns()}")
        last = ""
        received = [0]

        def count(n: int) -> None:
            received[0] += n
            if on_bytes is not None:
                on_bytes(n)

        try:
            for attempt in self._attempts(url):
                received[0] = 0
                if cancel is not None:
                    cancel.check(url)
                try:
                    self._stream(url, tmp, sha256, size, count, cancel)
                    tmp.replace(dest)
                    return
                except (NotFound, ChecksumMismatch, DownloadCancelled):
                    raise
                except _Retryable as exc:
                    last = str(exc)
                except urllib3.exceptions.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                except OSError as exc:
                    if url.startswith("file:"):
                        raise DownloadError(f"Download failed: {url}: {exc}") from exc
                    last = str(exc)
                if on_bytes is not None and received[0]:
                    on_bytes(-received[0])  # the failed attempt's bytes are discarded
                if cancel is not None:
                    cancel.check(url)  # a failure caused by the cancellation is not retried
                if attempt < self.retries:
                    log.warning("retrying %s after error: %s", _redact(url), last)
                    self._sleep(attempt, cancel)
            raise DownloadError(f"Download failed: {_redact(url)}: {last} "
                                f"(after {self.retries + 1} attempts)")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _stream(self, url: str, tmp: Path, sha256: str | None, size: int | None,
                on_bytes: Callable[[int], None] | None, cancel: Cancel | None = None) -> int:
        digest = hashlib.sha256()
        received = 0
        with tmp.open("wb") as out:
            for chunk in self._chunks(url, cancel):
                if cancel is not None:
                    cancel.check(url)
                received += len(chunk)
                if size is not None and received > size:
                    raise ChecksumMismatch(f"Checksum mismatch: {_redact(url)} is larger than "
                                           f"the {size} bytes its index promises")
                digest.update(chunk)
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        if size is not None and received < size:
            raise _Retryable(f"truncated: got {received} of {size} bytes")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise ChecksumMismatch(f"Checksum mismatch: {_redact(url)}: SHA256 is "
                                   f"{digest.hexdigest()}, its signed index says {sha256}")
        return received

    def _chunks(self, url: str, cancel: Cancel | None = None) -> Iterator[bytes]:
        if url.startswith("file:"):
            path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
            try:
                with path.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        yield chunk
            except FileNotFoundError:
                raise NotFound(f"Download failed: {url}: no such file") from None
            return
        resp = self.pool.request("GET", _redact(url), headers=self.headers(url),
                                 preload_content=False,
                                 decode_content=False, redirect=True)
        try:
            _refuse_final(resp.status, url)
            if resp.status != 200:
                raise _Retryable(f"HTTP {resp.status}")
            with cancel.watching(resp) if cancel is not None else contextlib.nullcontext():
                yield from resp.stream(CHUNK, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise _Retryable(f"stalled: no data for {self.timeout.read_timeout} s") from None
        finally:
            resp.release_conn()


class _Retryable(Exception):
    pass


def _refuse_final(status: int, url: str) -> None:
    """Raise for the statuses no retry can change: 404, and 401/403 (credentials)."""
    if status == 404:
        raise NotFound(f"Download failed: {_redact(url)}: 404 Not Found")
    if status in (401, 403):
        raise DownloadError(f"Download failed: {_redact(url)}: {status} "
                            "(check config credentials for this URL)")
