"""A content-addressed store shared by build hosts (``storage.shared_store``).

A directory every host mounts (NFS, CephFS, a bind mount in tests)::

    packages/ab/ab12...ef.deb   a package by its SHA256 (what the lock names)
    images/ab/ab12...ef         a file of a built image by its SHA256
    index/images/NAME/KEY.json  the files of the image whose inputs hash to KEY (the image
                                cache's key, imagecomposer.cache.images): names and SHA256s
    bundles/ab/ab12...ef.tar    a spec and the files it references (imagecomposer.cluster)
    .tmp/HOST-PID-RAND          a writer's staging file
    .locks/KIND/ab12...ef       flock: one host downloads an object, the others wait for it

Guarantees:

* **Atomic publish.** An object is written to ``.tmp/``, flushed, hashed, and renamed into
  place; a reader sees nothing or the whole object, never a part of one.
* **Verified on read.** :meth:`SharedStore.copy_to` hashes while it copies; an object whose
  content does not match its name is removed (with a warning) and is a miss. Nothing is
  served from the store unchecked. An index record (which files an image cache key names)
  is checked by whoever reads it: each file it names is an object verified by its SHA256.
* **One download per object.** :meth:`SharedStore.exclusive` serialises the hosts that miss
  the same object; the first downloads and publishes, the others then copy it.

The store is plugged into :class:`imagecomposer.cache.store.PackageCache`: a package missing
from the host's own store is copied from here before any download, and published here after
one; and into :class:`imagecomposer.cache.images.ImageCache`: an image missing from the
host's image cache is taken from here (every file verified) before a build, and published
here after one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from imagecomposer.foundation.errors import CacheError
from imagecomposer.foundation.filelock import exclusive
from imagecomposer.foundation.staging import pid_running

log = logging.getLogger("imagecomposer.cache")

CHUNK = 1 << 20
_ZEROS = bytes(CHUNK)
_KINDS = ("packages", "bundles", "images")
_INDEXES = ("images",)
INDEX_FORMAT = 1  # of an index record
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}")


def write_sparse(chunks: Iterable[bytes], out: BinaryIO, h: Any) -> None:
    """Write ``chunks`` (each at most :data:`CHUNK` bytes) to ``out``, updating the hash
    ``h`` with each; blocks of zeros are skipped, not written (a sparse image stays
    sparse)."""
    for chunk in chunks:
        h.update(chunk)
        if chunk == _ZEROS[:len(chunk)]:
            out.seek(len(chunk), os.SEEK_CUR)
        else:
            out.write(chunk)
    out.truncate()


def _check(kind: str, digest: str, ext: str) -> None:
    if kind not in _KINDS:
        raise CacheError(f"shared store: unknown object kind {kind!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CacheError(f"shared store: {digest!r} is not a SHA256")
    if ext and not re.fullmatch(r"[a-z0-9]{1,8}", ext):
        raise CacheError(f"shared store: bad extension {ext!r}")


def object_name(kind: str, digest: str, ext: str = "") -> str:
    """Where an object is, relative to the store's root (a directory or a URL)."""
    _check(kind, digest, ext)
    return f"{kind}/{digest[:2]}/{digest}.{ext}" if ext else f"{kind}/{digest[:2]}/{digest}"


def index_name(kind: str, name: str, digest: str) -> str:
    """Where an index record is, relative to the store's root."""
    if kind not in _INDEXES:
        raise CacheError(f"shared store: unknown index {kind!r}")
    if not _NAME.fullmatch(name):
        raise CacheError(f"shared store: bad name {name!r}")
    _check(kind, digest, "")
    return f"index/{kind}/{name}/{digest}.json"


class ObjectStore(Protocol):
    """What the package and image caches use of a shared store: a directory
    (:class:`SharedStore`) or an HTTP object store
    (:class:`imagecomposer.cache.shared_http.HttpStore`)."""

    def exclusive(self, kind: str, digest: str) -> contextlib.AbstractContextManager[None]:
        ...

    def copy_to(self, kind: str, digest: str, dest: Path, ext: str = "") -> bool: ...

    def publish(self, kind: str, digest: str, source: Path, ext: str = "") -> object: ...

    def read_index(self, kind: str, name: str, digest: str) -> bytes | None: ...

    def publish_index(self, kind: str, name: str, digest: str, data: bytes) -> None: ...

    def remove_index(self, kind: str, name: str, digest: str) -> None: ...


class SharedStore:
    """Objects addressed by SHA256 in a directory shared by several hosts."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"SharedStore(root={str(self.root)!r})"

    def path(self, kind: str, digest: str, ext: str = "") -> Path:
        return self.root / object_name(kind, digest, ext)

    def has(self, kind: str, digest: str, ext: str = "") -> bool:
        return self.path(kind, digest, ext).is_file()

    @contextlib.contextmanager
    def exclusive(self, kind: str, digest: str) -> Iterator[None]:
        """Hold the object's lock: the one host that fetches it, the others wait."""
        _check(kind, digest, "")
        with exclusive(self.root / ".locks" / kind / digest):
            yield

    def copy_to(self, kind: str, digest: str, dest: Path, ext: str = "") -> bool:
        """Copy the object to ``dest`` (a new file), checking its SHA256 while copying;
        blocks of zeros are skipped (a sparse image stays sparse).

        False when the store does not hold it, or holds a damaged copy (then removed, so
        that the next writer publishes a good one); ``dest`` is then removed too."""
        source = self.path(kind, digest, ext)
        h = hashlib.sha256()
        try:
            with source.open("rb") as src, dest.open("wb") as out:
                write_sparse(iter(functools.partial(src.read, CHUNK), b""), out, h)
        except FileNotFoundError:
            dest.unlink(missing_ok=True)
            return False
        if h.hexdigest() != digest:
            dest.unlink(missing_ok=True)
            log.warning("shared store: %s is damaged (its SHA256 is %s); removing it",
                        source, h.hexdigest())
            with contextlib.suppress(FileNotFoundError):
                source.unlink()
            return False
        return True

    def read_bytes(self, kind: str, digest: str, ext: str = "") -> bytes | None:
        """The object's bytes, checked against its name; None when missing or damaged."""
        try:
            data = self.path(kind, digest, ext).read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            log.warning("shared store: %s is damaged; removing it",
                        self.path(kind, digest, ext))
            self.path(kind, digest, ext).unlink(missing_ok=True)
            return None
        return data

    def publish(self, kind: str, digest: str, source: Path, ext: str = "") -> Path:
        """Publish ``source`` (whose SHA256 must be ``digest``) atomically; a no-op when the
        store already holds it."""
        final = self.path(kind, digest, ext)
        if final.is_file():
            return final
        tmp = self._staging()
        try:
            h = hashlib.sha256()
            with source.open("rb") as src, tmp.open("wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._rename(tmp, final, h.hexdigest(), digest)
        finally:
            tmp.unlink(missing_ok=True)

    def publish_bytes(self, kind: str, data: bytes, ext: str = "") -> str:
        """Publish ``data``; returns its SHA256."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(kind, digest, ext)
        if final.is_file():
            return digest
        tmp = self._staged(data)
        try:
            self._rename(tmp, final, digest, digest)
        finally:
            tmp.unlink(missing_ok=True)
        return digest

    def index_path(self, kind: str, name: str, digest: str) -> Path:
        return self.root / index_name(kind, name, digest)

    def read_index(self, kind: str, name: str, digest: str) -> bytes | None:
        """The record ``kind/name/digest`` (its reader checks it), or None."""
        try:
            return self.index_path(kind, name, digest).read_bytes()
        except FileNotFoundError:
            return None

    def publish_index(self, kind: str, name: str, digest: str, data: bytes) -> None:
        """Write the record atomically (staging file, fsync, rename), replacing any record
        there (its writer checked it first)."""
        final = self.index_path(kind, name, digest)
        tmp = self._staged(data)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(final)
        finally:
            tmp.unlink(missing_ok=True)

    def remove_index(self, kind: str, name: str, digest: str) -> None:
        self.index_path(kind, name, digest).unlink(missing_ok=True)

    def _staging(self) -> Path:
        staging = self.root / ".tmp"
        staging.mkdir(parents=True, exist_ok=True)
        return staging / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def _staged(self, data: bytes) -> Path:
        """A staging file holding ``data``, on disk (fsync) before it is renamed."""
        tmp = self._staging()
        try:
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    @staticmethod
    def _rename(tmp: Path, final: Path, actual: str, digest: str) -> Path:
        if actual != digest:
            raise CacheError(f"shared store: refusing to publish {final.name}: its content "
                             f"hashes to {actual}")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)
        return final

    def remove_leftovers(self) -> list[Path]:
        """Staging files of this host's dead writers (a killed worker's partial copies)."""
        host = socket.gethostname()
        removed = []
        for tmp in sorted((self.root / ".tmp").glob(f"{host}-*")):
            pid = tmp.name[len(host) + 1:].split("-", 1)[0]
            if pid.isdigit() and not pid_running(int(pid)):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed


def index_record(data: bytes) -> dict[str, Any] | None:
    """An index record read from the store (a JSON object), or None."""
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def index_files(record: Mapping[str, Any], name: str, digest: str
                ) -> list[tuple[str, str]] | None:
    """The (file name, SHA256) of each file an index record names; None when the record is
    not well formed, is not the record of ``name``/``digest``, or a file name is not a
    plain name (a record read from the store is checked before it is used)."""
    if (record.get("format") != INDEX_FORMAT or record.get("name") != name
            or record.get("digest") != digest):
        return None
    try:
        files = [(str(f["name"]), str(f["sha256"])) for f in record["files"]]
    except (KeyError, TypeError):
        return None
    names = [n for n, _ in files]
    if (not files or len(set(names)) != len(names)
            or not all(_NAME.fullmatch(n) and _SHA256.fullmatch(d) for n, d in files)):
        return None
    return files


def copy_tree_atomically(source: Path, final: Path) -> bool:
    """Copy a directory to ``final`` through a staging directory next to it and one rename;
    False (and nothing changed) when ``final`` already exists."""
    if final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(source, staging, symlinks=True)
        try:
            staging.rename(final)
        except OSError:
            if final.exists():  # another host published the same output meanwhile
                return False
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True
