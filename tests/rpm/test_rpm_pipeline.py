"""The real pipeline and CLI on ``examples/rpm-fixture.yml`` (issue 6's "Done when").

The example spec and its global configuration (``examples/rpm-fixture-config.yml``, which
declares the profile-less rpm OS ``fixture``) are used as shipped; only the repository URL
and key path are pointed at the fixture repository this session built and serves on
127.0.0.1. Caches and work directories live under the test's tmp directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import attrs
import pytest
from rpm_helpers import RpmFixture

from imagecomposer.cli.main import main
from imagecomposer.config import load_config
from imagecomposer.config.model import Config
from imagecomposer.export import verify_outputs
from imagecomposer.families.rpm.install import find_rpmdb, rpm_command, rpmdb_location
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec import Spec
from imagecomposer.spec.model import Sign

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG = EXAMPLES / "rpm-fixture-config.yml"


def example_spec(fixture: RpmFixture, directory: Path) -> Path:
    """examples/rpm-fixture.yml drawing from the served fixture repository."""
    text = (EXAMPLES / "rpm-fixture.yml").read_text()
    text = text.replace("file:///tmp/rpm-fixture/repos/main/", fixture.repo_url("main"))
    text = text.replace("/tmp/rpm-fixture/fixture-key.asc", str(fixture.key))
    text = text.replace("allowed_paths: [/tmp/rpm-fixture]",
                        f"allowed_paths: [{fixture.key.parent}]")
    assert fixture.repo_url("main") in text and str(fixture.key) in text
    assert f"allowed_paths: [{fixture.key.parent}]" in text
    path = directory / "rpm-fixture.yml"
    path.write_text(text)
    return path


def dirs(tmp_path: Path) -> dict[str, str]:
    return {"IMAGECOMPOSER_CACHE_DIR": str(tmp_path / "cache"),
            "IMAGECOMPOSER_WORK_DIR": str(tmp_path / "work")}


def example_config(tmp_path: Path) -> Config:
    return load_config(CONFIG, environ=dirs(tmp_path)).config


def test_resolve_command(rpm_fixture: RpmFixture, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """``imagecomposer --config examples/rpm-fixture-config.yml resolve SPEC`` works."""
    for name, value in dirs(tmp_path).items():
        monkeypatch.setenv(name, value)
    spec = example_spec(rpm_fixture, tmp_path)
    lock_path = tmp_path / "rpm-fixture.lock.json"
    assert main(["--config", str(CONFIG), "resolve", str(spec), "--lock", str(lock_path)]) == 0
    out = capsys.readouterr().out
    lock = Lock.read(lock_path)
    assert lock.kind == "rpm" and lock.os == "fixture"
    assert f"{len(lock.packages)} packages" in out
    names = {p.name for p in lock.packages}
    # requires, rich deps, a file dependency only filelists knows, the virtual mta with
    # mta-exim excluded by remove:
    assert {"alpha", "beta", "rich", "zeta", "filedep", "helper", "mailer",
            "mta-postfix"} <= names
    assert "mta-exim" not in names
    assert main(["--config", str(CONFIG), "resolve", str(spec), "--explain", "beta"]) == 0
    assert "required by alpha" in capsys.readouterr().out


def _extract(raw: Path, layout: dict[str, object], out: Path) -> Path:
    """The image's root filesystem copied out with debugfs (no mount, no loop device)."""
    parts = layout["partitions"]
    assert isinstance(parts, list) and len(parts) == 1
    root = parts[0]
    assert root["type"] == "root" and root["filesystem"] == "ext4"
    fs = out / "root.ext4"
    with raw.open("rb") as src, fs.open("wb") as dst:
        src.seek(root["start"])
        dst.write(src.read(root["size"]))
    tree = out / "tree"
    commands = out / "debugfs.cmd"
    wanted = ("/etc", "/var", "/boot", "/usr/lib/sysimage")
    commands.write_text("".join(
        f"rdump {d} {tree / d.lstrip('/').rpartition('/')[0]}\n" for d in wanted))
    for d in wanted:
        (tree / d.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["debugfs", "-f", str(commands), str(fs)], check=True,
                   capture_output=True)
    return tree


@pytest.mark.root
@pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs debugfs (e2fsprogs)")
def test_pipeline_until_configuration(rpm_fixture: RpmFixture, tmp_path: Path) -> None:
    """``build --stage configuration`` on the example: packages, compose (rpm --root),
    configuration and a raw disk with one ext4 root partition; the image's rpmdb, the
    scriptlets' marker and the SBOM package data agree with the lock. Then the whole build
    (sign, finalize) on top of it."""
    if os.geteuid() != 0:
        pytest.skip("installing packages needs root")
    config = example_config(tmp_path)
    spec = Spec.load(example_spec(rpm_fixture, tmp_path))
    started = time.monotonic()
    report = ImagePipeline(config).build(spec, BuildOptions(until="configuration"))
    seconds = time.monotonic() - started
    status = {o.stage: o.status for o in report.run.outcomes}
    assert [status[s] for s in ("validate", "packages", "compose", "configuration")] == \
        ["ran"] * 4, report.table()
    assert seconds < 120

    work = Workspace.for_spec(config.core.work_dir, spec.image.name, spec.path).root
    lock = Lock.read(work / "packages/lock.json")
    assert lock.kind == "rpm"
    raw = work / "configuration" / f"{spec.image.name}.raw"
    layout = json.loads((work / "configuration/layout.json").read_text())
    assert raw.stat().st_size == layout["size"]
    assert not list(work.glob("tmp*")), "scratch trees left behind"
    tree = _extract(raw, layout, tmp_path)

    # scriptlets ran in the chroot (%post of alpha); configuration applied over presets
    assert (tree / "var/alpha-post.log").read_text() == "alpha-was-here\n"
    assert (tree / "etc/hostname").read_text() == "rpm-fixture\n"
    assert "alice:" in (tree / "etc/passwd").read_text()
    assert (tree / "boot/initrd.img-6.1.0-fixture").is_file()
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    assert {p.name for p in wants.iterdir()} == {"fixture-hello.service",
                                                 "systemd-networkd.service"}

    # the rpm database inside the image lists exactly the lock's packages, and the key
    found = find_rpmdb(tree)
    assert found == ("/usr/lib/sysimage/rpm", "sqlite")
    query = subprocess.run([*rpm_command(tree, *found), "-qa", "--qf",
                            "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\\n"],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    installed = sorted(line for line in query if line and not line.startswith("gpg-pubkey "))
    assert installed == sorted(f"{p.name} {p.version} {p.arch}" for p in lock.packages)
    assert any(line.startswith("gpg-pubkey ") for line in query)

    # the SBOM package data the configuration stage took from the configured tree
    sbom = json.loads((work / "configuration/sbom-packages.json").read_text())
    assert sorted((p["name"], p["version"], p["arch"], p["kind"]) for p in sbom) == sorted(
        (p.name, p.version, p.arch, "rpm") for p in lock.packages)
    alpha = next(p for p in sbom if p["name"] == "alpha")
    assert alpha["purl"].startswith("pkg:rpm/fixture/alpha@1.0-1?arch=noarch")
    assert "beta" in alpha["depends"]

    # the rest of the build reuses all of it, signed now; the published SPDX document lists
    # the rpms, and the signed provenance every locked package by URL and SHA-256
    key, pub = tmp_path / "release.pem", tmp_path / "release.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    spec = attrs.evolve(spec, output=attrs.evolve(spec.output, sign=Sign(key)))
    full = ImagePipeline(config).build(spec)
    status = {o.stage: o.status for o in full.run.outcomes}
    assert status["compose"] == status["configuration"] == "skipped"
    assert status["finalize"] == "ran", full.table()
    provenance = full.output_dir / f"{spec.image.name}.provenance.intoto.json"
    assert verify_outputs(full.output_dir, pub) == (provenance,)
    slsa = json.loads(base64.b64decode(json.loads(provenance.read_text().splitlines()[0])
                                       ["payload"]))["predicate"]["buildDefinition"]
    assert {(p.url, p.sha256) for p in lock.packages} <= {
        (d["uri"], d.get("digest", {}).get("sha256")) for d in slsa["resolvedDependencies"]}
    assert slsa["internalParameters"]["lock"]["digest"]["sha256"] == lock.hash
    assert slsa["internalParameters"]["configuration"]["provider"]["kind"] == "rpm"
    spdx = json.loads((full.output_dir / f"{spec.image.name}.spdx.json").read_text())
    purls = {ref["referenceLocator"] for pkg in spdx["packages"]
             for ref in pkg.get("externalRefs", ())}
    assert purls == {f"pkg:rpm/fixture/{p.name}@{p.version}?arch={p.arch}&distro=fixture-1"
                     for p in lock.packages}
    assert (full.output_dir / f"{spec.image.name}.lock.json").read_text() == lock.to_json()


@pytest.mark.parametrize(("os_name", "version", "expected"), [
    ("fixture", "1", ("/usr/lib/sysimage/rpm", "sqlite")),  # no profile: Fedora's layout
    ("fedora", "42", ("/usr/lib/sysimage/rpm", "sqlite")),
    ("rocky", "9", ("/var/lib/rpm", "sqlite")),
    ("azurelinux", "3.0", ("/var/lib/rpm", "sqlite")),
])
def test_rpmdb_location_from_the_lock(os_name: str, version: str,
                                      expected: tuple[str, str]) -> None:
    """The Composer installs where the lock's OS keeps its rpmdb (no spec needed, so the
    installed-tree cache, keyed by the lock, stays correct)."""
    lock = Lock(os=os_name, version=version, arch="x86_64", kind="rpm", repositories=(),
                packages=())
    assert rpmdb_location(lock) == expected


@pytest.mark.parametrize("dbpath", ["/var/lib/rpm", "/usr/lib/sysimage/rpm"])
def test_sbom_reads_the_image_rpmdb(rpm_fixture: RpmFixture, tmp_path: Path,
                                    dbpath: str) -> None:
    """The SBOM queries the database where the image keeps it (Debian's rpm alone would
    look in /root/.rpmdb of the tree and report nothing installed)."""
    from imagecomposer.export.sbom import collect
    from imagecomposer.lock import LockedPackage

    tree = tmp_path / "tree"
    rpm = rpm_command(tree, dbpath, "sqlite")
    (tree / dbpath.lstrip("/")).mkdir(parents=True)
    subprocess.run([*rpm, "--initdb"], check=True)
    subprocess.run([*rpm, "-i", "--justdb", "--nodeps", "--nosignature",
                    str(rpm_fixture.packages.signed["beta-2.0"])], check=True,
                   capture_output=True)
    beta = LockedPackage("beta", "2.0-1", "noarch", "main", "http://127.0.0.1/beta.rpm",
                         "00" * 32, 1, kind="rpm")
    lock = Lock(os="fixture", version="1", arch="x86_64", kind="rpm", repositories=(),
                packages=(beta,))
    [package] = collect(lock, tree)
    assert (package.name, package.version, package.kind) == ("beta", "2.0-1", "rpm")
