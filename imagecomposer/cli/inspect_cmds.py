"""``inspect`` and ``compare``: their arguments and handlers (kept apart from the other
subcommands; :mod:`imagecomposer.cli.main` only calls :func:`add_parsers`).

Like :mod:`imagecomposer.cli.commands`, handlers import the library when they run, so that
building the parser stays cheap for every other subcommand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from imagecomposer.cli import logsetup
from imagecomposer.foundation.settings import COMPARE_MODES, REPORT_FORMATS
from imagecomposer.inspect import Image, compare, schema_text
from imagecomposer.inspect.render import to_json, to_yaml


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser("inspect", help="what is in an image (offline: no mount, no root)")
    i.add_argument("image", type=Path, metavar="IMAGE",
                   help="disk image (any output format, compressed or not)")
    i.add_argument("--format", choices=REPORT_FORMATS, default="text",
                   help="report format (default text)")
    i.add_argument("--extract-sbom", type=Path, metavar="DIR",
                   help="copy the SBOMs the image carries into DIR")
    i.add_argument("--hash", action="store_true",
                   help="hash the image file (and check it against a manifest next to it)")
    i.add_argument("--no-verity-check", action="store_true",
                   help="do not recompute the dm-verity hash tree of the data")
    i.add_argument("--workdir", type=Path, help="where temporary conversions go")

    c = sub.add_parser("compare", help="what changed between two images, SBOMs or locks")
    c.add_argument("a", type=Path, metavar="A", help="first image, SBOM or lock")
    c.add_argument("b", type=Path, metavar="B", help="second image, SBOM or lock")
    c.add_argument("--format", choices=REPORT_FORMATS, default="text",
                   help="report format (default text)")
    c.add_argument("--mode", choices=COMPARE_MODES, default="summary",
                   help="how deep to look: summary, packages, files or full (default "
                        "summary)")
    c.add_argument("--hash", action="store_true",
                   help="compare sha256 of both disks (reported) instead of their bytes")
    c.add_argument("--workdir", type=Path, help="where temporary conversions go")


def _quiet(args: argparse.Namespace) -> None:
    """The report is the output: tool command lines only with --log-level info/debug."""
    if args.log_level is None:
        logsetup.configure("warning", args.log_file, args.log_format)


def cmd_inspect(args: argparse.Namespace) -> int:

    _quiet(args)
    with Image.open(args.image, workdir=args.workdir) as image:
        report = image.inspect(verify_verity=not args.no_verity_check, hash=args.hash)
        if args.extract_sbom is not None:
            for path in image.extract_sboms(args.extract_sbom):
                print(f"extracted {path}", file=sys.stderr)
    _print(args.format, report.to_dict(), report.text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:

    _quiet(args)
    report = compare(args.a, args.b, mode=args.mode, hash=args.hash, workdir=args.workdir)
    _print(args.format, report.to_dict(), report.text)
    return 0


def _print(fmt: str, data: dict[str, object], text: Callable[[], str]) -> None:

    out = {"json": lambda: to_json(data), "yaml": lambda: to_yaml(data)}.get(fmt, text)()
    sys.stdout.write(out)


def schema_for(args: argparse.Namespace) -> str | None:
    """The inspect or compare output schema when ``schema --inspect/--compare`` asks."""

    for name in ("inspect", "compare"):
        if getattr(args, name, False):
            return schema_text(name)
    return None


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "inspect": cmd_inspect, "compare": cmd_compare}
