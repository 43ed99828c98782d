"""The command-line entry point: argparse wiring only.

Every subcommand is a thin call into the library (see :mod:`imagecomposer.cli.commands`);
anything the CLI does, a Python caller can do with the same objects. Errors map to exit
codes: 0 ok, 1 build or validation failure, 2 usage, 130 interrupted, 141 when the reader
of the output went away (``imagecomposer schema | head``: quietly, no message).

A failure is printed once, as one ``ERROR:`` line (or block) naming the stage it ended
(:func:`imagecomposer.foundation.errors.describe`); an ``OSError`` from anywhere is one line
naming the path (``Permission denied: /srv/out (Operation not permitted)``), never a
traceback (``--log-level debug`` adds the traceback, for a bug report).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from imagecomposer import __version__
from imagecomposer.cli import cluster_cmds, commands, inspect_cmds, logsetup
from imagecomposer.foundation.errors import (
    BuildInterrupted,
    ImageComposerError,
    UsageError,
    describe,
)
from imagecomposer.foundation.settings import (
    CACHE_NAMES,
    COMPRESSIONS,
    FORMATS,
    LOG_FORMATS,
    LOG_LEVELS,
    SBOM_FORMATS,
    STAGES,
)
from imagecomposer.pipeline.engine import parse_duration

log = logging.getLogger("imagecomposer")

BROKEN_PIPE = 128 + signal.SIGPIPE  # what a tool killed by SIGPIPE exits with

BUILD_EXAMPLES = """\
examples:
  imagecomposer build examples/debian-12-minimal.yml
      build the image; the outputs go to examples/output/debian-12-minimal/
  image-composer build web.yml -o out/web --set version=1.2.3
      the seed's name works too; -o chooses the output directory, --set a spec variable
  imagecomposer build web.yml --stage packages
      resolve and download only, then print where the lock is (rerun without --stage to
      continue: the finished stages are reused)
  imagecomposer build web.yml --locked
      install exactly the lock of the previous build (offline when the packages are cached)
  imagecomposer build web.yml --check-reproducible
      build, build again with every cache off, and check that the outputs are identical
  imagecomposer build web.yml --no-cache --timeout 30m
      rebuild everything, give up after 30 minutes
  imagecomposer build a.yml b.yml
      several specs at once, each in its own process
  imagecomposer --log-format json build web.yml 2> events.jsonl
      one JSON object per event on stderr, for CI
  imagecomposer --log-level debug --log-file build.log build web.yml
      every host command and its output (the log file always gets them, with timestamps)
"""


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="set a spec variable (${NAME} in the spec; repeatable)")


def _spec_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("specs", nargs="+", type=Path, metavar="SPEC",
                   help=f"build spec file(s) (YAML) to {what}")


def _build_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("build", help="build one or more images from specs",
                       description="Build images: validate → packages → compose → "
                                   "configuration → sign → finalize. Stages whose inputs "
                                   "did not change since the last build are skipped.",
                       epilog=BUILD_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _spec_args(b, "build (several: built in parallel processes)")
    b.add_argument("--stage", choices=STAGES,
                   help="build up to and including this stage, then print where its result "
                        "is in the workspace")
    b.add_argument("--skip-stage", action="append", default=[], choices=STAGES,
                   help="skip a stage (repeatable; skipping validate is not recommended)")
    b.add_argument("--no-cache", action="store_true",
                   help="rerun every stage and use neither the package nor the image cache")
    b.add_argument("--no-package-cache", action="store_true",
                   help="download packages into a throwaway store")
    b.add_argument("--no-image-cache", action="store_true",
                   help="neither restore from nor store into the image cache")
    b.add_argument("--timeout", type=_duration, metavar="DURATION",
                   help="abort the build after this long (e.g. 30m, 1h30m, 90s, or seconds)")
    b.add_argument("--parallel", type=int, metavar="N", help="parallel work inside a stage")
    b.add_argument("--keep-temp", action="store_true", help="keep temporary files for debugging")
    b.add_argument("--locked", action="store_true",
                   help="install exactly the lock of a previous build (offline when cached)")
    _set_option(b)
    b.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="output directory (default: the spec's output.directory, else "
                        "output/NAME next to the spec)")
    b.add_argument("--wait", action="store_true",
                   help="if a build of the same spec is running, wait for it instead of "
                        "failing at once")
    b.add_argument("--check-reproducible", action="store_true",
                   help="then build the spec again from the same lock in a fresh workspace "
                        "with every cache off, and compare every output byte for byte "
                        "(exit code 1 and a report of where they differ if they do)")
    cluster_cmds.add_build_options(b)


def _cache_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
                        const="packages", help="same as --cache packages")
        kp.add_argument("--images-only", dest="caches", action="append_const",
                        const="images", help="same as --cache images")
        if name != "list":
            kp.add_argument("--dry-run", action="store_true", help="only say what would go")


def _tool_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("resolve", help="resolve a spec's packages without building")
    r.add_argument("spec", type=Path, metavar="SPEC", help="build spec file (YAML)")
    r.add_argument("--explain", metavar="NAME", help="say why a package is in the set")
    _set_option(r)
    r.add_argument("--lock", type=Path, metavar="FILE",
                   help="also write the lock to this file (before anything is printed)")

    e = sub.add_parser("export", help="convert and compress an existing raw image")
    e.add_argument("image", type=Path, metavar="IMAGE", help="raw disk image to convert")
    e.add_argument("--format", action="append", choices=FORMATS, dest="formats",
                   help="output format (repeatable; default qcow2)")
    e.add_argument("--compression", choices=COMPRESSIONS, default="none",
                   help="compress each output (default none)")
    e.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="output directory (default: next to IMAGE)")

    s = sub.add_parser("sign", help="write a detached signature of any file")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="file(s) to sign; each gets FILE.sig next to it")
    s.add_argument("--key", type=Path, required=True, metavar="PEM",
                   help="PEM private key (RSA, ECDSA or Ed25519)")
    s.add_argument("--cert", type=Path, metavar="PEM",
                   help="X.509 certificate to ship with the signature")
    s.add_argument("--passphrase-file", type=Path, metavar="FILE",
                   help="file holding the key's passphrase (first line)")
    s.add_argument("--passphrase-env", metavar="VAR",
                   help="environment variable holding the key's passphrase")

    vf = sub.add_parser("verify", help="check SHA256SUMS, the manifest and signatures of outputs")
    vf.add_argument("directory", type=Path, metavar="DIR",
                    help="a build's output directory")
    vf.add_argument("--key", type=Path, metavar="PEM",
                    help="PEM public key or certificate: also check every signature "
                         "(without it, signatures are not checked, and it says so)")

    sb = sub.add_parser("sbom", help="write SBOMs for a lock and an installed root tree",
                        description="Write SBOMs for a lock and the root tree it was "
                                    "installed into, created at the build epoch of the lock "
                                    "(SOURCE_DATE_EPOCH, else the newest date of its "
                                    "repositories), as a build's are.")
    sb.add_argument("lock", type=Path, metavar="LOCK", help="lock file (NAME.lock.json)")
    sb.add_argument("tree", type=Path, metavar="TREE",
                    help="root tree the lock was installed into")
    sb.add_argument("--format", action="append", choices=SBOM_FORMATS, dest="formats",
                    help="SBOM format (repeatable; default all)")
    sb.add_argument("-o", "--output", type=Path, default=Path(), metavar="DIR",
                    help="where to write the SBOMs (default: the current directory)")
    sb.add_argument("--name", default="image", help="name of the described image")
    sb.add_argument("--image-version", default="0.0.0", metavar="VERSION",
                    help="version of the described image (the spec's image.version)")
    sb.add_argument("--image", type=Path, metavar="RAW",
                    help="the raw disk image described: its SHA-256 and file name go into "
                         "the SBOM, as in the SBOMs a build writes next to it")

    bt = sub.add_parser("boot", help="boot an image in QEMU until a login prompt",
                        description="Boot a disk image (raw, qcow2, vhd, vhdx, vmdk, vdi; "
                                    "compressed ones are decompressed to a temporary file) "
                                    "in QEMU until its login prompt appears on the serial "
                                    "console. The image is never changed.")
    bt.add_argument("image", type=Path, metavar="IMAGE", help="disk image, any output format")
    bt.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                    help="seconds to wait for the login prompt (default 300)")
    bt.add_argument("--secure-boot", action="store_true",
                    help="enforce Secure Boot with --sb-cert enrolled")
    bt.add_argument("--sb-cert", type=Path, metavar="PEM", help="certificate to enroll in db")
    bt.add_argument("--bios", action="store_true", help="boot with SeaBIOS instead of OVMF")
    bt.add_argument("--console-log", type=Path, metavar="FILE",
                    help="write the serial console here")
    bt.add_argument("--ssh", metavar="COMMAND",
                    help="then run COMMAND in the image over SSH (127.0.0.1, a forwarded "
                         "port) and print its output; the exit code is 1 if it fails")
    bt.add_argument("--ssh-user", default="root", metavar="USER",
                    help="user for --ssh (default root)")
    bt.add_argument("--ssh-wait", type=float, default=300.0, metavar="SECONDS",
                    help="seconds to wait for sshd after the login prompt (default 300)")
    bt.add_argument("--ssh-key", type=Path, metavar="FILE",
                    help="private key for --ssh (default: ssh's own identities)")


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "worker":
        return cluster_cmds.cmd_worker(args)
    if args.command == "build" and args.cluster:
        return cluster_cmds.cmd_build_on_cluster(args)
    return commands.dispatch(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagecomposer",
        description="Compose customized, bootable, signed OS images from a YAML build spec.")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="global configuration file")
    parser.add_argument("--log-level", choices=LOG_LEVELS,
                        help="console log level (default: from config, else info; debug adds "
                             "every host command and its output)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="console log format: text lines, or json: one JSON object per "
                             "event on stderr (see docs/cli.md)")
    parser.add_argument("--log-file", type=Path, metavar="FILE",
                        help="also write the full debug log, with timestamps, to this file")
    parser.add_argument("--version", action="version", version=f"imagecomposer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _build_parser(sub)
    v = sub.add_parser("validate", help="validate specs without building")
    _spec_args(v, "validate")
    _set_option(v)

    sc = sub.add_parser("schema", help="print the build spec JSON Schema (for editors)")
    which = sc.add_mutually_exclusive_group()
    which.add_argument("--inspect", action="store_true", help="the inspect JSON output's schema")
    which.add_argument("--compare", action="store_true", help="the compare JSON output's schema")

    c = sub.add_parser("config", help="global configuration")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    ci = csub.add_parser("init", help="write a commented configuration file")
    ci.add_argument("path", type=Path, nargs="?", default=Path("imagecomposer.yml"),
                    metavar="PATH", help="where to write it (default ./imagecomposer.yml)")
    ci.add_argument("--force", action="store_true", help="overwrite an existing file")
    csub.add_parser("show", help="print the effective configuration and where each value is from")

    _cache_parser(sub)
    _tool_parsers(sub)
    inspect_cmds.add_parsers(sub)
    cluster_cmds.add_parsers(sub)
    sub.add_parser("version", help="print the version")
    return parser


def subparser(parser: argparse.ArgumentParser, command: str | None
              ) -> argparse.ArgumentParser:
    """The parser of ``command`` (for its usage line), else ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            found: argparse.ArgumentParser = action.choices[command]
            return found
    return parser


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise BuildInterrupted(f"Interrupted by signal {signal.Signals(signum).name}")


def _quiet_stdout() -> None:
    """The reader of stdout is gone: send what is left (and Python's final flush) nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    try:
        logsetup.configure(args.log_level or "info", args.log_file, args.log_format)
        signal.signal(signal.SIGTERM, _raise_interrupted)
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:
        log.error("Interrupted; cleaned up")
        return BuildInterrupted.exit_code
    except UsageError as exc:
        subparser(parser, args.command).print_usage(sys.stderr)
        log.error("%s", exc)
        return exc.exit_code
    except ImageComposerError as exc:
        log.error("%s", describe(exc))
        log.debug("where it failed:", exc_info=True)
        return exc.exit_code
    except OSError as exc:  # from anywhere, as one line naming the path
        log.error("%s: %s", args.command, describe(exc))
        log.debug("where it failed:", exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
