"""The rpm-md metadata cache repairs itself (issue 18, item 9): a damaged cached repomd.xml
behind a mirror answering 304, a damaged primary index, a damaged ``.solv`` pool."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from rpm_helpers import RpmFixture, make_spec, resolve_lock

from imagecomposer.config.model import Config
from imagecomposer.lock import Lock


def resolve(fixture: RpmFixture, config: Config) -> Lock:
    return resolve_lock(make_spec(fixture, install=("alpha",)), config)


def versions(lock: Lock) -> dict[str, str]:
    return {p.name: p.version for p in lock.packages}


def cached_document(config: Config, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return config.metadata_cache_dir / "rpm" / "docs" / digest / "body"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_damaged_cached_repomd_behind_a_304_is_fetched_again(
        rpm_fixture: RpmFixture, rpm_config: Config,
        caplog: pytest.LogCaptureFixture) -> None:
    expected = versions(resolve(rpm_fixture, rpm_config))
    cached = cached_document(rpm_config, rpm_fixture.repo_url("main") + "repodata/repomd.xml")
    original = cached.read_bytes()
    data = original.replace(b"<revision>", b"<revision>1")
    cached.write_bytes(data)
    record = cached.with_name("record.json")  # the record agrees: only gpgv can tell
    meta = json.loads(record.read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    record.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        lock = resolve(rpm_fixture, rpm_config)  # before: "Signature check failed" each run
    assert versions(lock) == expected
    assert any("repodata/repomd.xml" in w and "without a conditional request" in w
               for w in warnings(caplog))
    assert cached.read_bytes() == original


def test_damaged_primary_index_is_downloaded_again(
        rpm_fixture: RpmFixture, rpm_config: Config,
        caplog: pytest.LogCaptureFixture) -> None:
    expected = versions(resolve(rpm_fixture, rpm_config))
    metadata = rpm_config.metadata_cache_dir / "rpm"
    primary = next((metadata / "by-hash").glob("*-primary.xml.*"))
    good = primary.read_bytes()
    primary.write_bytes(good[: len(good) // 2] + bytes(len(good) - len(good) // 2))
    shutil.rmtree(metadata / "solv")  # so the index is read again
    with caplog.at_level(logging.WARNING):
        lock = resolve(rpm_fixture, rpm_config)  # before: "cannot parse" on every run
    assert versions(lock) == expected
    assert any(str(primary) in w for w in warnings(caplog))
    assert primary.read_bytes() == good


def test_damaged_solv_cache_is_rebuilt(rpm_fixture: RpmFixture, rpm_config: Config,
                                       caplog: pytest.LogCaptureFixture) -> None:
    expected = versions(resolve(rpm_fixture, rpm_config))
    assert expected["beta"] == "2.0-1"
    solvs = sorted((rpm_config.metadata_cache_dir / "rpm" / "solv").glob("*/pool.solv"))
    good = {p: p.read_bytes() for p in solvs}
    assert len(good) >= 2
    # each pool file replaced by another repository's: every one still a loadable pool, just
    # the wrong one (libsolv stores version strings prefix-compressed, so editing a version
    # in place is not a reliable way to make a loadable wrong pool)
    datas = list(good.values())
    for path, data in zip(good, datas[1:] + datas[:1], strict=True):
        path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        lock = resolve(rpm_fixture, rpm_config)
    assert versions(lock) == expected  # before: the wrong pools, used silently
    assert any("does not match its checksum" in w for w in warnings(caplog))
    assert any(path.read_bytes() == data for path, data in good.items())
