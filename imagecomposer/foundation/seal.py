"""Seals for the records of derived cache entries: HMAC-SHA256 with a key kept outside the
cache directory.

A cache whose entries carry their own digests defends against damage only: whoever can
write the cache directory can replace an entry *and* its digests. A seal is an HMAC-SHA256,
made with a secret key that does not live in the cache, over a canonical JSON record of the
entry (its kind, its key in the store, and what it holds: file digests, a content
manifest ...). Someone who can write the cache but not read the key cannot make a seal, so
an entry they made or changed is refused; a record copied from another entry is refused too,
because the entry's key is part of what is sealed.

The key is 32 random bytes in a file of its own (``storage.seal_key``), created on first use
with mode 0600 (its directory 0700). It is refused when other users can write it, or read
it unless through its group. Its bytes never appear in a log, a repr or an error message.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagecomposer.foundation.errors import SealKeyError

KEY_SIZE = 32
FORMAT = 1
SETTING = "storage.seal_key (or $IMAGECOMPOSER_SEAL_KEY)"
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def canonical(kind: str, key: str, record: Mapping[str, Any]) -> bytes:
    """The bytes a seal is made over: one JSON text, keys sorted, no spaces, ASCII only."""
    return json.dumps({"format": FORMAT, "kind": kind, "key": key, "record": record},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


class SealKey:
    """The sealing key in the file ``path``, read (or created) when first needed: nothing
    is created by the constructor. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SealKey {self.path}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealKey) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __reduce__(self) -> tuple[type[SealKey], tuple[Path]]:
        return SealKey, (self.path,)  # a pickled key is its path: the bytes stay here

    # --- sealing ---------------------------------------------------------------------

    def seal(self, kind: str, key: str, record: Mapping[str, Any]) -> str:
        """The seal (hex) of ``record``, the content of entry ``key`` of cache ``kind``."""
        return hmac.new(self._bytes(), canonical(kind, key, record), hashlib.sha256).hexdigest()

    def check(self, kind: str, key: str, record: Mapping[str, Any], seal: object) -> bool:
        """Whether ``seal`` is the seal of ``record`` for entry ``key`` of cache ``kind``
        (compared in constant time)."""
        if not isinstance(seal, str):
            return False
        return hmac.compare_digest(self.seal(kind, key, record).encode(), seal.encode())

    # --- the key file ----------------------------------------------------------------

    def _bytes(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = self._load() if os.path.lexists(self.path) else self._create()
            return self._key

    def _error(self, exc: OSError, doing: str) -> SealKeyError:
        denied = exc.errno in _DENIED
        return SealKeyError(
            f"{'Permission denied: ' if denied else ''}cannot {doing} the cache sealing key "
            f"{self.path} ({exc.filename or self.path}: {exc.strerror or type(exc).__name__});"
            f" set {SETTING} in the global configuration to a file you can "
            f"{'write' if doing == 'create' else 'read'}")

    def _load(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise self._error(exc, "read") from None
        try:
            st = os.fstat(fd)
            _check_file(self.path, st)
            data = os.read(fd, KEY_SIZE + 1)
        except OSError as exc:
            raise self._error(exc, "read") from None
        finally:
            os.close(fd)
        if len(data) != KEY_SIZE:
            raise SealKeyError(f"the cache sealing key {self.path} is not a key: it must hold "
                               f"exactly {KEY_SIZE} bytes (it holds {st.st_size}); remove it "
                               f"to have a new one made (every sealed cache entry is then "
                               f"discarded once)")
        return data

    def _create(self) -> bytes:
        """32 random bytes in a new file, mode 0600: written under a temporary name and
        linked into place, so a concurrent creator's key wins and both use it."""
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}"
        key = secrets.token_bytes(KEY_SIZE)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
            except FileExistsError:  # another process made one meanwhile: use it
                return self._load()
            with contextlib.suppress(OSError):
                dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise self._error(exc, "create") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return key


def _check_file(path: Path, st: os.stat_result) -> None:
    """Refuse a key other users could have written, or could read (but through its
    group: machines or users sharing a cache share the key)."""
    if not stat.S_ISREG(st.st_mode):
        raise SealKeyError(f"the cache sealing key {path} is not a regular file")
    if st.st_uid not in (os.geteuid(), 0):
        raise SealKeyError(f"the cache sealing key {path} belongs to uid {st.st_uid}, not to "
                           f"this user or root: refusing it (anyone who can change it can "
                           f"forge cache entries)")
    if st.st_mode & 0o022 or st.st_mode & 0o004:
        raise SealKeyError(
            f"the cache sealing key {path} can be {'written' if st.st_mode & 0o022 else 'read'}"
            f" by other users (mode {stat.S_IMODE(st.st_mode):04o}): refusing it; make it "
            f"readable by its owner only (chmod 600) and create it anew if it may have been "
            f"read")
