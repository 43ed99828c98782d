"""Load one rpm-md repository into a libsolv pool, verified, through the metadata cache.

Steps, each failing with one precise error: ``repodata/repomd.xml`` (revalidated with a
conditional request) → its detached ``repomd.xml.asc`` checked with ``gpgv`` (required when
the repository is declared ``repo_gpgcheck``, checked when present otherwise) → the
``primary`` file repomd.xml names, downloaded only if its SHA256 is not cached yet and
verified while streaming → ``Repo.add_rpmmd`` (libsolv decompresses gz, xz, zst and bz2
itself) → a ``.solv`` cache keyed by that SHA256. ``filelists`` is loaded the same way, on
demand, when some file dependency has no provider in ``primary`` (which lists only the
files under ``/etc`` and ``*bin/``).

Every cached object is checked on use (see :mod:`imagecomposer.families.metadata`): when a
repomd.xml served from the cache (the mirror answered 304) fails its signature check or
cannot be parsed, it is discarded and fetched again without a conditional request before
the failure counts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import solv

from imagecomposer.families.metadata import Document, MetadataStore
from imagecomposer.families.rpm.keys import Keyring
from imagecomposer.families.rpm.repomd import Repomd, RepomdRecord, parse_repomd, verify_repomd
from imagecomposer.foundation.errors import RepositoryError, SignatureError
from imagecomposer.foundation.http import NotFound

log = logging.getLogger("imagecomposer.rpm")


REPOMD = "repodata/repomd.xml"  # the signed index, relative to the base URL


@attrs.frozen
class RpmSource:
    """One rpm-md repository to load: a base OS one or an extra one from the spec."""

    name: str
    baseurl: str  # ends with "/"; repodata/repomd.xml and package locations are below it
    priority: int = 99  # dnf semantics: lower number wins
    gpgcheck: bool = True  # package header signatures are checked
    repo_gpgcheck: bool | None = None  # True: must sign repomd.xml; None: check if signed
    keyring: Keyring | None = None
    trusted: bool = False  # explicit opt-out of every signature check
    allow: tuple[str, ...] = ()  # package name globs; empty: all

    @property
    def solv_priority(self) -> int:
        """libsolv prefers the *highest* repo priority; dnf the lowest number."""
        return -self.priority


@attrs.frozen
class LoadedRepo:
    repo: Any  # solv.Repo
    source: RpmSource
    repomd: Repomd
    from_cache: bool
    filelists: bool  # filelists.xml is in the repo


def _suffix(record: RepomdRecord) -> str:
    """``-primary.xml.zst`` for ``repodata/<hash>-primary.xml.zst``: keeps the compression."""
    base = record.location.rsplit("/", 1)[-1]
    index = base.find(record.type)
    return "-" + (base[index:] if index >= 0 else base)


def fetch_repomd(source: RpmSource, store: MetadataStore) -> Repomd:
    """repomd.xml of ``source``, its signature checked as the source demands."""
    docs: list[Document] = []
    try:
        return _fetch_repomd(source, store, docs, conditional=True)
    except RepositoryError as exc:  # SignatureError included
        cached = [d.url for d in docs if d.cached]
        if not cached:
            raise
        log.warning("metadata cache: the cached %s failed verification (%s); discarding it "
                    "and fetching it again without a conditional request",
                    " and ".join(cached), str(exc).splitlines()[0])
        for url in cached:
            store.discard(url)
        return _fetch_repomd(source, store, [], conditional=False)


def _fetch_repomd(source: RpmSource, store: MetadataStore, docs: list[Document], *,
                  conditional: bool) -> Repomd:
    url = source.baseurl

    def fetch(name: str) -> bytes:
        doc = store.document(url + name, conditional=conditional)
        docs.append(doc)
        return doc.body

    try:
        body = fetch(REPOMD)
    except NotFound:
        raise RepositoryError(f"{url} is not an rpm-md repository: "
                              "repodata/repomd.xml not found") from None
    if source.trusted:
        log.warning("repository %s is trusted: NOT checking any signature of %s",
                    source.name, url)
    elif source.repo_gpgcheck is not False:
        try:
            signature: bytes | None = fetch("repodata/repomd.xml.asc")
        except NotFound:
            signature = None
        if signature is None:
            if source.repo_gpgcheck:
                raise SignatureError(
                    f"Signature check failed: {url}repodata/repomd.xml.asc not found, but "
                    f"repository {source.name} is declared to sign its metadata")
            log.warning("repository %s does not sign repomd.xml; relying on package "
                        "signatures", source.name)
        else:
            if source.keyring is None:
                raise SignatureError(f"repository {source.name} has no keys to verify "
                                     "repomd.xml.asc with")
            # gpgv once per (repomd, signature, keyring): a warm load skips it
            signed = body + b"\0" + signature
            if not store.verified(signed, source.keyring.gpgv_keyring, "repomd.xml"):
                verify_repomd(body, signature, source.keyring, url=url)
                store.remember_verified(signed, source.keyring.gpgv_keyring, "repomd.xml")
    return parse_repomd(body, url=url)


def _index(source: RpmSource, record: RepomdRecord, store: MetadataStore) -> Path:
    if record.checksum_type != "sha256":
        raise RepositoryError(
            f"{source.baseurl}{record.location}: checksum type {record.checksum_type} is not "
            "supported (imagecomposer needs sha256 metadata checksums)")
    return store.index(source.baseurl + record.location, record.checksum, record.size,
                       _suffix(record))


def _add(repo: Any, path: Path, flags: int, *, url: str) -> None:
    fp = solv.xfopen(str(path))
    if fp is None:
        raise RepositoryError(f"{url}: cannot open {path.name} (unsupported compression?)")
    try:
        ok = repo.add_rpmmd(fp, None, flags)
    finally:
        fp.close()
    if not ok:
        raise RepositoryError(f"{url}: cannot parse {path.name}: {repo.pool.errstr.strip()}")


def _keys(repomd: Repomd) -> tuple[tuple[str, str], tuple[str, str] | None]:
    """(solv cache key, digest of the index(es) it is built from) for primary alone and
    for primary + filelists."""
    primary = repomd.records["primary"].checksum
    filelists = repomd.records.get("filelists")
    return ((f"rpm-primary:{primary}", primary),
            (f"rpm-primary+filelists:{primary}:{filelists.checksum}",
             f"{primary}:{filelists.checksum}") if filelists else None)


def load_source(pool: Any, source: RpmSource, store: MetadataStore) -> LoadedRepo:
    """Add ``source`` to ``pool`` as a repo named after it, verified, cached."""
    repomd = fetch_repomd(source, store)
    primary = repomd.record("primary", url=source.baseurl)
    repo = pool.add_repo(source.name)
    repo.priority = source.solv_priority
    (primary_key, primary_source), both = _keys(repomd)
    if both is not None and store.load_solv(both[0], repo, source=both[1]) is not None:
        return LoadedRepo(repo, source, repomd, True, True)
    if store.load_solv(primary_key, repo, source=primary_source) is not None:
        return LoadedRepo(repo, source, repomd, True, False)
    path = _index(source, primary, store)
    _add(repo, path, 0, url=source.baseurl + primary.location)
    store.write_solv(primary_key, repo, {"url": source.baseurl, "primary": primary.checksum},
                     source=primary_source)
    return LoadedRepo(repo, source, repomd, False, False)


def load_filelists(loaded: LoadedRepo, store: MetadataStore) -> LoadedRepo:
    """Extend the repo's solvables with filelists.xml (and cache the combined pool)."""
    if loaded.filelists:
        return loaded
    record = loaded.repomd.records.get("filelists")
    if record is None:
        return loaded
    path = _index(loaded.source, record, store)
    _add(loaded.repo, path, solv.Repo.REPO_EXTEND_SOLVABLES,
         url=loaded.source.baseurl + record.location)
    _, both = _keys(loaded.repomd)
    assert both is not None
    store.write_solv(both[0], loaded.repo, {"url": loaded.source.baseurl,
                                            "filelists": record.checksum}, source=both[1])
    return attrs.evolve(loaded, filelists=True)


def unresolved_file_dependencies(pool: Any) -> set[str]:
    """File requirements (``/usr/...``) no loaded solvable provides.

    Call after ``pool.addfileprovides(); pool.createwhatprovides()``.
    """
    missing: set[str] = set()
    seen: set[int] = set()
    for solvable in pool.solvables_iter():
        for dep in solvable.lookup_deparray(solv.SOLVABLE_REQUIRES, 0):
            if dep.id in seen:
                continue
            seen.add(dep.id)
            text = str(dep)
            if text.startswith("/") and not pool.whatprovides(dep):
                missing.add(text)
    return missing
