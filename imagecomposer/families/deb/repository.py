"""Load one apt repository (or a local directory of .deb files) into a libsolv pool.

Steps for a remote or ``file://`` repository, each of which fails with one precise error:
``InRelease`` (fallback ``Release`` + ``Release.gpg``) → gpgv against the configured keyring
→ ``Valid-Until`` → for each component the ``Packages.xz``/``.gz`` named in the signed
Release (by hash when ``Acquire-By-Hash: yes``), downloaded only if its SHA256 is not cached
yet and verified while streaming → the ``.solv`` cache keyed by that SHA256.

Every cached object is checked on use (see :mod:`imagecomposer.families.metadata`): when a
release file served from the cache (the mirror answered 304) fails its signature check, it
is discarded and fetched again without a conditional request before the failure counts.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import tempfile
import urllib.parse
import zlib
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.families.deb import release as rel
from imagecomposer.families.deb.index import (
    IndexFacts,
    index_directory,
    record_relation_order,
    scan,
)
from imagecomposer.families.metadata import Document, IndexRef, MetadataStore
from imagecomposer.foundation.errors import ConfigError, RepositoryError, SignatureError
from imagecomposer.foundation.http import NotFound
from imagecomposer.lock import SignedIndex

log = logging.getLogger("imagecomposer.deb")

COMPRESSIONS = (".xz", ".gz", "")


@attrs.frozen
class DebSource:
    """One repository to load: a base OS suite or an extra repository of the spec."""

    name: str
    url: str  # archive root (http(s)://, file://) or a local directory of .deb files
    suite: str | None  # None: a flat repository (Packages at the URL itself)
    components: tuple[str, ...]
    arch: str  # amd64, arm64
    keyring: Path | None
    trusted: bool = False
    priority: int = 500
    allow: tuple[str, ...] = ()  # name globs; empty: all
    check_valid_until: bool = True
    hint: str = ""  # how to override Valid-Until, for the error message


@attrs.frozen
class LoadedIndex:
    repo: Any  # solv.Repo
    source: DebSource
    base_url: str  # Filename fields are relative to this
    facts: IndexFacts
    from_cache: bool
    index: IndexRef | None = None  # the (compressed) Packages file, when there is one
    date: int | None = None  # the Release file's Date: (None: no Release)
    signed: SignedIndex | None = None  # the InRelease/Release file read (None: no Release)


def _local_dir(url: str) -> Path | None:
    if url.startswith("file:"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    elif "://" in url:
        return None
    else:
        path = Path(url)
    if not path.is_dir():
        if "://" not in url:
            raise RepositoryError(f"repository directory {path} does not exist")
        return None
    markers = ("InRelease", "Release", "Packages", "Packages.xz", "Packages.gz", "dists")
    return None if any((path / m).exists() for m in markers) else path


def _decompress(path: Path, what: str, name: str) -> str:
    data = path.read_bytes()
    try:
        if path.name.endswith(".xz"):
            data = lzma.decompress(data)
        elif path.name.endswith(".gz"):
            data = gzip.decompress(data)
    except (lzma.LZMAError, EOFError, OSError, zlib.error) as exc:
        raise RepositoryError(f"{what}: its index {name} cannot be decompressed ({exc}); "
                              "the repository publishes a broken file") from None
    return data.decode("utf-8", errors="replace")


def _fresh_repo(pool: Any, source: DebSource) -> Any:
    repo = pool.add_repo(source.name)
    repo.priority = source.priority
    return repo


def _set_sizes(repo: Any, sizes: dict[str, int]) -> None:
    """Store each package's download size (libsolv's deb parser skips ``Size``)."""
    import solv

    data = repo.add_repodata()
    for s in repo.solvables_iter():
        location, _ = s.lookup_location()
        size = sizes.get(str(location))
        if size is not None:
            data.set_num(s.id, solv.SOLVABLE_DOWNLOADSIZE, size)
    data.internalize()


def _load_text(pool: Any, source: DebSource, text: str, sizes: dict[str, int]) -> Any:
    import solv

    repo = _fresh_repo(pool, source)
    with tempfile.NamedTemporaryFile("w", suffix=".Packages", encoding="utf-8") as tmp:
        tmp.write(text)
        tmp.flush()
        fp = solv.xfopen(tmp.name)
        try:
            repo.add_debpackages(fp)
        finally:
            fp.close()
    _set_sizes(repo, sizes)
    record_relation_order(repo)  # a .solv file would lose it
    return repo


def load_local(pool: Any, source: DebSource, directory: Path) -> list[LoadedIndex]:
    """Index a directory of .deb files on the fly (read with libarchive, hashed here)."""
    log.info("indexing local packages in %s (unsigned local files)", directory)
    text = index_directory(directory)
    facts, sizes = scan(text)
    repo = _load_text(pool, source, text, sizes)
    return [LoadedIndex(repo, source, directory.resolve().as_uri(), facts, False)]


def _release(store: MetadataStore, source: DebSource, dist_url: str, what: str,
             keyring: Path | None) -> rel.Release | None:
    """The verified Release; a cached copy that fails verification is fetched again."""
    docs: list[Document] = []
    try:
        return _release_once(store, source, dist_url, what, keyring, docs, conditional=True)
    except RepositoryError as exc:  # SignatureError included
        cached = [d.url for d in docs if d.cached]
        if not cached:
            raise
        log.warning("metadata cache: the cached %s failed verification (%s); discarding it "
                    "and fetching it again without a conditional request",
                    " and ".join(cached), str(exc).splitlines()[0])
        for url in cached:
            store.discard(url)
        return _release_once(store, source, dist_url, what, keyring, [], conditional=False)


def _release_once(store: MetadataStore, source: DebSource, dist_url: str, what: str,
                  keyring: Path | None, docs: list[Document], *, conditional: bool
                  ) -> rel.Release | None:
    if keyring is None and not source.trusted:
        raise ConfigError(f"repository {source.name!r} ({source.url}) has no key: set key: "
                          "to its OpenPGP public key file, or trusted: true to skip "
                          "signature checks")

    def fetch(name: str) -> bytes:
        doc = store.document(dist_url + name, conditional=conditional)
        docs.append(doc)
        return doc.body

    try:
        inrelease: bytes | None = fetch("InRelease")
    except NotFound:
        inrelease = None
    if source.trusted:
        log.warning("SIGNATURE CHECKS DISABLED for repository %r (trusted: true): its "
                    "metadata and packages are NOT verified against any key", source.name)
    if inrelease is not None:
        if source.trusted:
            return _signed(rel.parse_release(_strip_clearsign(
                inrelease.decode("utf-8", "replace"))), "InRelease", inrelease)
        assert keyring is not None
        return _signed(rel.parse_release(_verify(store, keyring, inrelease, None, what)),
                       "InRelease", inrelease)
    try:
        release = fetch("Release")
    except NotFound:
        if source.trusted and source.suite is None:
            return None  # a bare trusted flat repository: Packages only
        raise RepositoryError(f"{what}: neither InRelease nor Release found at {dist_url} "
                              "(is the URL and suite right?)") from None
    if source.trusted:
        return _signed(rel.parse_release(release.decode("utf-8", "replace")), "Release",
                       release)
    try:
        signature = fetch("Release.gpg")
    except NotFound:
        raise SignatureError(f"Signature verification failed for {what}: Release is not "
                                 "signed (no InRelease, no Release.gpg)") from None
    assert keyring is not None
    return _signed(rel.parse_release(_verify(store, keyring, release, signature, what)),
                   "Release", release)


def _signed(release: rel.Release, name: str, body: bytes) -> rel.Release:
    """``release`` with the name and SHA-256 of the file it was read from (the lock records
    them: :class:`imagecomposer.lock.SignedIndex`)."""
    return attrs.evolve(release, signed=(name, hashlib.sha256(body).hexdigest()))


def _verify(store: MetadataStore, keyring: Path, signed: bytes, signature: bytes | None,
            what: str) -> str:
    """gpgv's verdict, reused when these exact bytes were verified with this keyring.

    A cached verdict is used only when it holds the text the signed bytes give (the
    clearsigned text of an InRelease, the Release itself); otherwise gpgv runs.
    """
    key = signed if signature is None else signed + b"\0" + signature
    expected = rel.cleartext(signed) if signature is None else signed.decode("utf-8",
                                                                             "replace")
    if expected is not None and store.verified(key, keyring, expected):
        return expected
    if signature is None:
        text = rel.verify(keyring, inrelease=signed, what=what)
    else:
        text = rel.verify(keyring, release=signed, signature=signature, what=what)
    if text == expected:  # else (an unusual file layout) gpgv runs on every load
        store.remember_verified(key, keyring, text)
    return text


def _strip_clearsign(text: str) -> str:
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    body = text.split("\n\n", 1)[1]
    return body.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]


def load_source(pool: Any, source: DebSource, store: MetadataStore,
                keyring: Path | None) -> list[LoadedIndex]:
    """Load every component of ``source`` into ``pool``; one libsolv repo per index."""
    directory = _local_dir(source.url)
    if directory is not None:
        return load_local(pool, source, directory)
    base = source.url.rstrip("/") + "/"
    dist_url = f"{base}dists/{source.suite}/" if source.suite else base
    what = f"repository {source.name!r} ({dist_url})"
    release = _release(store, source, dist_url, what, keyring)
    if release is not None and source.check_valid_until:
        release.check_valid_until(what, source.hint)
    if release is not None and source.suite:
        names = {release.fields.get("suite"), release.fields.get("codename")} - {None}
        if names and source.suite not in names:
            # a validly signed Release of another suite (replay/downgrade): refuse it
            raise SignatureError(f"Signature verification failed for {what}: its Release is "
                                 f"for {' / '.join(sorted(n for n in names if n))}, not "
                                 f"{source.suite}")
    if release is not None and source.suite:
        suite_arches = release.fields.get("architectures", "").split()
        if suite_arches and source.arch not in suite_arches:
            raise RepositoryError(f"{what} does not publish architecture {source.arch} "
                                  f"(it has: {' '.join(suite_arches)})")
    loaded = []
    paths = ([f"{c}/binary-{source.arch}/Packages" for c in source.components]
             if source.suite else ["Packages"])
    date = release.date if release is not None else None
    signed = None
    if release is not None and release.signed is not None:  # relative to the source's url
        signed = SignedIndex(dist_url[len(base):] + release.signed[0], release.signed[1])
    for index in paths:
        loaded.append(attrs.evolve(
            _load_index(pool, source, store, release, dist_url, index, base, what), date=date,
            signed=signed))
    return loaded


def _load_index(pool: Any, source: DebSource, store: MetadataStore,
                release: rel.Release | None, dist_url: str, index: str, base: str,
                what: str) -> LoadedIndex:
    if release is None:  # trusted bare flat repository: no checksums to check against
        for suffix in COMPRESSIONS:
            try:
                _, body, _ = store.http.get(dist_url + index + suffix)
            except NotFound:
                continue
            digest = hashlib.sha256(body).hexdigest()
            store.put_index(body, suffix, url=dist_url + index + suffix)
            ref = IndexRef(dist_url + index + suffix, digest, len(body), suffix)
            name = index + suffix
            break
        else:
            raise RepositoryError(f"{what}: no Packages index found")
    else:
        found = [release.files.get(index + s) for s in COMPRESSIONS]
        candidates = [e for e in found if e is not None]
        if not candidates:
            raise RepositoryError(f"{what}: its Release lists no {index} index (component "
                                  f"or architecture not published?)")
        entry = candidates[0]
        suffix = entry.path[len(index):]
        url = dist_url + entry.path
        if release.by_hash:
            url = f"{dist_url}{entry.path.rsplit('/', 1)[0] + '/' if '/' in entry.path else ''}" \
                  f"by-hash/SHA256/{entry.sha256}"
        ref = IndexRef(url, entry.sha256, entry.size, suffix)
        name = entry.path
    repo = _fresh_repo(pool, source)
    sidecar = store.load_solv(ref.sha256, repo, source=ref.sha256)
    if sidecar is not None:
        try:
            facts = IndexFacts.from_json(sidecar)
        except (KeyError, TypeError, ValueError):
            facts = None  # a sidecar of another layout: rebuilt below
        if facts is not None:  # None also for a sidecar of an older format
            return LoadedIndex(repo, source, base, facts, True, ref)
    repo.free(True)
    path = store.index_file(ref)  # checked against the signed Release's SHA256
    text = _decompress(path, what, name)  # once: libsolv parses the plain text, no second xz pass
    facts, sizes = scan(text)
    repo = _load_text(pool, source, text, sizes)
    store.write_solv(ref.sha256, repo, facts.to_json(), source=ref.sha256)
    return LoadedIndex(repo, source, base, facts, False, ref)
