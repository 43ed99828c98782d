"""The repository metadata cache under ``Config.metadata_cache_dir``.

A :class:`~imagecomposer.foundation.store.Store` (atomic entries, bookkeeping of use,
eviction within ``storage.metadata_cache``) holding four kinds of entries, each checked again
every time it is used; a bad one is discarded with a warning and fetched or rebuilt, so the
cache repairs itself. The rpm family keeps its entries under ``rpm/`` in the same store.

- ``docs/<hash>/{body, record.json}``: small documents fetched by URL (InRelease, Release,
  repomd.xml) with a record of their validators and SHA256. They are refreshed with
  conditional requests (``If-None-Match``/``If-Modified-Since``), so a warm load costs one
  round trip that answers 304. A copy whose SHA256 no longer matches is fetched again
  *without* a conditional request (a mirror answering 304 cannot pin a damaged copy), and
  so is one whose signature check fails (:meth:`MetadataStore.discard`, then
  ``conditional=False``).
- ``by-hash/<sha256><suffix>``: index files (Packages.xz, primary.xml.zst) stored by the
  SHA256 their signed release file names; re-hashed against it whenever they are read,
  downloaded only if missing or damaged.
- ``verified/<hash>``: the signed text of a release file gpgv accepted, keyed by the SHA256
  of the exact signed bytes and of the keyring; unchanged bytes checked against an
  unchanged keyring need no second gpgv run (Valid-Until is still checked on every load).
  An entry is used only if it holds the text the signed bytes themselves give *and* its
  seal holds: it stands for a signature check, so whoever can write the cache must not be
  able to make one.
- ``solv/<hash>/{pool.solv, pool.json, pool.sum}``: the parsed pool of one index as a
  libsolv ``.solv`` file plus a JSON sidecar, keyed by the index hash and the libsolv
  version, and a record binding both to that index (its SHA256 and theirs); loading it is
  ~20x faster than parsing. The record is sealed: a pool and its record replaced together
  are refused.

Seals (:mod:`imagecomposer.foundation.seal`) are HMAC-SHA256 with a key kept outside the
cache directory, over the record and the entry's key: an entry without a seal, with a seal
that does not hold, or whose record was copied from another entry, is discarded with a
warning and rebuilt. The other kinds need none: a document is checked against its signature
on every use, an index against the digest its signed release file gives.

Keyrings prepared for gpgv and rpmkeys (dearmored keys, a private rpm database) are *not*
kept in the cache: they decide which signatures are accepted, so whoever can write the cache
could slip in their own key. Each store prepares them in a private directory of its own
(:meth:`MetadataStore.private_dir`, mode 0700, removed with the store); preparing them costs
a few gpg runs per build. A ``keyrings/`` directory left in the cache by an older version is
not read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.config.model import Config, default_seal_key
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import DownloadError
from imagecomposer.foundation.http import Http
from imagecomposer.foundation.seal import SealKey
from imagecomposer.foundation.store import NO_LIMITS, Limits, Store

log = logging.getLogger("imagecomposer.metadata")

SOLV_FORMAT = 1
KINDS = ("docs", "verified", "by-hash", "solv")
PREFIXES = ("", "rpm/")  # the deb family's entries, the rpm family's
BODY, RECORD = "body", "record.json"
POOL, SIDECAR, SUMS = "pool.solv", "pool.json", "pool.sum"
SEALED = "metadata"  # what the seals name
_SUMS_FIELDS = ("source", "solv", "json")


def _solv_sealed(seal_key: SealKey, key: str, sums: object) -> bool:
    """Whether a pool's checksum record is sealed for entry ``key``."""
    if not isinstance(sums, dict):
        return False
    record = {field: sums.get(field) for field in _SUMS_FIELDS}
    return seal_key.check(SEALED, key, record, sums.get("seal"))


def _verdict_text(seal_key: SealKey, key: str, stored: bytes) -> str | None:
    """The text a ``verified`` entry holds if its seal holds for entry ``key``, else None."""
    try:
        data = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    text: str = data["text"]
    record = {"text_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return text if seal_key.check(SEALED, key, record, data.get("seal")) else None


def verify_entry(path: Path, seal_key: SealKey, key: str) -> str | None:
    """What is wrong with the metadata entry ``key`` at ``path``, as far as it can tell by
    itself (a ``verified`` entry is sealed, but only its use can tell whether it holds the
    text of the signed bytes it stands for)."""
    kind = path.parent.name
    if kind == "docs":
        record = json.loads((path / RECORD).read_text())
        digest = hashlib.sha256((path / BODY).read_bytes()).hexdigest()
        if not isinstance(record, dict) or record.get("sha256") != digest:
            return "the document does not match its recorded SHA256"
    elif kind == "by-hash":
        if sha256_file(path) != path.name[:64]:
            return "its SHA256 is not the one it is named by"
    elif kind == "verified":
        if _verdict_text(seal_key, key, path.read_bytes()) is None:
            return "not sealed, or its seal does not match"
    elif kind == "solv":
        sums = json.loads((path / SUMS).read_text())
        if not _solv_sealed(seal_key, key, sums):
            return "its checksum record is not sealed, or its seal does not match"
        if sums.get("solv") != sha256_file(path / POOL) or \
                sums.get("json") != sha256_file(path / SIDECAR):
            return "the pool does not match its checksum record"
    return None


def metadata_storage(root: Path, limits: Limits = NO_LIMITS,
                     seal_key: SealKey | None = None) -> Store:
    """The store under ``root`` holding both families' metadata entries (``seal_key``:
    default :func:`~imagecomposer.config.model.default_seal_key`)."""
    key = seal_key if seal_key is not None else SealKey(default_seal_key())
    root = Path(root)
    return Store(root, patterns=tuple(f"{p}{k}/*" for p in PREFIXES for k in KINDS),
                 limits=limits, what="metadata cache",
                 verify=lambda path: verify_entry(path, key,
                                                  path.relative_to(root).as_posix()))


def metadata_limits(config: Config) -> Limits:
    settings = config.storage.metadata_cache
    return Limits.of(max_size_gb=settings.max_size_gb, retention_days=settings.retention_days)


_PRIVATE = "ic-metadata-"


def _private_directory() -> Path:
    """A new directory ``$TMPDIR/ic-metadata-PID-RANDOM`` (mode 0700), after removing those
    of this user whose process is gone (a killed build cannot remove its own)."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(f"{_PRIVATE}*-*"):
        pid = old.name[len(_PRIVATE):].split("-", 1)[0]
        try:
            mine = old.lstat().st_uid == os.geteuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{_PRIVATE}{os.getpid()}-", dir=base))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@attrs.frozen
class Document:
    url: str
    body: bytes
    cached: bool  # the server answered 304: these are the cache's bytes, not fresh ones


@attrs.frozen
class IndexRef:
    """Where an index file comes from and the digest its signed release file gives."""

    url: str
    sha256: str
    size: int | None
    suffix: str  # .xz, -primary.xml.zst, ...: kept so the compression is recognised


class MetadataStore:
    """The metadata entries of one family (``prefix``: ``""`` for deb, ``"rpm/"``)."""

    def __init__(self, root: Path, http: Http, *, prefix: str = "",
                 limits: Limits = NO_LIMITS, seal_key: SealKey | None = None) -> None:
        self.root = root
        self.base = root / prefix if prefix else root
        self.prefix = prefix
        self.http = http
        self.seal_key = seal_key if seal_key is not None else SealKey(default_seal_key())
        self.storage = metadata_storage(root, limits, self.seal_key)
        self._private: Path | None = None

    @classmethod
    def for_config(cls, config: Config, http: Http, *, prefix: str = "",
                   cache_dir: Path | None = None) -> MetadataStore:
        """The store of ``config`` (``cache_dir`` overrides the directory). With
        ``storage.metadata_cache.enabled: false`` a private store in the work directory,
        removed when the object goes away."""
        seal_key = SealKey(config.storage.seal_key)
        if cache_dir is None and not config.storage.metadata_cache.enabled:
            root = config.core.work_dir / f"metadata-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            store = cls(root, http, prefix=prefix, seal_key=seal_key)
            store.storage.setting = "core.work_dir (or $IMAGECOMPOSER_WORK_DIR)"
            weakref.finalize(store, shutil.rmtree, root, True)
            return store
        return cls(cache_dir or config.metadata_cache_dir, http, prefix=prefix,
                   limits=metadata_limits(config), seal_key=seal_key)

    def __repr__(self) -> str:
        return f"<MetadataStore at {self.base}>"

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}/{name}"

    def private_dir(self, name: str) -> Path:
        """``name/`` in a directory of this store alone, outside the cache (mode 0700,
        removed when the store goes away): for what decides which signatures are accepted
        (prepared keyrings), which nobody who can write the cache may change."""
        if self._private is None:
            self._private = _private_directory()
            weakref.finalize(self, shutil.rmtree, self._private, True)
        path = self._private / name
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def _written(self, key: str) -> None:
        """After a write: keep the store within its limits (cheap: no content check)."""
        self.storage.prune(keep={key})

    # --- documents --------------------------------------------------------------------

    def _doc_key(self, url: str) -> str:
        return self._key("docs", hashlib.sha256(url.encode()).hexdigest()[:32])

    def document_path(self, url: str) -> Path:
        """Where the cached copy of ``url`` is (its record: ``record.json`` beside it)."""
        return self.storage.path(self._doc_key(url)) / BODY

    def _cached(self, url: str) -> tuple[bytes, dict[str, Any]] | None:
        """The cached copy of ``url`` and its record, if both are there and agree."""
        key = self._doc_key(url)
        path = self.storage.path(key)
        try:
            meta = json.loads((path / RECORD).read_text())
            body = (path / BODY).read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or "sha256" not in meta:
            return None
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            log.warning("metadata cache: %s (the cached %s) is damaged (SHA256 mismatch); "
                        "fetching it again without a conditional request", path / BODY, url)
            self.discard(url)
            return None
        self.storage.touch([key])
        return body, meta

    def document(self, url: str, *, conditional: bool = True) -> Document:
        """The current content of ``url``, revalidated with a conditional request when a
        sound cached copy exists (``conditional=False``: always a full request).

        Raises :class:`~imagecomposer.foundation.http.NotFound` when the server has no such file.
        """
        headers: dict[str, str] = {}
        cached = self._cached(url) if conditional else None
        if cached is not None:
            meta = cached[1]
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last-modified"):
                headers["If-Modified-Since"] = meta["last-modified"]
        status, body, resp_headers = self.http.get(url, headers=headers)
        if status == 304:
            if cached is None or not headers:
                raise DownloadError(f"Download failed: {url}: the server answered 304 Not "
                                    "Modified to a request that was not conditional")
            return Document(url, cached[0], True)
        record = {"url": url, "etag": resp_headers.get("etag"),
                  "last-modified": resp_headers.get("last-modified"),
                  "sha256": hashlib.sha256(body).hexdigest()}

        def fill(directory: Path) -> None:
            directory.mkdir()
            (directory / BODY).write_bytes(body)
            (directory / RECORD).write_text(json.dumps(record))

        key = self._doc_key(url)
        self.storage.write(key, fill, meta={"label": url})
        self._written(key)
        return Document(url, body, False)

    def discard(self, url: str) -> None:
        """Forget the cached copy of ``url`` (the next request for it is unconditional)."""
        self.storage.remove(self._doc_key(url))

    # --- gpgv verdicts ----------------------------------------------------------------

    def _verified_key(self, signed: bytes, keyring: Path) -> str:
        digest = hashlib.sha256(signed)
        digest.update(hashlib.sha256(keyring.read_bytes()).digest())
        return self._key("verified", digest.hexdigest())

    def verified(self, signed: bytes, keyring: Path, text: str) -> bool:
        """Whether gpgv accepted exactly these bytes with this keyring, giving ``text`` (the
        signed text, which the caller derives from ``signed`` itself). An entry holding any
        other text is damaged or was edited: it is discarded with a warning."""
        key = self._verified_key(signed, keyring)
        path = self.storage.path(key)
        try:
            stored = path.read_bytes()
        except OSError:
            return False
        if _verdict_text(self.seal_key, key, stored) == text:
            self.storage.touch([key])
            return True
        log.warning("metadata cache: %s is not a sealed verdict on the signed file it stands "
                    "for (damaged, edited, forged or written by an older version); discarding "
                    "it and checking the signature again", path)
        self.storage.remove(key)
        return False

    def remember_verified(self, signed: bytes, keyring: Path, text: str) -> None:
        key = self._verified_key(signed, keyring)
        record = {"text_sha256": hashlib.sha256(text.encode()).hexdigest()}
        body = json.dumps({"text": text, "seal": self.seal_key.seal(SEALED, key, record)})
        self.storage.write_bytes(key, body.encode(), meta={
            "label": f"gpgv verdict {key.rsplit('/', 1)[1][:12]}"})
        self._written(key)

    # --- index files ------------------------------------------------------------------

    def index(self, url: str, sha256: str, size: int | None, suffix: str) -> Path:
        """The index file with this ``sha256``: the cached copy after checking its hash,
        else (missing or damaged) downloaded and verified while streaming."""
        key = self._key("by-hash", f"{sha256}{suffix}")
        path = self.storage.path(key)
        if path.is_file():
            try:
                actual = sha256_file(path)
            except OSError:
                actual = "unreadable"
            if actual == sha256 and (size is None or path.stat().st_size == size):
                self.storage.touch([key])
                return path
            log.warning("metadata cache: %s is damaged (its SHA256 is not the %s the signed "
                        "release file gives); downloading it again", path, sha256)
            self.storage.remove(key)
        self.storage.write(key, lambda dest: self.http.download(url, dest, sha256=sha256,
                                                                 size=size),
                           meta={"label": url})
        self._written(key)
        return path

    def index_file(self, ref: IndexRef) -> Path:
        return self.index(ref.url, ref.sha256, ref.size, ref.suffix)

    def put_index(self, body: bytes, suffix: str, *, url: str = "") -> Path:
        """Store an index whose digest no signed file gives (a trusted flat repository)."""
        key = self._key("by-hash", f"{hashlib.sha256(body).hexdigest()}{suffix}")
        path = self.storage.write_bytes(key, body, meta={"label": url} if url else None)
        self._written(key)
        return path

    # --- parsed pools -----------------------------------------------------------------

    def _solv_key(self, key: str) -> str:
        import solv

        version = getattr(solv, "__version__", "0")
        digest = hashlib.sha256(f"{SOLV_FORMAT}:{version}:{key}".encode()).hexdigest()[:40]
        return self._key("solv", digest)

    def solv_paths(self, key: str) -> tuple[Path, Path]:
        """The pool and its sidecar for ``key`` (the entry directory holds both)."""
        entry = self.storage.path(self._solv_key(key))
        return entry / POOL, entry / SIDECAR

    def write_solv(self, key: str, repo: Any, sidecar: dict[str, Any], *, source: str
                   ) -> None:
        """Cache ``repo`` (built from the index whose digest is ``source``) and
        ``sidecar``, with the record binding both to it, as one entry."""
        import solv

        def fill(directory: Path) -> None:
            directory.mkdir()
            fp = solv.xfopen(str(directory / POOL), "w")
            try:
                repo.write(fp)
            finally:
                fp.close()
            body = json.dumps(sidecar).encode()
            (directory / SIDECAR).write_bytes(body)
            sums = {"source": source, "solv": sha256_file(directory / POOL),
                    "json": hashlib.sha256(body).hexdigest()}
            sums["seal"] = self.seal_key.seal(SEALED, entry, sums)
            (directory / SUMS).write_text(json.dumps(sums))

        entry = self._solv_key(key)
        self.storage.write(entry, fill, meta={"label": f"parsed pool {source[:16]}"})
        self._written(entry)

    def load_solv(self, key: str, repo: Any, *, source: str) -> dict[str, Any] | None:
        """Add the cached pool of ``key`` to ``repo`` and return its sidecar, when its
        record binds it to ``source`` and both files match their checksums.
        Otherwise (nothing cached: silently) the entry is discarded with a warning, ``repo``
        is left empty and None returned: the caller rebuilds it from the verified index."""
        import solv

        entry = self._solv_key(key)
        solv_path, json_path = self.solv_paths(key)
        if not solv_path.exists():
            return None
        problem: str | None = None
        sidecar: Any = None
        try:
            sums = json.loads((solv_path.parent / SUMS).read_text())
            body = json_path.read_bytes()
            if not _solv_sealed(self.seal_key, entry, sums):
                problem = ("its checksum record is not sealed, or its seal does not match "
                           "(the record was changed or copied from another entry)")
            elif sums.get("source") != source:
                problem = "not built from the index the signed metadata names"
            elif hashlib.sha256(body).hexdigest() != sums.get("json"):
                problem = f"{json_path.name} does not match its checksum"
            else:
                sidecar = json.loads(body)
                with solv_path.open("rb") as f:
                    digest = hashlib.sha256()
                    while block := f.read(1 << 20):
                        digest.update(block)
                    if digest.hexdigest() != sums.get("solv"):
                        problem = "does not match its checksum"
                    else:
                        f.seek(0)
                        fp = solv.xfopen_fd(str(solv_path), f.fileno())
                        try:
                            if not repo.add_solv(fp):
                                problem = "libsolv cannot read it"
                        finally:
                            fp.close()
        except FileNotFoundError:
            log.info("metadata cache: %s has no checksum record (incomplete); rebuilding it",
                     solv_path)
            problem = ""
        except (OSError, ValueError) as exc:
            problem = f"unreadable: {exc}"
        if problem is None and isinstance(sidecar, dict):
            self.storage.touch([entry])
            return sidecar
        if problem:
            log.warning("metadata cache: discarding %s (%s); rebuilding it from the verified "
                        "index", solv_path, problem)
        repo.empty()
        self.storage.remove(entry)
        return None
