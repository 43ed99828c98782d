"""The commands as the seed and the docs promise them (issue 12, "Commands"): help for every
argument and examples in ``build --help``, ``image-composer`` as a second name, ``verify``
without a key. Through a real process where the point is what a user sees."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from imagecomposer.cli.main import build_parser
from imagecomposer.export.finalize import finalize
from imagecomposer.spec.model import Base, Image, Output, Spec
from tests.cli.conftest import EXAMPLES, Run, environment


def every_action(parser: argparse.ArgumentParser, where: str = "imagecomposer"
                 ) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_action(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield f"{where} {'/'.join(action.option_strings) or action.dest}", action


def test_every_argument_has_help() -> None:
    found = list(every_action(build_parser()))
    assert len(found) > 60
    missing = [where for where, action in found
               if not action.help or action.help == argparse.SUPPRESS]
    assert missing == []


def test_build_help_has_examples(cli: Run) -> None:
    text = cli("build", "--help").stdout
    examples = text.split("examples:\n", 1)[1]
    commands = [line.strip() for line in examples.splitlines()
                if line.strip().startswith(("imagecomposer ", "image-composer "))]
    assert len(commands) >= 6
    assert "--stage packages" in examples and "--log-format json" in examples
    assert "--set NAME=VALUE      set a spec variable" in text
    assert "build spec file(s) (YAML)" in text  # the positional too
    sign = cli("sign", "--help").stdout
    assert "--passphrase-file FILE" in sign and "passphrase (first line)" in sign


def test_image_composer_is_a_second_name(tmp_path: Path) -> None:
    """The seed's command lines (``image-composer validate ...``) work as written."""
    script = Path(sys.executable).parent / "image-composer"
    assert script.is_file(), "the package does not install the image-composer script"
    done = subprocess.run([str(script), "validate", str(EXAMPLES / "debian-12-minimal.yml")],
                          capture_output=True, text=True, env=environment(tmp_path),
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("debian-12-minimal.yml: valid\n")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                             check=False)
    assert version.stdout.startswith("imagecomposer ")


def unsigned_outputs(tmp_path: Path) -> Path:
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(4 << 20)
        f.write(b"a disk")
    spec = Spec(image=Image("disk", Base("debian", "12")),
                output=Output(formats=("raw", "qcow2"), sbom=()))
    out = tmp_path / "out"
    finalize(raw, spec, out)
    return out


def test_verify_without_a_key_checks_sums_and_manifest(cli: Run, tmp_path: Path) -> None:
    out = unsigned_outputs(tmp_path)
    assert (out / "manifest.json").is_file() and not list(out.glob("*.sig"))
    done = cli("verify", out)
    assert done.stdout == (f"{out}: SHA256SUMS and manifest verified; signatures were not "
                           "checked (give --key to check them)\n")

    with (out / "disk.qcow2").open("ab") as f:
        f.write(b"tampered")
    failed = cli("verify", out, check=1)
    assert "disk.qcow2: SHA256 mismatch" in failed.stderr
    assert "disk.qcow2: does not match the manifest" in failed.stderr
