"""The build epoch: SOURCE_DATE_EPOCH when set, else a fixed date, never the wall clock; a
malformed value is a clear error. The embedded SBOMs' creation time follows it."""

from __future__ import annotations

import pytest

from imagecomposer.export.sbom.common import created
from imagecomposer.foundation.epoch import (
    DEFAULT_EPOCH,
    MAX_EPOCH,
    build_epoch,
    check_epoch,
    choose_epoch,
    epoch_env,
    epoch_iso,
    resolve,
)
from imagecomposer.foundation.errors import UsageError


def test_source_date_epoch_or_the_fixed_default() -> None:
    assert build_epoch({}) == DEFAULT_EPOCH
    assert build_epoch({"SOURCE_DATE_EPOCH": ""}) == DEFAULT_EPOCH
    assert build_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    assert build_epoch({"SOURCE_DATE_EPOCH": "0"}) == 0
    assert epoch_iso(DEFAULT_EPOCH) == "2023-06-10T00:00:00Z"
    assert epoch_env(42) == {"SOURCE_DATE_EPOCH": "42"}


def test_source_date_epoch_wins_over_the_inputs_date_over_the_default() -> None:
    """A build passes the newest date of its lock's repositories as ``inputs``."""
    assert choose_epoch({}, inputs=1796000000) == (1796000000, "lock")
    assert choose_epoch({"SOURCE_DATE_EPOCH": "1700000000"}, inputs=1796000000) == \
        (1700000000, "SOURCE_DATE_EPOCH")
    assert choose_epoch({"SOURCE_DATE_EPOCH": ""}, inputs=None) == (DEFAULT_EPOCH, "default")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH='soon'"):
        choose_epoch({"SOURCE_DATE_EPOCH": "soon"}, inputs=1796000000)  # never ignored
    with pytest.raises(UsageError, match="invalid build epoch"):
        choose_epoch({}, inputs=MAX_EPOCH + 1)


@pytest.mark.parametrize("value", ["yesterday", "-1", "1.5", " 12", "١٢٣", str(MAX_EPOCH + 1)])
def test_malformed_source_date_epoch_is_an_error(value: str) -> None:
    with pytest.raises(UsageError, match=r"SOURCE_DATE_EPOCH|build epoch"):
        build_epoch({"SOURCE_DATE_EPOCH": value})


def test_explicit_epochs_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert resolve(None) == 1700000000 and resolve(5) == 5
    for bad in (-1, MAX_EPOCH + 1, True):
        with pytest.raises(UsageError, match="invalid build epoch"):
            check_epoch(bad)


def test_sbom_creation_time_is_the_epoch_not_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of each SBOM is embedded in the image: with the clock as its creation time,
    the raw disk of two builds differed."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert created() == "2023-06-10T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert created() == "2023-11-14T22:13:20Z"
