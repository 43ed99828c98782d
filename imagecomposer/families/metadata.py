"""The repository metadata cache under ``Config.metadata_cache_dir``.

Four kinds of entries, all written atomically (temporary name, then rename), and each
checked again every time it is used; a bad one is discarded with a warning and fetched or
rebuilt, so the cache repairs itself:

- ``docs/``: small documents fetched by URL (InRelease, Release, repomd.xml) with a JSON
  record of their validators and SHA256. They are refreshed with conditional requests
  (``If-None-Match``/``If-Modified-Since``), so a warm load costs one round trip that
  answers 304. A copy whose SHA256 no longer matches is fetched again *without* a
  conditional request (a mirror answering 304 cannot pin a damaged copy), and so is one
  whose signature check fails (:meth:`MetadataStore.discard`, then ``conditional=False``).
- ``by-hash/``: index files (Packages.xz, primary.xml.zst) stored by the SHA256 their signed
  release file names; re-hashed against it whenever they are read, downloaded only if
  missing or damaged.
- ``verified/``: the signed text of a release file gpgv accepted, keyed by the SHA256 of the
  exact signed bytes and of the keyring; unchanged bytes checked against an unchanged
  keyring need no second gpgv run (Valid-Until is still checked on every load). An entry
  is used only if it holds the text the signed bytes themselves give.
- ``solv/``: the parsed pool of one index as a libsolv ``.solv`` file plus a JSON sidecar,
  keyed by the index hash and the libsolv version, and a ``.sum`` record binding both to
  that index (its SHA256 and theirs); loading it is ~20x faster than parsing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import DownloadError
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.http import Http

log = logging.getLogger("imagecomposer.metadata")

SOLV_FORMAT = 1


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
    def __init__(self, root: Path, http: Http) -> None:
        self.root = root
        self.http = http

    # --- documents --------------------------------------------------------------------

    def document_path(self, url: str) -> Path:
        """Where the cached copy of ``url`` is (its record: the same path + ``.json``)."""
        return self.root / "docs" / hashlib.sha256(url.encode()).hexdigest()[:32]

    def _cached(self, url: str) -> tuple[bytes, dict[str, Any]] | None:
        """The cached copy of ``url`` and its record, if both are there and agree."""
        path = self.document_path(url)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            body = path.read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or "sha256" not in meta:
            return None  # written before checksums were recorded: fetch it afresh
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            log.warning("metadata cache: %s (the cached %s) is damaged (SHA256 mismatch); "
                        "fetching it again without a conditional request", path, url)
            self.discard(url)
            return None
        return body, meta

    def document(self, url: str, *, conditional: bool = True) -> Document:
        """The current content of ``url``, revalidated with a conditional request when a
        sound cached copy exists (``conditional=False``: always a full request).

        Raises :class:`~imagecomposer.foundation.http.NotFound` when the server has no such file.
        """
        path = self.document_path(url)
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
        atomic_write(path, body)
        meta = {"url": url, "etag": resp_headers.get("etag"),
                "last-modified": resp_headers.get("last-modified"),
                "sha256": hashlib.sha256(body).hexdigest()}
        atomic_write(path.with_suffix(".json"), json.dumps(meta).encode())
        return Document(url, body, False)

    def discard(self, url: str) -> None:
        """Forget the cached copy of ``url`` (the next request for it is unconditional)."""
        path = self.document_path(url)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    # --- gpgv verdicts ----------------------------------------------------------------

    def _verified_path(self, signed: bytes, keyring: Path) -> Path:
        digest = hashlib.sha256(signed)
        digest.update(hashlib.sha256(keyring.read_bytes()).digest())
        return self.root / "verified" / digest.hexdigest()

    def verified(self, signed: bytes, keyring: Path, text: str) -> bool:
        """Whether gpgv accepted exactly these bytes with this keyring, giving ``text`` (the
        signed text, which the caller derives from ``signed`` itself). An entry holding any
        other text is damaged or was edited: it is discarded with a warning."""
        path = self._verified_path(signed, keyring)
        try:
            stored = path.read_bytes()
        except OSError:
            return False
        if stored == text.encode():
            return True
        log.warning("metadata cache: %s does not hold the text of the signed file it stands "
                    "for (damaged or edited); discarding it and checking the signature again",
                    path)
        path.unlink(missing_ok=True)
        return False

    def remember_verified(self, signed: bytes, keyring: Path, text: str) -> None:
        atomic_write(self._verified_path(signed, keyring), text.encode())

    # --- index files ------------------------------------------------------------------

    def index(self, url: str, sha256: str, size: int | None, suffix: str) -> Path:
        """The index file with this ``sha256``: the cached copy after checking its hash,
        else (missing or damaged) downloaded and verified while streaming."""
        path = self.root / "by-hash" / f"{sha256}{suffix}"
        if path.is_file():
            try:
                actual = sha256_file(path)
            except OSError:
                actual = "unreadable"
            if actual == sha256 and (size is None or path.stat().st_size == size):
                return path
            log.warning("metadata cache: %s is damaged (its SHA256 is not the %s the signed "
                        "release file gives); downloading it again", path, sha256)
            path.unlink(missing_ok=True)
        self.http.download(url, path, sha256=sha256, size=size)
        return path

    def index_file(self, ref: IndexRef) -> Path:
        return self.index(ref.url, ref.sha256, ref.size, ref.suffix)

    # --- parsed pools -----------------------------------------------------------------

    def solv_paths(self, key: str) -> tuple[Path, Path]:
        import solv

        version = getattr(solv, "__version__", "0")
        digest = hashlib.sha256(f"{SOLV_FORMAT}:{version}:{key}".encode()).hexdigest()[:40]
        base = self.root / "solv" / digest
        return base.with_suffix(".solv"), base.with_suffix(".json")

    def write_solv(self, key: str, repo: Any, sidecar: dict[str, Any], *, source: str
                   ) -> None:
        """Cache ``repo`` (built from the index whose digest is ``source``) and
        ``sidecar``, with a ``.sum`` record of both written last."""
        import solv

        solv_path, json_path = self.solv_paths(key)
        solv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = solv_path.with_name(f".{solv_path.name}.tmp{os.getpid()}")
        try:
            fp = solv.xfopen(str(tmp), "w")
            try:
                repo.write(fp)
            finally:
                fp.close()
            body = json.dumps(sidecar).encode()
            sums = {"source": source, "solv": sha256_file(tmp),
                    "json": hashlib.sha256(body).hexdigest()}
            atomic_write(json_path, body)
            tmp.replace(solv_path)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(solv_path.with_suffix(".sum"), json.dumps(sums).encode())

    def load_solv(self, key: str, repo: Any, *, source: str) -> dict[str, Any] | None:
        """Add the cached pool of ``key`` to ``repo`` and return its sidecar, when the
        ``.sum`` record binds it to ``source`` and both files match their checksums.
        Otherwise (nothing cached: silently) the entry is discarded with a warning, ``repo``
        is left empty and None returned: the caller rebuilds it from the verified index."""
        import solv

        solv_path, json_path = self.solv_paths(key)
        sum_path = solv_path.with_suffix(".sum")
        if not solv_path.exists():
            return None
        problem: str | None = None
        sidecar: Any = None
        try:
            sums = json.loads(sum_path.read_text())
            body = json_path.read_bytes()
            if not isinstance(sums, dict) or sums.get("source") != source:
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
            log.info("metadata cache: %s has no checksum record (written by an older "
                     "version); rebuilding it", solv_path)
            problem = ""
        except (OSError, ValueError) as exc:
            problem = f"unreadable: {exc}"
        if problem is None and isinstance(sidecar, dict):
            return sidecar
        if problem:
            log.warning("metadata cache: discarding %s (%s); rebuilding it from the verified "
                        "index", solv_path, problem)
        repo.empty()
        for path in (solv_path, json_path, sum_path):
            path.unlink(missing_ok=True)
        return None
