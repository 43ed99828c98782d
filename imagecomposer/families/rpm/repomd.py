"""``repodata/repomd.xml``: the signed root of an rpm-md repository.

repomd.xml names every other metadata file with its checksum and size, so once repomd.xml is
trusted (its detached ``repomd.xml.asc`` verified by ``gpgv`` against the configured keys
when the repository signs it) every file it names can be checked against it. It is parsed by
libsolv itself (``Repo.add_repomdxml``) in a scratch pool, so the parser that loads
``primary`` is also the one that reads the checksums.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import attrs
import solv

from imagecomposer.families.rpm.keys import Keyring
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CommandError, RepositoryError, SignatureError


@attrs.frozen
class RepomdRecord:
    """One ``<data type=...>`` entry of repomd.xml."""

    type: str  # primary, filelists, other, ...
    location: str  # relative to the repository's base URL
    checksum_type: str  # sha256, sha512, sha1
    checksum: str  # hex, of the compressed file
    size: int | None


@attrs.frozen
class Repomd:
    records: dict[str, RepomdRecord]
    timestamp: int | None  # the newest <timestamp> of its records
    revision: str | None = None  # <revision>: createrepo_c writes the time of indexing
    sha256: str | None = None  # of the repomd.xml document itself

    @property
    def date(self) -> int | None:
        """When the metadata was made, in seconds since 1970-01-01 UTC: the revision when it
        is a number of seconds (createrepo_c's default), else the newest timestamp."""
        if self.revision is not None and self.revision.isascii() \
                and self.revision.isdigit() and int(self.revision) < 1 << 31:
            return int(self.revision)
        return self.timestamp

    def record(self, what: str, *, url: str) -> RepomdRecord:
        try:
            return self.records[what]
        except KeyError:
            raise RepositoryError(f"{url}repodata/repomd.xml names no {what} metadata") from None


def parse_repomd(data: bytes, *, url: str) -> Repomd:
    """The records of a repomd.xml document; RepositoryError if libsolv cannot parse it."""
    pool = solv.Pool()
    repo = pool.add_repo("repomd")
    with tempfile.NamedTemporaryFile(prefix="repomd-", suffix=".xml") as tmp:
        tmp.write(data)
        tmp.flush()
        fp = solv.xfopen(tmp.name)
        try:
            ok = repo.add_repomdxml(fp, 0)
        finally:
            fp.close()
    if not ok:
        raise RepositoryError(f"{url}repodata/repomd.xml is not valid repomd XML: "
                              f"{pool.errstr.strip()}")
    records: dict[str, RepomdRecord] = {}
    for what in ("primary", "filelists", "other"):
        di = repo.Dataiterator_meta(solv.REPOSITORY_REPOMD_TYPE, what,
                                    solv.Dataiterator.SEARCH_STRING)
        di.prepend_keyname(solv.REPOSITORY_REPOMD)
        for entry in di:
            pos = entry.parentpos()
            location = pos.lookup_str(solv.REPOSITORY_REPOMD_LOCATION)
            checksum = pos.lookup_checksum(solv.REPOSITORY_REPOMD_CHECKSUM)
            if not location or checksum is None:
                raise RepositoryError(
                    f"{url}repodata/repomd.xml: {what} entry lacks a location or checksum")
            size = pos.lookup_num(solv.REPOSITORY_REPOMD_SIZE)
            records[what] = RepomdRecord(what, location, checksum.typestr(), checksum.hex(),
                                         size or None)
            break
    timestamp = repo.meta.lookup_num(solv.REPOSITORY_TIMESTAMP)
    revision = repo.meta.lookup_str(solv.REPOSITORY_REVISION)
    return Repomd(records, timestamp or None, revision or None,
                  hashlib.sha256(data).hexdigest())


def verify_repomd(repomd: bytes, signature: bytes, keyring: Keyring, *, url: str) -> None:
    """gpgv the detached signature; SignatureError unless a configured key made it."""
    gpgv = runner.require("gpgv", "gpgv")
    with tempfile.TemporaryDirectory(prefix="repomd-") as tmp:
        data = Path(tmp) / "repomd.xml"
        sig = Path(tmp) / "repomd.xml.asc"
        data.write_bytes(repomd)
        sig.write_bytes(signature)
        try:
            runner.run([gpgv, "--keyring", str(keyring.gpgv_keyring), str(sig), str(data)],
                       capture=True, what=f"gpgv {url}repodata/repomd.xml")
        except CommandError as exc:
            raise SignatureError(
                f"Signature check failed: {url}repodata/repomd.xml is not signed by a "
                f"configured key ({', '.join(map(str, keyring.sources))})\n"
                f"{exc.stderr_tail}") from exc
