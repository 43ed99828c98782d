"""The command-line entry point: argparse wiring only.

Every subcommand is a thin call into the library (see :mod:`imagecomposer.cli.commands`);
anything the CLI does, a Python caller can do with the same objects. Errors map to exit
codes: 0 ok, 1 build or validation failure, 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from imagecomposer import __version__
from imagecomposer.cli import commands, inspect_cmds, logsetup
from imagecomposer.foundation.errors import BuildInterrupted, ImageComposerError, UsageError
from imagecomposer.foundation.settings import (
    CACHE_NAMES,
    COMPRESSIONS,
    FORMATS,
    LOG_LEVELS,
    SBOM_FORMATS,
    STAGES,
)

log = logging.getLogger("imagecomposer")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagecomposer",
        description="Compose customized, bootable, signed OS images from a YAML build spec.")
    parser.add_argument("--config", type=Path, help="global configuration file")
    parser.add_argument("--log-level", choices=LOG_LEVELS,
                        help="console log level (default: from config, else info)")
    parser.add_argument("--log-file", type=Path, help="also write a debug log to this file")
    parser.add_argument("--version", action="version", version=f"imagecomposer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build one or more images from specs")
    b.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    b.add_argument("--stage", choices=STAGES, help="build up to and including this stage")
    b.add_argument("--skip-stage", action="append", default=[], choices=STAGES,
                   help="skip a stage (repeatable; skipping validate is not recommended)")
    b.add_argument("--no-cache", action="store_true",
                   help="rerun every stage and use neither the package nor the image cache")
    b.add_argument("--no-package-cache", action="store_true",
                   help="download packages into a throwaway store")
    b.add_argument("--no-image-cache", action="store_true",
                   help="neither restore from nor store into the image cache")
    b.add_argument("--timeout", help="abort the build after this long (e.g. 30m, 1h30m, 90s)")
    b.add_argument("--parallel", type=int, metavar="N", help="parallel work inside a stage")
    b.add_argument("--keep-temp", action="store_true", help="keep temporary files for debugging")
    b.add_argument("--locked", action="store_true",
                   help="install exactly the lock of a previous build (offline when cached)")
    b.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a spec variable (repeatable)")
    b.add_argument("-o", "--output", type=Path, help="output directory")
    b.add_argument("--wait", action="store_true",
                   help="if a build of the same spec is running, wait for it instead of "
                        "failing at once")

    v = sub.add_parser("validate", help="validate specs without building")
    v.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    v.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")

    sc = sub.add_parser("schema", help="print the build spec JSON Schema (for editors)")
    which = sc.add_mutually_exclusive_group()
    which.add_argument("--inspect", action="store_true", help="the inspect JSON output's schema")
    which.add_argument("--compare", action="store_true", help="the compare JSON output's schema")

    c = sub.add_parser("config", help="global configuration")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    ci = csub.add_parser("init", help="write a commented configuration file")
    ci.add_argument("path", type=Path, nargs="?", default=Path("imagecomposer.yml"))
    ci.add_argument("--force", action="store_true", help="overwrite an existing file")
    csub.add_parser("show", help="print the effective configuration and where each value is from")

    k = sub.add_parser("cache", help="the caches: packages, metadata, trees, initramfs, images")
    ksub = k.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    for name, text in (("list", "one line per cache (entries, size, limits, use)"),
                       ("prune", "remove damaged entries, then what the limits evict"),
                       ("clean", "empty the caches")):
        kp = ksub.add_parser(name, help=text)
        kp.add_argument("--cache", action="append", dest="caches", choices=CACHE_NAMES,
                        metavar="NAME", help=f"only this cache (repeatable): "
                                             f"{', '.join(CACHE_NAMES)}; also lists its entries")
        kp.add_argument("-v", "--verbose", action="store_true",
                        help="also list the entries")
        kp.add_argument("--packages-only", dest="caches", action="append_const",
                        const="packages", help=argparse.SUPPRESS)  # before --cache
        kp.add_argument("--images-only", dest="caches", action="append_const",
                        const="images", help=argparse.SUPPRESS)
        if name != "list":
            kp.add_argument("--dry-run", action="store_true", help="only say what would go")

    r = sub.add_parser("resolve", help="resolve a spec's packages without building")
    r.add_argument("spec", type=Path)
    r.add_argument("--explain", metavar="NAME", help="say why a package is in the set")
    r.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--lock", type=Path, help="also write the lock to this file")

    e = sub.add_parser("export", help="convert and compress an existing raw image")
    e.add_argument("image", type=Path)
    e.add_argument("--format", action="append", choices=FORMATS, dest="formats",
                   help="output format (repeatable; default qcow2)")
    e.add_argument("--compression", choices=COMPRESSIONS, default="none")
    e.add_argument("-o", "--output", type=Path, help="output directory (default: next to IMAGE)")

    s = sub.add_parser("sign", help="write a detached signature of any file")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE")
    s.add_argument("--key", type=Path, required=True, help="PEM private key")
    s.add_argument("--cert", type=Path, help="X.509 certificate to ship with the signature")
    s.add_argument("--passphrase-file", type=Path)
    s.add_argument("--passphrase-env", metavar="VAR")

    vf = sub.add_parser("verify", help="check signatures, SHA256SUMS and manifest of outputs")
    vf.add_argument("directory", type=Path)
    vf.add_argument("--key", type=Path, required=True, help="PEM public key or certificate")

    sb = sub.add_parser("sbom", help="write SBOMs for a lock and an installed root tree")
    sb.add_argument("lock", type=Path)
    sb.add_argument("tree", type=Path)
    sb.add_argument("--format", action="append", choices=SBOM_FORMATS, dest="formats")
    sb.add_argument("-o", "--output", type=Path, default=Path())
    sb.add_argument("--name", default="image", help="name of the described image")

    bt = sub.add_parser("boot", help="boot an image in QEMU until a login prompt")
    bt.add_argument("image", type=Path)
    bt.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    bt.add_argument("--secure-boot", action="store_true",
                    help="enforce Secure Boot with --sb-cert enrolled")
    bt.add_argument("--sb-cert", type=Path, help="certificate to enroll in db")
    bt.add_argument("--bios", action="store_true", help="boot with SeaBIOS instead of OVMF")
    bt.add_argument("--console-log", type=Path, help="write the serial console here")

    inspect_cmds.add_parsers(sub)
    sub.add_parser("version", help="print the version")
    return parser


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise BuildInterrupted(f"Interrupted by signal {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])

    logsetup.configure(args.log_level or "info", args.log_file)
    signal.signal(signal.SIGTERM, _raise_interrupted)

    try:
        return commands.dispatch(args)
    except KeyboardInterrupt:
        log.error("Interrupted; cleaned up")
        return BuildInterrupted.exit_code
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        log.error("%s", exc)
        return exc.exit_code
    except ImageComposerError as exc:
        log.error("%s", exc)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
