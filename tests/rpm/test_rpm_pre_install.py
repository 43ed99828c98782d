"""pre_install scripts on the RPM path (issue 12, the seed: "Pre-installation scripts: run
before packages are installed"): the bootstrap set is installed (one rpm transaction), the
scripts run on that tree, then the rest of the lock (a second transaction).

The fixture's bootstrap set is its ``/bin/sh`` provider (fixture-sh, the host's dash): the
scripts record with shell builtins what they find.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rpm_helpers import RpmFixture
from test_rpm_install import fetch, query
from test_rpm_pipeline import _extract, example_config, example_spec

from imagecomposer.compose.composer import Composer
from imagecomposer.compose.configure.scripts import PreInstall
from imagecomposer.config.model import Config
from imagecomposer.export.manifest import layout_data
from imagecomposer.families import family
from imagecomposer.families.rpm.install import find_rpmdb
from imagecomposer.foundation.errors import ScriptFailed
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.pipeline.packages import run_packages_stage
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec import Spec
from imagecomposer.spec.model import Base, Customizations, Image, Scripts

pytestmark = pytest.mark.root

# What is in the tree when the script runs; alpha's file and its %post's log are spec
# packages' work, the rpm database the bootstrap transaction's.
RECORD = """#!/bin/sh
set -e
seen=/pre-install-seen
for path in /bin/sh /usr/lib/sysimage/rpm/rpmdb.sqlite /usr/share/alpha/data \\
    /var/alpha-post.log /usr/libexec/helper/tool; do
  if [ -e "$path" ]; then echo "present $path"; else echo "absent $path"; fi
done > "$seen"
echo "stage $IMAGECOMPOSER_STAGE script $IMAGECOMPOSER_SCRIPT" >> "$seen"
"""
SEEN = ("present /bin/sh\npresent /usr/lib/sysimage/rpm/rpmdb.sqlite\n"
        "absent /usr/share/alpha/data\nabsent /var/alpha-post.log\n"
        "absent /usr/libexec/helper/tool\nstage pre-install script record.sh\n")


def pre_install(tmp_path: Path, name: str, text: str) -> PreInstall:
    path = tmp_path / "spec" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    found = PreInstall.of(Spec(image=Image(name="rpm-pre", base=Base(os="fixture", version="1")),
                               customizations=Customizations(scripts=Scripts(
                                   pre_install=(path,)))))
    assert found is not None
    return found


def test_pre_install_runs_on_the_bootstrap_set(rpm_fixture: RpmFixture, rpm_config: Config,
                                               tmp_path: Path) -> None:
    _, lock, files = fetch(rpm_fixture, rpm_config, "alpha", "filedep",
                           directory=tmp_path / "dl")
    bootstrap = family("rpm").bootstrap(lock, files)
    assert [p.name for p in bootstrap] == ["fixture-sh"]  # provides /bin/sh, needs nothing
    assert {"alpha", "beta", "filedep", "helper"} <= {p.name for p in lock.packages}
    composer = Composer(rpm_config)
    pre = pre_install(tmp_path, "record.sh", RECORD)
    tree = composer.installed_tree(lock, files, tmp_path / "work", pre_install=pre)
    assert (tree / "pre-install-seen").read_text() == SEEN
    # then the rest: every locked package installed, its scriptlets run
    assert (tree / "var/alpha-post.log").read_text() == "alpha-was-here\n"
    installed = query(tree, "/usr/lib/sysimage/rpm", "-qa", "--qf", "%{NAME}\\n")
    assert installed == sorted(p.name for p in lock.packages)
    assert find_rpmdb(tree) == ("/usr/lib/sysimage/rpm", "sqlite")
    # cached under the key of the scripts, not the plain lock's
    assert composer.cache.lookup(composer.tree_key(lock, pre)) is not None
    assert composer.cache.lookup(composer.tree_key(lock)) is None


def test_failing_pre_install_leaves_nothing(rpm_fixture: RpmFixture, rpm_config: Config,
                                            tmp_path: Path) -> None:
    _, lock, files = fetch(rpm_fixture, rpm_config, "alpha", directory=tmp_path / "dl")
    composer = Composer(rpm_config)
    pre = pre_install(tmp_path, "fail.sh", "echo about to fail\n: > /half-written\nexit 5\n")
    with pytest.raises(ScriptFailed, match=r"Script returned non-zero exit code 5: pre-install "
                       r"script fail\.sh") as info:
        composer.installed_tree(lock, files, tmp_path / "work", pre_install=pre)
    assert "about to fail" in info.value.stderr_tail
    assert not (tmp_path / "work/root").exists()
    assert composer.cache.lookup(composer.tree_key(lock, pre)) is None
    assert composer.cache.lookup(composer.tree_key(lock)) is None


def test_pipeline_runs_pre_install_in_the_compose_stage(rpm_fixture: RpmFixture,
                                                       tmp_path: Path) -> None:
    """``build --stage compose`` of the RPM example with a pre_install script: the compose
    stage's tree is the one the script saw bootstrapped; a changed script reruns compose."""
    config = example_config(tmp_path)
    path = example_spec(rpm_fixture, tmp_path)
    (tmp_path / "record.sh").write_text(RECORD)
    text = path.read_text()
    marker = "customizations:\n  hostname: rpm-fixture\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + "  scripts:\n    pre_install: [./record.sh]\n"))
    spec = Spec.load(path)
    report = ImagePipeline(config).build(spec, BuildOptions(until="compose"))
    assert {o.stage: o.status for o in report.run.outcomes}["compose"] == "ran"
    root = Workspace.for_spec(config.core.work_dir, spec.image.name, spec.path).root
    tree = root / "compose/root"
    assert (tree / "pre-install-seen").read_text() == SEEN
    assert (tree / "var/alpha-post.log").is_file()

    # edited: compose runs again; the configuration stage does not run it a second time
    (tmp_path / "record.sh").write_text(RECORD + "echo ran >> /var/pre-install-runs\n")
    again = ImagePipeline(config).build(spec, BuildOptions(until="configuration"))
    outcomes = {o.stage: o for o in again.run.outcomes}
    assert outcomes["compose"].status == "ran", again.table()
    assert "pre_install" in outcomes["compose"].reason, outcomes["compose"]
    assert outcomes["configuration"].status == "ran", again.table()
    assert (tree / "var/pre-install-runs").read_text() == "ran\n"
    layout = json.loads((root / "configuration/layout.json").read_text())
    (tmp_path / "image").mkdir()
    image = _extract(root / "configuration" / f"{spec.image.name}.raw", layout,
                     tmp_path / "image")
    assert (image / "var/pre-install-runs").read_text() == "ran\n"


def test_library_compose_runs_pre_install_once(rpm_fixture: RpmFixture, tmp_path: Path) -> None:
    """``Composer.compose`` without an installed tree (the library's one call): the spec's
    pre_install scripts run at installation, once, and the disk holds their work."""
    config = example_config(tmp_path)
    path = example_spec(rpm_fixture, tmp_path)
    (tmp_path / "count.sh").write_text("echo ran >> /var/pre-install-runs\n"
                                       "[ ! -e /usr/share/alpha/data ]\n")
    marker = "customizations:\n  hostname: rpm-fixture\n"
    path.write_text(path.read_text().replace(
        marker, marker + "  scripts:\n    pre_install: [./count.sh]\n"))
    spec = Spec.load(path)
    result = run_packages_stage(spec, config, lock_path=tmp_path / "lock.json")
    composed = Composer(config).compose(spec, result.lock, result.packages, tmp_path / "work",
                                        tmp_path / "disk.raw")
    result.cache.close()
    assert not composed.cache_hit
    (tmp_path / "image").mkdir()
    image = _extract(composed.output, layout_data(composed.layout), tmp_path / "image")
    assert (image / "var/pre-install-runs").read_text() == "ran\n"
    assert (image / "var/alpha-post.log").is_file()
