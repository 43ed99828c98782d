"""``build --check-reproducible``: after a build, build the same spec again from the first
build's lock, in a fresh workspace, cache directory and output directory with every cache
off, and compare every output byte for byte (:func:`imagecomposer.inspect.outputs.
compare_outputs`, which says where outputs differ, reading disks offline).

Both builds take the same epoch: the second installs the first's lock (``--locked``), whose
newest repository date is the epoch unless ``SOURCE_DATE_EPOCH`` is set, and it is set or not
for both (same process). Detached signatures made with a randomized algorithm (ECDSA,
RSA-PSS) differ at every signing; with such a key the files that carry them (every ``.sig``,
the provenance, ``manifest.json``, ``SHA256SUMS``) are left out of the comparison and the
report says so.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import attrs

from imagecomposer.config.model import Config, without_caches
from imagecomposer.foundation.errors import NotReproducible, UsageError
from imagecomposer.inspect.outputs import OutputsReport, compare_outputs
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec.model import STAGES, Spec

log = logging.getLogger("imagecomposer.pipeline")

RANDOMIZED = ("ecdsa", "rsa-pss")  # signature algorithms whose signatures differ each time
TAG = "check-reproducible"  # the second build's events: build="NAME (check-reproducible)"
PREFIX = f"{TAG}-"


def check_options(options: BuildOptions) -> None:
    """UsageError when ``--check-reproducible`` cannot go with the other options."""
    if not options.check_reproducible:
        return
    if options.until not in (None, STAGES[-1]):
        raise UsageError(f"--check-reproducible compares the outputs of finalize: it cannot "
                         f"stop after --stage {options.until}")
    if "finalize" in options.skip:
        raise UsageError("--check-reproducible compares the outputs of finalize: it cannot "
                         "skip it")


@attrs.frozen
class Rebuild:
    """Where and how the second build runs: its own work, cache and output directories
    under ``base`` (in the work directory), every cache off, the first build's lock."""

    base: Path
    config: Config
    options: BuildOptions

    @property
    def output_dir(self) -> Path:
        return self.base / "out"


def plan_rebuild(config: Config, spec: Spec, options: BuildOptions,
                 first_output: Path) -> Rebuild:
    lock = first_output / f"{spec.image.name}.lock.json"
    if not lock.is_file():
        raise UsageError(f"--check-reproducible: the build wrote no lock at {lock}")
    config.core.work_dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=config.core.work_dir))
    core = attrs.evolve(config.core, work_dir=base / "work", cache_dir=base / "cache")
    second = without_caches(attrs.evolve(config, core=core))
    rebuild_options = attrs.evolve(options, check_reproducible=False, no_cache=True,
                                   locked=lock, output_dir=base / "out", until=None,
                                   skip=tuple(s for s in options.skip if s != "finalize"),
                                   wait=False)
    return Rebuild(base, second, rebuild_options)


def exempt_names(output_dir: Path) -> tuple[str, ...]:
    """The outputs left out of the comparison: with a randomized signature algorithm (the
    manifest's ``sig_alg``), the files that carry or list signatures."""
    try:
        algorithm = json.loads((output_dir / "manifest.json").read_text()).get("sig_alg")
    except (OSError, ValueError, AttributeError):
        return ()
    if not isinstance(algorithm, str) or not algorithm.startswith(RANDOMIZED):
        return ()
    names = {p.name for p in output_dir.iterdir() if p.is_file()
             and (p.name.endswith((".sig", ".provenance.intoto.json"))
                  or p.name in ("manifest.json", "SHA256SUMS"))}
    return tuple(sorted(names))


def compare_builds(name: str, first: Path, rebuild: Rebuild, seconds: float
                   ) -> OutputsReport:
    """Compare the two builds' outputs; :class:`NotReproducible` when they differ."""
    report = compare_outputs(first, rebuild.output_dir, exempt=exempt_names(first),
                             workdir=rebuild.base)
    if not report.identical:
        names = ", ".join(d.name for d in report.differences)
        raise NotReproducible(
            f"Not reproducible: a second build of {name} from the same lock and epoch "
            f"({seconds:.0f} s, every cache off) wrote other bytes in "
            f"{len(report.differences)} of {len(report.compared)} output files: {names}",
            report)
    return report


def finish(rebuild: Rebuild, *, keep: bool, failed: bool) -> None:
    """Remove the second build's directories (kept with ``--keep-temp``)."""
    if keep:
        log.info("the second build's outputs are kept in %s (--keep-temp)",
                 rebuild.output_dir)
        return
    if failed:
        log.info("the second build's outputs were removed: rerun with --keep-temp to keep "
                 "them")
    shutil.rmtree(rebuild.base, ignore_errors=True)
