"""``--parallel N`` governs all parallel work (issue 12: compression used every core with
``-T0`` and the Debian bootstrap extracted ``nproc`` packages at a time): compression,
package extraction, mksquashfs and setfiles get N, and the bytes do not depend on N."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.compose.disk import assemble, plan_layout
from imagecomposer.config.model import Config, Core
from imagecomposer.export import Exporter
from imagecomposer.families.deb import install as dpkg_install
from imagecomposer.pipeline.context import BuildContext, BuildEvents, BuildOptions
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec.model import Base, Disk, Image, Partition, Spec

M = 1 << 20


def recorder(fake_tool: Callable[[str, str], Path], tmp_path: Path, name: str,
             body: str = "") -> Path:
    """A fake ``name`` that appends its arguments, one line per call, to a file."""
    log = tmp_path / f"{name}.args"
    fake_tool(name, f'echo "$@" >> {log}\n{body}')
    return log


@pytest.mark.parametrize(("compression", "tool", "words"), [
    ("xz", "xz", "-T+3"), ("zstd", "zstd", "-T3"), ("gzip", "pigz", "-p 3")])
def test_compression_threads(compression: str, tool: str, words: str, tmp_path: Path,
                             fake_tool: Callable[[str, str], Path]) -> None:
    log = recorder(fake_tool, tmp_path, tool, 'for a; do f="$a"; done; : > "$f.out"')
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"disk")
    Exporter(parallel=3).compress(raw, compression, keep=True)
    assert f" {words} " in f" {log.read_text()} "


@pytest.mark.skipif(shutil.which("xz") is None, reason="no xz")
def test_xz_bytes_do_not_depend_on_the_threads(tmp_path: Path) -> None:
    outputs = []
    for n in (1, 2):
        raw = tmp_path / f"{n}" / "disk.raw"
        raw.parent.mkdir()
        raw.write_bytes(bytes(range(256)) * 4096)
        outputs.append(Exporter(parallel=n).compress(raw, "xz").read_bytes())
    assert outputs[0] == outputs[1]


def test_deb_extraction_slots(tmp_path: Path, fake_tool: Callable[[str, str], Path]) -> None:
    log = recorder(fake_tool, tmp_path, "xargs", "cat > /dev/null")
    dpkg_install.extract([tmp_path / "a.deb", tmp_path / "b.deb"], tmp_path / "tree",
                         parallel=1)
    assert " -P 1 " in f" {log.read_text()} "


def test_mksquashfs_processors(tmp_path: Path, fake_tool: Callable[[str, str], Path]) -> None:
    log = recorder(fake_tool, tmp_path, "mksquashfs", "exit 3")
    tree = tmp_path / "tree"
    tree.mkdir()
    layout = plan_layout(Disk(size=None, partitions=(
        Partition("usr", "generic", 8 * M, filesystem="squashfs"),)), seed="s",
        content_sizes={"usr": M})
    with pytest.raises(Exception, match="mksquashfs"):
        assemble(layout, {"usr": tree}, tmp_path / "disk.raw", workdir=tmp_path / "work",
                 parallel=1)
    assert " -processors 1" in f" {log.read_text()} "


def test_the_build_option_reaches_the_composer(tmp_path: Path) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "c", work_dir=tmp_path / "w", parallel=8))
    spec = Spec(image=Image("p", Base("debian", "12")))
    workspace = Workspace.for_spec(tmp_path / "w", "p", None)
    ctx = BuildContext(spec, config, BuildOptions(parallel=2), workspace,
                       BuildEvents("p", lambda _e: None))
    assert ctx.composer(epoch=0).config.core.parallel == 2
    assert ctx.composer(config, epoch=0).config.core.parallel == 2
