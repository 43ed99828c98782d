"""The shared store as an HTTP object store (``storage.shared_store_url``): GET, PUT and
DELETE of objects named as in the shared directory (``URL/packages/ab/ab12...ef.deb``,
``URL/images/ab/...``, ``URL/index/images/NAME/KEY.json``), the way S3-compatible stores
and plain WebDAV-like servers work.

The same guarantees as the directory (:class:`imagecomposer.cache.shared.SharedStore`) where
HTTP gives them: an object is hashed before it is sent and refused when it does not match its
name; a GET is hashed while it streams and an object that does not match its name is never
served (the copy is removed, the object deleted on the server with a warning); a PUT is
atomic on the server's side (an object store's PUT is: a reader gets the old object, none,
or the whole new one). Not given: a lock across hosts (two hosts missing the same package at
the same moment may both download it; each publishes the same bytes). The store being
unreachable, or answering with an error, is a miss (a warning), never a failed build.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import urllib3

from imagecomposer.cache.shared import (
    CHUNK,
    ObjectStore,
    SharedStore,
    index_name,
    object_name,
    write_sparse,
)
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import CacheError, ConfigError

log = logging.getLogger("imagecomposer.cache")

_TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class HttpStore:
    """Objects addressed by SHA256 on an HTTP object store at ``url``."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"storage.shared_store_url: {url!r} is not an http(s):// URL")
        self.url = url.rstrip("/")
        self.root = self.url  # what messages name
        self._pool = urllib3.PoolManager(timeout=_TIMEOUT,
                                         retries=urllib3.Retry(total=2, backoff_factor=0.2))

    def __repr__(self) -> str:
        return f"HttpStore(url={self.url!r})"

    def _get(self, name: str) -> urllib3.BaseHTTPResponse:
        return self._pool.request("GET", f"{self.url}/{name}", preload_content=False)

    @contextlib.contextmanager
    def exclusive(self, kind: str, digest: str) -> Iterator[None]:
        """No lock across hosts over HTTP (see the module docstring)."""
        yield

    def copy_to(self, kind: str, digest: str, dest: Path, ext: str = "") -> bool:
        """Download the object to ``dest`` (a new file), checking its SHA256 while it
        streams (blocks of zeros skipped); False when the store does not have it, cannot be
        reached, or holds a damaged copy (then deleted there, with a warning)."""
        name = object_name(kind, digest, ext)
        h = hashlib.sha256()
        try:
            response = self._get(name)
            try:
                if response.status != 200:
                    if response.status != 404:
                        log.warning("shared store %s: GET %s: HTTP %d", self.url, name,
                                    response.status)
                    return False
                with dest.open("wb") as out:
                    write_sparse(response.stream(CHUNK), out, h)
            finally:
                response.release_conn()
        except _ERRORS as exc:
            dest.unlink(missing_ok=True)
            log.warning("shared store %s: cannot get %s: %s", self.url, name, exc)
            return False
        if not dest.exists():
            return False
        if h.hexdigest() != digest:
            dest.unlink(missing_ok=True)
            log.warning("shared store: %s/%s is damaged (its SHA256 is %s); deleting it",
                        self.url, name, h.hexdigest())
            self._delete(name)
            return False
        return True

    def publish(self, kind: str, digest: str, source: Path, ext: str = "") -> str:
        """PUT ``source`` (whose SHA256 must be ``digest``, checked first); a no-op when
        the store has it already."""
        name = object_name(kind, digest, ext)
        h = hashlib.sha256()
        with source.open("rb") as src:
            while chunk := src.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise CacheError(f"shared store: refusing to publish {name}: its content hashes "
                             f"to {h.hexdigest()}")
        try:
            head = self._pool.request("HEAD", f"{self.url}/{name}")
            if head.status == 200:
                return name
            with source.open("rb") as body:
                self._put(name, body, source.stat().st_size)
        except _ERRORS as exc:
            raise CacheError(f"shared store {self.url}: cannot publish {name}: {exc}") from None
        return name

    def _put(self, name: str, body: bytes | BinaryIO, size: int) -> None:
        response = self._pool.request(
            "PUT", f"{self.url}/{name}", body=body,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            retries=False)
        if response.status not in (200, 201, 204):
            raise CacheError(f"shared store {self.url}: PUT {name}: HTTP {response.status}")

    def _delete(self, name: str) -> None:
        with contextlib.suppress(*_ERRORS):
            self._pool.request("DELETE", f"{self.url}/{name}")

    def read_index(self, kind: str, name: str, digest: str) -> bytes | None:
        """The record (its reader checks it), or None (missing, or the store unreachable:
        a miss)."""
        where = index_name(kind, name, digest)
        try:
            response = self._pool.request("GET", f"{self.url}/{where}")
        except _ERRORS as exc:
            log.warning("shared store %s: cannot get %s: %s", self.url, where, exc)
            return None
        if response.status != 200:
            if response.status != 404:
                log.warning("shared store %s: GET %s: HTTP %d", self.url, where,
                            response.status)
            return None
        return bytes(response.data)

    def publish_index(self, kind: str, name: str, digest: str, data: bytes) -> None:
        where = index_name(kind, name, digest)
        try:
            self._put(where, data, len(data))
        except _ERRORS as exc:
            raise CacheError(f"shared store {self.url}: cannot publish {where}: {exc}") from None

    def remove_index(self, kind: str, name: str, digest: str) -> None:
        self._delete(index_name(kind, name, digest))


def object_store_for(config: Config) -> ObjectStore | None:
    """The shared store of ``config``: the HTTP object store of
    ``storage.shared_store_url``, else the directory of ``storage.shared_store``, else
    None."""
    if config.storage.shared_store_url is not None:
        return HttpStore(config.storage.shared_store_url)
    if config.storage.shared_store is not None:
        return SharedStore(config.storage.shared_store)
    return None
