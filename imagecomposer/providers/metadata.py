"""The repository metadata cache under ``Config.metadata_cache_dir``.

Three kinds of entries, all written atomically (temporary name, then rename):

- ``docs/``: small documents fetched by URL (InRelease, Release, repomd.xml). They are
  refreshed with conditional requests (``If-None-Match``/``If-Modified-Since``), so a warm
  load costs one round trip that answers 304.
- ``by-hash/``: index files (Packages.xz, primary.xml.zst) stored by the SHA256 their signed
  release file names; an index whose hash is unchanged is never downloaded again.
- ``verified/``: the signed text of a release file gpgv accepted, keyed by the SHA256 of
  the exact signed bytes and of the keyring; unchanged bytes checked against an unchanged
  keyring need no second gpgv run (Valid-Until is still checked on every load).
- ``solv/``: the parsed pool of one index as a libsolv ``.solv`` file plus a JSON sidecar,
  keyed by the index hash and the libsolv version; loading it is ~20x faster than parsing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from imagecomposer.cache.http import Http
from imagecomposer.fsutil import atomic_write

SOLV_FORMAT = 1


class MetadataStore:
    def __init__(self, root: Path, http: Http) -> None:
        self.root = root
        self.http = http

    def _doc_path(self, url: str) -> Path:
        return self.root / "docs" / hashlib.sha256(url.encode()).hexdigest()[:32]

    def document(self, url: str) -> bytes:
        """The current content of ``url``, revalidated with a conditional request.

        Raises :class:`~imagecomposer.cache.http.NotFound` when the server has no such file.
        """
        path = self._doc_path(url)
        meta_path = path.with_suffix(".json")
        headers: dict[str, str] = {}
        cached: bytes | None = None
        if path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                cached = path.read_bytes()
            except (OSError, ValueError):
                meta = {}
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last-modified"):
                headers["If-Modified-Since"] = meta["last-modified"]
        status, body, resp_headers = self.http.get(url, headers=headers)
        if status == 304 and cached is not None:
            return cached
        atomic_write(path, body)
        meta = {"url": url, "etag": resp_headers.get("etag"),
                "last-modified": resp_headers.get("last-modified")}
        atomic_write(meta_path, json.dumps(meta).encode())
        return body

    def _verified_path(self, signed: bytes, keyring: Path) -> Path:
        digest = hashlib.sha256(signed)
        digest.update(hashlib.sha256(keyring.read_bytes()).digest())
        return self.root / "verified" / digest.hexdigest()

    def verified(self, signed: bytes, keyring: Path) -> str | None:
        """The text gpgv accepted for exactly these bytes and this keyring, if any."""
        try:
            return self._verified_path(signed, keyring).read_text()
        except OSError:
            return None

    def remember_verified(self, signed: bytes, keyring: Path, text: str) -> None:
        atomic_write(self._verified_path(signed, keyring), text.encode())

    def index(self, url: str, sha256: str, size: int | None, suffix: str) -> Path:
        """The index file with this ``sha256``, downloaded (and verified) only if missing."""
        path = self.root / "by-hash" / f"{sha256}{suffix}"
        if not path.is_file():
            self.http.download(url, path, sha256=sha256, size=size)
        return path

    def solv_paths(self, key: str) -> tuple[Path, Path]:
        import solv

        version = getattr(solv, "__version__", "0")
        digest = hashlib.sha256(f"{SOLV_FORMAT}:{version}:{key}".encode()).hexdigest()[:40]
        base = self.root / "solv" / digest
        return base.with_suffix(".solv"), base.with_suffix(".json")

    def write_solv(self, key: str, repo: Any, sidecar: dict[str, Any]) -> None:
        solv_path, json_path = self.solv_paths(key)
        solv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = solv_path.with_name(f".{solv_path.name}.tmp{os.getpid()}")
        import solv

        fp = solv.xfopen(str(tmp), "w")
        try:
            repo.write(fp)
        finally:
            fp.close()
        atomic_write(json_path, json.dumps(sidecar).encode())
        tmp.replace(solv_path)
