"""``imagecomposer worker`` and ``imagecomposer build --cluster URL``: distributed builds
(docs/distributed.md). Thin calls into :mod:`imagecomposer.cluster`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import attrs

from imagecomposer.cli import logsetup
from imagecomposer.cli.commands import _config, _variables
from imagecomposer.cluster.app import VISIBILITY_TIMEOUT
from imagecomposer.cluster.rotation import MIN_FREE, SPACE_CHECK
from imagecomposer.cluster.submit import submit_many
from imagecomposer.cluster.worker import WorkerSettings, host_arch, run_worker
from imagecomposer.foundation.errors import UsageError
from imagecomposer.foundation.units import human_size, parse_size

log = logging.getLogger("imagecomposer")

WORKER_EXAMPLES = """\
examples:
  imagecomposer worker --cluster redis://broker:6379/0 --shared-store /srv/ic-store
      serve builds of this host's architecture, one at a time
  imagecomposer worker --cluster redis://broker:6379/0 --secrets /etc/imagecomposer/secrets
      signing keys and passphrases the specs name are read from there (same relative path)
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="serve builds of a cluster (one at a time)",
                       description="Start a build worker: it takes builds of its "
                                   "architecture from the cluster's broker, one at a time, "
                                   "builds them with this host's configuration and caches, "
                                   "and publishes the outputs to the shared store.",
                       epilog=WORKER_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--cluster", required=True, metavar="URL",
                   help="the broker: redis://HOST:PORT/DB")
    w.add_argument("--name", help="the worker's name (default imagecomposer@HOSTNAME)")
    w.add_argument("--arch", default=host_arch(),
                   help="the architecture it builds for (default: this host's)")
    w.add_argument("--shared-store", type=Path, metavar="DIR",
                   help="the shared store (default: storage.shared_store)")
    w.add_argument("--secrets", type=Path, metavar="DIR",
                   help="where the signing keys and passphrases specs name are (by their "
                        "path relative to the spec)")
    w.add_argument("--visibility-timeout", type=float, default=VISIBILITY_TIMEOUT,
                   metavar="SECONDS",
                   help="a dead worker's build is redelivered after this long (default "
                        f"{VISIBILITY_TIMEOUT:g})")
    w.add_argument("--min-free", type=_size, default=MIN_FREE, metavar="SIZE",
                   help="after a build failed for a full disk, take no build until this much "
                        "is free in the work and cache directories (default "
                        f"{human_size(MIN_FREE)})")
    w.add_argument("--space-check", type=float, default=SPACE_CHECK, metavar="SECONDS",
                   help="how often a worker out of rotation looks at its free space "
                        f"(default {SPACE_CHECK:g})")


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size is None:
        raise argparse.ArgumentTypeError(f"{text!r}: a size in bytes or with a unit (8GiB)")
    return size


def add_build_options(b: argparse.ArgumentParser) -> None:
    b.add_argument("--cluster", metavar="URL",
                   help="build on the workers of this cluster (redis://HOST:PORT/DB) and "
                        "wait for the results")


def cmd_worker(args: argparse.Namespace) -> int:
    config = _config(args).config
    if args.shared_store is not None:
        config = attrs.evolve(config, storage=attrs.evolve(
            config.storage, shared_store=args.shared_store.resolve()))
    settings = WorkerSettings(arch=args.arch, secrets_dir=args.secrets,
                              visibility_timeout=args.visibility_timeout,
                              min_free=args.min_free, space_check=args.space_check)
    if args.name:
        settings = attrs.evolve(settings, name=args.name)
    run_worker(args.cluster, config, settings, loglevel="INFO")
    return 0


def cmd_build_on_cluster(args: argparse.Namespace) -> int:
    """``build --cluster URL a.yml b.yml``: the exit code is the worst of them."""
    local_only = [flag for flag, given in (
        ("--stage", args.stage), ("--skip-stage", args.skip_stage),
        ("--no-cache", args.no_cache), ("--locked", args.locked), ("-o", args.output),
        ("--keep-temp", args.keep_temp),
        ("--check-reproducible", args.check_reproducible)) if given]
    if local_only:
        raise UsageError(f"{', '.join(local_only)}: not supported with --cluster (each "
                         f"worker builds with its own configuration)")
    config = _config(args).config
    results = submit_many(args.specs, args.cluster, config=config,
                          variables=_variables(args.set), events=logsetup.json_events(),
                          timeout=args.timeout)
    for result in results:
        if result.ok:
            print(f"{result.spec}: built on {result.worker}: {result.output}")
        else:
            log.error("%s: %s", result.spec, result.error)
    return max(r.exit_code for r in results)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"worker": cmd_worker}
