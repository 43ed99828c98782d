"""Without SOURCE_DATE_EPOCH a build's clock derives from its inputs: the lock records when
each repository's signed Release was published (its ``Date:``), and the newest of those
dates is the build epoch (issue 10)."""

from __future__ import annotations

import hashlib
import json

from imagecomposer.config.model import Config
from imagecomposer.families.deb.release import parse_release
from imagecomposer.lock import Lock, SignedIndex
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import DebArchive
from tests.packages.conftest import make_spec


def test_the_release_date_is_read_in_seconds() -> None:
    assert parse_release("Origin: Debian\nDate: Sat, 10 Jun 2023 09:33:24 UTC\n").date == \
        1686389604
    assert parse_release("Date: Sat, 10 Jun 2023 11:33:24 +0200\n").date == 1686389604
    assert parse_release("Origin: Debian\n").date is None
    assert parse_release("Date: yesterday\n").date is None
    assert parse_release("Date: Sat, 10 Jun 2023 09:33:24\n").date is None  # no zone


def test_the_lock_records_every_release_date(config: Config, archive: DebArchive) -> None:
    published = {suite: parse_release((archive.release_dir(suite) / "Release").read_text()).date
                 for suite in ("bookworm", "bookworm-updates", "bookworm-security")}
    assert None not in published.values()
    lock = Resolver(config).resolve(make_spec()).lock
    assert {r.name: r.date for r in lock.repositories} == published
    assert lock.source_date == max(d for d in published.values() if d is not None)
    assert Lock.from_json(lock.to_json()) == lock  # written and read back with the dates
    # a lock written before the dates existed still reads: it has no source date
    data = json.loads(lock.to_json())
    for repository in data["repositories"]:
        del repository["date"]
    assert Lock.from_json(json.dumps(data)).source_date is None


def test_the_lock_records_the_sha256_of_every_inrelease(config: Config,
                                                        archive: DebArchive) -> None:
    """The signed index each suite's packages were verified with (issue 10), as the deb
    family names it: the InRelease file the build read, relative to the repository's URL.
    A lock without the field (written before it existed) still reads."""
    lock = Resolver(config).resolve(make_spec()).lock
    assert {r.name: r.signed_index for r in lock.repositories} == {
        r.name: SignedIndex(f"dists/{r.suite}/InRelease", hashlib.sha256(
            (archive.release_dir(str(r.suite)) / "InRelease").read_bytes()).hexdigest())
        for r in lock.repositories}
    assert len(lock.repositories) == 3
    assert Lock.from_json(lock.to_json()) == lock
    data = json.loads(lock.to_json())
    for repository in data["repositories"]:
        del repository["signed_index"]
    older = Lock.from_json(json.dumps(data))
    assert [r.signed_index for r in older.repositories] == [None] * 3
    assert older.source_date == lock.source_date
