"""``BuildOptions(check_reproducible=True)`` (``build --check-reproducible``, issue 10): after
the build, a second build in a fresh workspace and output directory with every cache off,
from the first build's lock, then every output compared byte for byte.

Hermetic and without root: the real validate, packages (a signed test archive on
127.0.0.1), sign and finalize stages; stand-in compose and configuration stages (installing
and configuring need root) that write a small disk from a tree, the configuration stand-in
running a spec-like script in the tree: ``date +%s%N`` makes the build non-reproducible.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from imagecomposer.cli.main import main
from imagecomposer.compose.disk import assemble, plan_layout
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import NotReproducible, UsageError
from imagecomposer.foundation.events import BuildEnded, Event
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.inspect.outputs import OutputDifference, OutputsReport
from imagecomposer.pipeline import reproduce
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.inputs import ComposeInput, ConfigurationInput
from imagecomposer.pipeline.stages import DEFAULT_STAGES, ComposeStage, ConfigurationStage
from imagecomposer.spec.model import Base, Disk, Image, Output, Partition, Spec
from tests.fixtures.debrepo import served_debian

MIB = 1 << 20


class StandinCompose(ComposeStage):
    def run(self, ctx: BuildContext, inputs: ComposeInput) -> None:
        (ctx.installed_tree / "var/lib").mkdir(parents=True, exist_ok=True)


@attrs.define
class StandinConfiguration(ConfigurationStage):
    """A small disk from a tree, after ``script`` ran in it (a spec's post_install)."""

    script: str = ""

    def run(self, ctx: BuildContext, inputs: ConfigurationInput) -> None:
        work = ctx.workspace.root / "tmp-standin"
        tree = work / "root"
        (tree / "etc").mkdir(parents=True)
        (tree / "etc/hostname").write_text("standin\n")
        subprocess.run(["sh", "-c", self.script or "true"], cwd=tree, check=True)
        layout = plan_layout(Disk(None, "gpt", (Partition("root", "root", 24 * MIB, "ext4",
                                                          "/"),)), seed=ctx.name)
        ctx.raw_path.parent.mkdir(parents=True, exist_ok=True)
        assemble(layout, {"root": tree}, ctx.raw_path, workdir=work, epoch=ctx.epoch()[0])
        atomic_write(ctx.layout_path, json.dumps({"table": "gpt"}))


def stages(script: str = "") -> tuple[object, ...]:
    swap = {"compose": StandinCompose(), "configuration": StandinConfiguration(script=script)}
    return tuple(swap.get(s.name, s) for s in DEFAULT_STAGES)


SPEC = Spec(image=Image("repro", Base("debian", "12")),
            output=Output(formats=("raw", "qcow2"), sbom=()))


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Config]:
    with served_debian(tmp_path) as config:
        yield config


def leftovers(config: Config) -> list[str]:
    return sorted(p.name for p in config.core.work_dir.iterdir()
                  if p.name.startswith("check-reproducible-"))


def test_a_reproducible_build_passes_the_check(config: Config, tmp_path: Path) -> None:
    events: list[Event] = []
    pipeline = ImagePipeline(config, events=events.append, stages=stages())  # type: ignore[arg-type]

    report = pipeline.build(SPEC, BuildOptions(output_dir=tmp_path / "out",
                                               check_reproducible=True))

    found = report.reproducibility
    assert isinstance(found, OutputsReport) and found.identical
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert list(found.compared) == names and {"repro.raw", "repro.qcow2", "manifest.json",
                                              "repro.lock.json", "SHA256SUMS"} <= set(names)
    assert found.summary() == f"reproducible: {len(names)} files compared, all byte-identical"
    ended = [(e.build, e.ok) for e in events if isinstance(e, BuildEnded)]
    assert ended == [("repro (check-reproducible)", True), ("repro", True)]
    assert leftovers(config) == []  # the second build's directories are removed


def test_a_date_written_by_a_script_fails_the_check_and_names_the_file(
        config: Config, tmp_path: Path) -> None:
    pipeline = ImagePipeline(config, stages=stages("date +%s%N > etc/build-stamp"))  # type: ignore[arg-type]

    with pytest.raises(NotReproducible) as caught:
        pipeline.build(SPEC, BuildOptions(output_dir=tmp_path / "out",
                                          check_reproducible=True))

    report = caught.value.report
    assert isinstance(report, OutputsReport)
    assert caught.value.headline.startswith("Not reproducible: a second build of repro ")
    differ = {d.name for d in report.differences}
    assert {"repro.raw", "repro.qcow2", "SHA256SUMS", "manifest.json"} <= differ
    raw = next(d for d in report.differences if d.name == "repro.raw")
    files = raw.partitions[0].files
    assert files is not None and [f.path for f in files] == ["/etc/build-stamp"]
    assert "~ /etc/build-stamp (sha256, first differing byte at offset" in str(caught.value)
    assert leftovers(config) == []


def test_the_cli_prints_the_report_and_exits_1(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's wiring: the option reaches BuildOptions; NotReproducible is the report on
    stdout, one ERROR line on stderr and exit code 1 (the build itself is tested above)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IMAGECOMPOSER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMAGECOMPOSER_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("IMAGECOMPOSER_CONFIG", raising=False)
    seen: list[BuildOptions] = []

    def build(self: ImagePipeline, spec: Spec, options: BuildOptions) -> None:
        seen.append(options)
        raise NotReproducible("Not reproducible: test", OutputsReport(
            "a", "b", ("x.raw",), (OutputDifference("x.raw", "only in A", 1, None),)))

    monkeypatch.setattr(ImagePipeline, "build", build)
    spec = tmp_path / "spec.yml"
    spec.write_text("image: {name: repro, base: {os: debian, version: '12'}}\n")
    assert main(["build", str(spec), "--check-reproducible"]) == 1
    assert [o.check_reproducible for o in seen] == [True]
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == ("not reproducible: 1 of 1 files differ between two "
                                   "builds: x.raw")
    assert "x.raw: only in A (1 bytes)" in out
    assert [line for line in err.splitlines() if "ERROR" in line] == \
        ["ERROR: Not reproducible: test"]


def test_check_reproducible_needs_finalize(config: Config) -> None:
    for options in (BuildOptions(until="compose", check_reproducible=True),
                    BuildOptions(skip=("finalize",), check_reproducible=True)):
        with pytest.raises(UsageError, match="--check-reproducible"):
            ImagePipeline(config).build(SPEC, options)


def test_the_outputs_of_an_earlier_build_are_checked_from_their_lock(
        config: Config, tmp_path: Path) -> None:
    """``ImagePipeline.check_reproducible(spec, output_dir)`` (``imagecomposer.
    check_reproducible``): only the second build, compared with outputs already there; a
    byte changed in one of them since is found."""
    pipeline = ImagePipeline(config, stages=stages())  # type: ignore[arg-type]
    out = tmp_path / "out"
    pipeline.build(SPEC, BuildOptions(output_dir=out))
    assert pipeline.check_reproducible(SPEC, out).identical
    sums = (out / "SHA256SUMS").read_bytes()
    (out / "SHA256SUMS").write_bytes(sums[:10] + bytes([sums[10] ^ 1]) + sums[11:])

    with pytest.raises(NotReproducible) as caught:
        pipeline.check_reproducible(SPEC, out, BuildOptions(keep_temp=True))

    report = caught.value.report
    assert isinstance(report, OutputsReport)
    [difference] = report.differences
    assert (difference.name, difference.first_byte and difference.first_byte.offset) == \
        ("SHA256SUMS", 10)
    assert leftovers(config) != []  # --keep-temp keeps the second build's directories


def test_randomized_signatures_are_left_out(tmp_path: Path) -> None:
    """ECDSA and RSA-PSS signatures differ at every signing: with such a key (the manifest's
    sig_alg) the files carrying signatures are exempt; Ed25519 and RSA PKCS#1 v1.5 are
    deterministic and compared like every other file."""
    names = ("a.raw", "a.raw.sig", "a.provenance.intoto.json", "manifest.json", "SHA256SUMS",
             "SHA256SUMS.sig", "a.lock.json")
    for name in names:
        (tmp_path / name).write_text("x")
    for algorithm, exempt in (("ecdsa-sha256", True), ("rsa-pss-sha256", True),
                              ("ed25519", False), ("rsa-pkcs1-sha256", False), (None, False)):
        (tmp_path / "manifest.json").write_text(json.dumps({"sig_alg": algorithm}))
        assert reproduce.exempt_names(tmp_path) == (
            ("SHA256SUMS", "SHA256SUMS.sig", "a.provenance.intoto.json", "a.raw.sig",
             "manifest.json") if exempt else ()), algorithm
