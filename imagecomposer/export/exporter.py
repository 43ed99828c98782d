"""The Exporter: raw disk image → the requested formats, compressed, checksummed, signed,
moved into the output directory in one atomic step.

Conversions go through ``qemu-img convert`` and compression through the multithreaded tools
with ``parallel`` threads (``zstd -TN``, ``xz -T+N``, ``pigz -p N`` when present, else
``gzip``), all via :func:`imagecomposer.foundation.runner.run`. Everything is written into a
staging directory first; only a complete, checksummed (and, with a signer, signed) set of
files replaces the previous outputs (see :mod:`imagecomposer.foundation.staging`).

The same raw disk and epoch give the same bytes in every format: the identifiers and times
qemu-img puts in vhd, vhdx, vmdk and vdi headers are replaced by values derived from the raw
disk's SHA-256 and the epoch (:mod:`imagecomposer.export.headers`); the compressors' output
does not depend on the thread count (zstd and xz in multithreaded mode, pigz) and carries no
name or time (``-n``).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from imagecomposer.export import headers
from imagecomposer.export.checksums import SUMS, write_sums
from imagecomposer.export.formats import (
    COMPRESSIONS,
    check_combination,
    format_info,
    round_up_mib,
)
from imagecomposer.export.manifest import MANIFEST, write_manifest
from imagecomposer.foundation import display
from imagecomposer.foundation.digest import recall, recall_content, remember, sha256_known
from imagecomposer.foundation.epoch import resolve
from imagecomposer.foundation.errors import CommandError, ExportError
from imagecomposer.foundation.events import EventSink, ExportStep, Progress
from imagecomposer.foundation.runner import require, run, which
from imagecomposer.foundation.staging import staged


class FileSigner(Protocol):
    """What export needs of a signer (:class:`imagecomposer.sign.Signer` fits)."""

    @property
    def sig_alg(self) -> str: ...

    def sign_file(self, path: Path, *, out: Path | None = None) -> Path: ...


@attrs.frozen
class Artifact:
    """One output file as the manifest records it."""

    name: str  # file name inside the output directory
    format: str  # raw | qcow2 | ... | manifest | sbom-spdx | sbom-cyclonedx | extra
    compression: str
    size: int
    sha256: str
    signature: str | None = None  # name of the detached signature file
    sig_alg: str | None = None


@attrs.frozen
class ExportResult:
    output_dir: Path
    artifacts: tuple[Artifact, ...]
    sums: Path
    manifest: Path | None = None
    provenance: Path | None = None
    timings: tuple[ExportStep, ...] = ()

    def path(self, artifact: Artifact) -> Path:
        return self.output_dir / artifact.name


# (artifacts, the directory holding them and their signatures) -> manifest document
ManifestBuilder = Callable[[Sequence[Artifact], Path], Mapping[str, Any]]
# (artifacts, the staging directory) -> the attestation file it wrote there
Attester = Callable[[Sequence[Artifact], Path], Path]


class Exporter:
    """Converts, compresses and publishes disk images. Stateless apart from its settings."""

    def __init__(self, *, parallel: int | None = None,
                 events: EventSink | None = None, epoch: int | None = None,
                 content_digests: bool = False) -> None:
        self.parallel = max(1, parallel if parallel is not None else min(4, os.cpu_count() or 1))
        # also make each hashed file's content digest in the same read (the image cache
        # stores the outputs next: it then reads none of them again)
        self.content_digests = content_digests
        self._events = events
        self._timings: list[ExportStep] = []
        # the build's clock (vhd timestamps); default: SOURCE_DATE_EPOCH or a fixed date
        self.epoch = resolve(epoch)

    def __repr__(self) -> str:
        return display.call("Exporter", parallel=self.parallel)

    def _progress(self, what: str, unit: str = "bytes") -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback reporting :class:`Progress` of ``what`` (None
        without events)."""
        events = self._events
        if events is None:
            return None
        return lambda done, total: events(Progress(what, done, total, unit))

    def sha256(self, path: Path) -> str:
        """The SHA256 of ``path``, reporting :class:`Progress` ("hashing NAME"); a file this
        process hashed already, unchanged, is not read again
        (:func:`~imagecomposer.foundation.digest.sha256_known`)."""
        return sha256_known(path, self._progress(f"hashing {path.name}"),
                            content=self.content_digests)

    def _event(self, kind: str, name: str, started: float) -> None:
        event = ExportStep(kind, name, round(time.monotonic() - started, 3))
        self._timings.append(event)
        if self._events is not None:
            self._events(event)

    # --- single steps -----------------------------------------------------------------------

    def convert(self, raw: Path, fmt: str, out: Path, *, compressed: bool = False,
                identity: str | None = None) -> Path:
        """Convert a raw image to ``fmt``; ``compressed`` asks qcow2 for compressed clusters.

        ``identity`` (default: the SHA-256 of ``raw``, computed only for formats that need
        it) is what the identifiers in vhd, vhdx, vmdk and vdi headers derive from.
        """
        info = format_info(fmt)
        if not raw.is_file():
            raise ExportError(f"raw image {raw} does not exist")
        qemu_img = require("qemu-img", "qemu-utils")
        started = time.monotonic()
        source = raw
        padded: Path | None = None
        try:
            if info.name == "raw":
                run(["cp", "--reflink=auto", "--sparse=always", raw, out], error=CommandError)
                known = recall(raw)
                if known is not None:  # a copy: the same bytes, not hashed again
                    remember(out, known, recall_content(raw))
                return out
            size = raw.stat().st_size
            if info.round_to_mib and size != round_up_mib(size):
                padded = out.with_name(f".{out.name}.padded.raw")
                run(["cp", "--reflink=auto", "--sparse=always", raw, padded])
                os.truncate(padded, round_up_mib(size))
                source = padded
            argv: list[str | Path] = [qemu_img, "convert", "-f", "raw", "-O", info.qemu_format]
            if info.options:
                argv += ["-o", ",".join(info.options)]
            if compressed:
                if info.name != "qcow2":
                    raise ExportError(f"format '{fmt}' has no internal compression")
                argv.append("-c")
            report = self._progress(f"converting to {fmt}")
            if report is None:
                run([*argv, source, out], what=f"qemu-img convert to {fmt}")
            else:  # -p: "    (12.34/100%)" lines, each the share of the input converted
                run([*argv, "-p", source, out], what=f"qemu-img convert to {fmt}",
                    on_output=_qemu_progress(report, size))
            if info.name in headers.STAMPED:
                headers.stamp(out, info.name, epoch=self.epoch,
                              identity=identity or self.sha256(raw))
            return out
        except CommandError as exc:
            out.unlink(missing_ok=True)
            raise ExportError(f"conversion of {raw} to {fmt} failed: {exc}") from None
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        finally:
            if padded is not None:
                padded.unlink(missing_ok=True)
            self._event("convert", fmt, started)

    def compress(self, path: Path, compression: str, *, keep: bool = False) -> Path:
        """Compress ``path`` next to itself (``.gz``/``.xz``/``.zst``); returns the new path.
        The input is removed unless ``keep``; gzip output carries no name or timestamp."""
        if compression not in COMPRESSIONS:
            raise ExportError(f"unknown compression '{compression}'")
        if compression == "none":
            return path
        out = path.with_name(path.name + COMPRESSIONS[compression].suffix)
        started = time.monotonic()
        if compression == "zstd":
            argv: list[str | Path] = [require("zstd", "zstd"), f"-T{self.parallel}", "-q",
                                      "-f", path, "-o", out]
        elif compression == "xz":
            # -T+N is multithreaded mode even with one thread, whose output does not
            # depend on the thread count (plain -T1 is the single-threaded mode: other
            # bytes); --no-adjust fails rather than falling back to it when memory is short.
            argv = [require("xz", "xz-utils"), f"-T+{self.parallel}", "--no-adjust", "-k",
                    "-f", path]
        elif pigz := which("pigz"):
            argv = [pigz, "-p", str(self.parallel), "-n", "-k", "-f", path]
        else:
            argv = [require("gzip", "gzip"), "-n", "-k", "-f", path]
        try:
            run(argv, what=f"{compression} compression of {path.name}")
        except CommandError as exc:
            out.unlink(missing_ok=True)
            raise ExportError(f"{compression} compression of {path} failed: {exc}") from None
        finally:
            self._event("compress", f"{path.name} ({compression})", started)
        if not keep:
            path.unlink()
        return out

    # --- the whole finalize step ------------------------------------------------------------

    def export(self, raw: Path, formats: Iterable[str], compression: str, output_dir: Path, *,
               extra_files: Iterable[Path] | Callable[[], Iterable[Path]] = (),
               name: str | None = None,
               qcow2_compressed: bool = False, signer: FileSigner | None = None,
               manifest: ManifestBuilder | None = None,
               attest: Attester | None = None) -> ExportResult:
        """Convert ``raw`` to every format, compress, add ``extra_files`` (SBOMs, ...),
        sign (with ``signer``), write the manifest (``manifest`` maps the artifacts to its
        document), the attestations (``attest`` writes them over every file so far:
        :mod:`imagecomposer.export.provenance`), ``SHA256SUMS`` (and its signature), then
        replace ``output_dir`` atomically. On any failure ``output_dir`` is left as it
        was. ``extra_files`` may be a function giving them, called once the formats are
        converted (the caller makes them meanwhile: the SBOMs wait for the raw image's
        SHA256, hashed while ``qemu-img`` converts)."""
        formats = tuple(dict.fromkeys(formats))
        if not formats:
            raise ExportError("no output format requested")
        check_combination(formats, compression)
        extra: tuple[Path, ...] = () if callable(extra_files) else tuple(extra_files)
        _check_extra(extra)
        stem = name or raw.name.removesuffix(".raw")
        self._timings = []
        raw_digest = None
        if any(fmt in headers.STAMPED for fmt in formats):
            started = time.monotonic()
            raw_digest = self.sha256(raw)  # the identity the header ids derive from
            self._event("checksum", raw.name, started)
        with staged(output_dir) as stage:
            converted = self._convert_all(raw, formats, compression, stage, stem,
                                          qcow2_compressed, raw_digest)
            plain_raw = [(fmt, compression) == ("raw", "none") for fmt, _ in converted]
            # the other formats are hashed first: the caller may still be hashing the raw
            done = {i: self._artifact(stage, path, fmt, compression, signer)
                    for i, (fmt, path) in enumerate(converted) if not plain_raw[i]}
            if callable(extra_files):
                extra = tuple(extra_files())
                _check_extra(extra)
            # hashed meanwhile (the caller's SBOMs): the copy was made from these very,
            # unchanged bytes (recall answers only for the inode as it was hashed)
            raw_digest = raw_digest or recall(raw)
            for i, (_, path) in enumerate(converted):
                if plain_raw[i] and raw_digest is not None and recall(path) is None:
                    # for SHA256SUMS and the image cache
                    remember(path, raw_digest, recall_content(raw))
            artifacts = [done[i] if i in done else
                         self._artifact(stage, path, fmt, compression, signer, raw_digest)
                         for i, (fmt, path) in enumerate(converted)]
            for path in extra:
                copy = stage / path.name
                if copy.exists():
                    raise ExportError(f"extra file {path.name} clashes with another output")
                run(["cp", "--reflink=auto", path, copy])
                artifacts.append(self._artifact(stage, copy, _kind_of(path.name), "none",
                                                signer))
            manifest_path = None
            if manifest is not None:
                manifest_path = stage / MANIFEST
                write_manifest(manifest_path, manifest(artifacts, stage))
                if signer is not None:
                    self._sign(signer, manifest_path)
            attestation = None
            if attest is not None:
                started = time.monotonic()
                attestation = attest(artifacts, stage)
                self._event("attest", attestation.name, started)
            started = time.monotonic()
            names = [p.name for p in stage.iterdir() if p.is_file()]
            sums = write_sums(stage, names, known={a.name: a.sha256 for a in artifacts},
                              digest=self.sha256)
            self._event("checksum", SUMS, started)
            if signer is not None:
                self._sign(signer, sums)
            started = time.monotonic()
        self._event("commit", str(output_dir), started)
        return ExportResult(output_dir, tuple(artifacts), output_dir / SUMS,
                            output_dir / MANIFEST if manifest_path else None,
                            output_dir / attestation.name if attestation else None,
                            tuple(self._timings))

    def _convert_all(self, raw: Path, formats: Sequence[str], compression: str, stage: Path,
                     stem: str, qcow2_compressed: bool,
                     identity: str | None) -> list[tuple[str, Path]]:
        def one(fmt: str) -> tuple[str, Path]:
            out = stage / (stem + format_info(fmt).suffix)
            self.convert(raw, fmt, out, compressed=qcow2_compressed and fmt == "qcow2",
                         identity=identity)
            return fmt, self.compress(out, compression)

        if self.parallel == 1 or len(formats) == 1:
            return [one(fmt) for fmt in formats]
        with concurrent.futures.ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(one, formats))

    def _sign(self, signer: FileSigner, path: Path) -> Path:
        started = time.monotonic()
        try:
            return signer.sign_file(path)
        finally:
            self._event("sign", path.name, started)

    def _artifact(self, stage: Path, path: Path, fmt: str, compression: str,
                  signer: FileSigner | None, digest: str | None = None) -> Artifact:
        """``digest``: the file's SHA-256 when already known (the raw copy's is the raw's)."""
        if digest is None:
            started = time.monotonic()
            digest = self.sha256(path)
            self._event("checksum", path.name, started)
        signature = self._sign(signer, path).name if signer is not None else None
        return Artifact(path.name, fmt, compression, path.stat().st_size, digest, signature,
                        signer.sig_alg if signer is not None else None)


def _check_extra(files: Iterable[Path]) -> None:
    for path in files:
        if not path.is_file():
            raise ExportError(f"extra file {path} does not exist")


QEMU_PROGRESS = re.compile(r"\(\s*(\d+(?:\.\d+)?)/100%\)")


def _qemu_progress(report: Callable[[int, int], None], size: int) -> Callable[[str], None]:
    """An output line handler turning ``qemu-img -p`` percentages into bytes converted."""

    def seen(line: str) -> None:
        found = QEMU_PROGRESS.search(line)
        if found:
            report(int(float(found.group(1)) * size / 100), size)

    return seen


def _kind_of(name: str) -> str:
    if name.endswith(".spdx.json"):
        return "sbom-spdx"
    if name.endswith(".cdx.json"):
        return "sbom-cyclonedx"
    return "extra"
