"""The build's clock: one integer that every time an image holds comes from, never the wall
clock.

The epoch is a number of seconds since 1970-01-01 UTC, as ``SOURCE_DATE_EPOCH``
(https://reproducible-builds.org/specs/source-date-epoch/) defines it. The Composer and the
Exporter take it as an explicit argument (``Composer(config, epoch=...)``,
``Exporter(epoch=...)``); :func:`build_epoch` is their default: ``SOURCE_DATE_EPOCH`` when it
is set, else :data:`DEFAULT_EPOCH`, a fixed date. A build (the pipeline) passes them
:func:`choose_epoch` of its lock: ``SOURCE_DATE_EPOCH`` when it is set, else the date derived
from the inputs (the newest date of the repositories' signed metadata, recorded in the lock:
:attr:`imagecomposer.lock.Lock.source_date`), else the default. Two builds of the same lock and
spec thus get the same clock whenever and wherever they run.

What the epoch becomes (see docs/reproducibility.md): ``SOURCE_DATE_EPOCH`` in the
environment of every tool whose output lands in an image (dpkg and its maintainer scripts,
``useradd``, spec scripts, ``update-initramfs``, the mkfs tools, mtools), the upper bound of
every file time in every filesystem, the filesystems' own creation and write times, and the
times in disk image headers.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping

from imagecomposer.foundation.errors import UsageError

ENV = "SOURCE_DATE_EPOCH"
# 2023-06-10T00:00:00Z, the release day of Debian 12: any fixed date would do. A date in the
# past keeps fsck and systemd from seeing file or superblock times in the future.
DEFAULT_EPOCH = 1686355200
# 2038-01-19T03:14:07Z: every format and tool here holds times up to it (signed 32-bit
# seconds); some (squashfs, FAT, ext4 with 256-byte inodes) go further, but not all.
MAX_EPOCH = (1 << 31) - 1
# where an epoch came from (what the manifest records as build_epoch_source)
FROM_ENV, FROM_INPUTS, FROM_DEFAULT = ENV, "lock", "default"


def check_epoch(epoch: int) -> int:
    """``epoch`` if it is a usable build epoch, else :class:`UsageError`."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise UsageError(f"invalid build epoch {epoch!r}: a number of seconds since "
                         f"1970-01-01 UTC between 0 and {MAX_EPOCH} is needed")
    return epoch


def choose_epoch(environ: Mapping[str, str] | None = None, *,
                 inputs: int | None = None) -> tuple[int, str]:
    """The build epoch and where it came from: ``SOURCE_DATE_EPOCH`` from ``environ``
    (default: this process's environment) when set and not empty (:data:`FROM_ENV`), else
    ``inputs``, the date derived from the build's inputs, when there is one
    (:data:`FROM_INPUTS`), else :data:`DEFAULT_EPOCH` (:data:`FROM_DEFAULT`). A malformed
    ``SOURCE_DATE_EPOCH`` is an error, never ignored."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    if value:
        if not value.isascii() or not value.isdigit():
            raise UsageError(f"{ENV}={value!r} is not a number of seconds since 1970-01-01 UTC")
        return check_epoch(int(value)), FROM_ENV
    if inputs is not None:
        return check_epoch(inputs), FROM_INPUTS
    return DEFAULT_EPOCH, FROM_DEFAULT


def build_epoch(environ: Mapping[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` from ``environ`` (default: this process's environment) when set
    and not empty, else :data:`DEFAULT_EPOCH`. A malformed value is an error, never ignored."""
    return choose_epoch(environ)[0]


def resolve(epoch: int | None) -> int:
    """The epoch an object was given, or :func:`build_epoch` when it was given none."""
    return build_epoch() if epoch is None else check_epoch(epoch)


def epoch_env(epoch: int) -> dict[str, str]:
    """The environment that makes tools honour ``epoch`` (``SOURCE_DATE_EPOCH``)."""
    return {ENV: str(check_epoch(epoch))}


def epoch_datetime(epoch: int) -> datetime.datetime:
    """``epoch`` as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(check_epoch(epoch), datetime.UTC)


def epoch_iso(epoch: int) -> str:
    """``epoch`` as ISO 8601 UTC with a ``Z``: ``2023-06-10T00:00:00Z``."""
    return epoch_datetime(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
