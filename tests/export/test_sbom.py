"""SBOMs from a lock and a tree, validated with the official SPDX and CycloneDX tools."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest

from imagecomposer.cli.main import main
from imagecomposer.export import Exporter
from imagecomposer.export.finalize import finalize
from imagecomposer.export.sbom import (
    ImageInfo,
    collect,
    embed_sboms,
    generate_sboms,
    sbom_command,
    write_sboms,
)
from imagecomposer.families import family
from imagecomposer.families.deb.copyright import dep5_license
from imagecomposer.families.licenses import spdx_or_ref
from imagecomposer.foundation.epoch import choose_epoch
from imagecomposer.foundation.errors import ExportError
from imagecomposer.lock import LockedPackage
from imagecomposer.spec.model import Base, Image, Output, Spec

from .sbom_fixtures import make_lock, make_tree

IMAGE = ImageInfo("edge", "1.2.3", "ab" * 32, "edge.qcow2")


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def spdx_errors(path: Path) -> list[Any]:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    return validate_full_spdx_document(parse_file(str(path)))


def cyclonedx_errors(text: str) -> object:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def test_sboms_validate_with_official_tools(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    docs = generate_sboms(make_lock(), tree, IMAGE)
    spdx_path, cdx_path = write_sboms(tmp_path / "out", "edge", docs)
    assert spdx_path.name == "edge.spdx.json" and cdx_path.name == "edge.cdx.json"
    assert spdx_errors(spdx_path) == []
    assert cyclonedx_errors(cdx_path.read_text()) is None


def test_spdx_content_matches_dpkg_status(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    doc = generate_sboms(make_lock(), tree, IMAGE, ["spdx"])["spdx"]
    packages = {p["name"]: p for p in doc["packages"]}
    assert set(packages) == {"edge", "base-files", "bash", "debianutils", "libfoo1"}
    root = packages["edge"]
    assert root["checksums"] == [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]
    bash = packages["bash"]
    assert bash["versionInfo"] == "5.2.15-2+b7"
    assert bash["supplier"] == "Organization: Matthias Klose (doko@debian.org)"
    refs = bash["externalRefs"][0]
    assert refs["referenceLocator"] == ("pkg:deb/debian/bash@5.2.15-2%2Bb7"
                                        "?arch=amd64&distro=debian-12")
    assert bash["licenseDeclared"] == ("GPL-3.0-or-later AND (GPL-2.0-or-later OR MIT) AND "
                                       "LicenseRef-Custom-Readline")
    assert packages["libfoo1"]["licenseDeclared"] == "BSD-3-Clause"  # via the doc symlink
    assert packages["libfoo1"]["downloadLocation"] == "NOASSERTION"  # file:// repository
    assert packages["base-files"]["licenseDeclared"] == "NOASSERTION"  # not machine-readable
    assert bash["downloadLocation"].startswith("http://deb.invalid/")
    extracted = doc["hasExtractedLicensingInfos"]
    assert extracted[0]["licenseId"] == "LicenseRef-Custom-Readline"
    assert "readline" in extracted[0]["extractedText"]
    ids = {p["name"]: p["SPDXID"] for p in doc["packages"]}
    depends = {(r["spdxElementId"], r["relatedSpdxElement"]) for r in doc["relationships"]
               if r["relationshipType"] == "DEPENDS_ON"}
    assert depends == {(ids["bash"], ids["base-files"]), (ids["bash"], ids["debianutils"])}
    assert {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Image"} in doc["relationships"]
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"


def test_cyclonedx_content(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    doc = generate_sboms(make_lock(), tree, IMAGE, ["cyclonedx"])["cyclonedx"]
    assert doc["metadata"]["component"]["hashes"][0]["content"] == "ab" * 32
    comps = {c["name"]: c for c in doc["components"]}
    assert comps["libfoo1"]["purl"] == ("pkg:deb/debian/libfoo1@1%3A2.0-1"
                                        "?arch=amd64&distro=debian-12")
    assert comps["bash"]["supplier"] == {"name": "Matthias Klose",
                                         "contact": [{"email": "doko@debian.org"}]}
    deps = {d["ref"]: d["dependsOn"] for d in doc["dependencies"]}
    assert deps[comps["bash"]["bom-ref"]] == sorted(
        [comps["base-files"]["bom-ref"], comps["debianutils"]["bom-ref"]])
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"


def test_purl_matches_reference_implementation() -> None:
    from packageurl import PackageURL

    lock = make_lock()
    for pkg in lock.packages:
        ours = PackageURL.from_string(family(pkg.kind).purl(lock, pkg))
        assert ours.version == pkg.version and ours.name == pkg.name
        assert ours.qualifiers == {"arch": "amd64", "distro": "debian-12"}


def test_deterministic(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    a = generate_sboms(make_lock(), tree, IMAGE)
    b = generate_sboms(make_lock(), tree, IMAGE)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = generate_sboms(make_lock(), tree, ImageInfo("edge", "1.2.4"))
    assert c["spdx"]["documentNamespace"] != a["spdx"]["documentNamespace"]
    assert c["cyclonedx"]["serialNumber"] != a["cyclonedx"]["serialNumber"]


def test_lock_and_dpkg_must_agree(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    extra = LockedPackage("ghost", "1.0", "amd64", "main", "http://deb.invalid/g.deb",
                          "00" * 32, 1)
    with pytest.raises(ExportError, match="'ghost' is in the lock but not installed"):
        collect(make_lock((extra,)), tree)
    status = tree / "var/lib/dpkg/status"
    status.write_text(status.read_text() + "\nPackage: sneaky\nStatus: install ok installed\n"
                      "Architecture: all\nVersion: 1\n")
    with pytest.raises(ExportError, match=r"'sneaky' is installed .* but not in the lock"):
        collect(make_lock(), tree)
    status.write_text(status.read_text().replace("5.2.15-2+b7", "5.2.15-3"))
    with pytest.raises(ExportError, match=r"'bash': lock has version 5.2.15-2\+b7"):
        collect(make_lock(), tree)


def test_missing_dpkg_database(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot read the dpkg database"):
        collect(make_lock(), tmp_path)


def test_embed_without_image_hash(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    docs = generate_sboms(make_lock(), tree, ImageInfo("edge", "1.2.3"))
    paths = embed_sboms(tree, "edge", docs)
    assert [p.relative_to(tree).as_posix() for p in paths] == [
        "usr/share/sbom/edge.spdx.json", "usr/share/sbom/edge.cdx.json"]
    assert oct(paths[0].stat().st_mode & 0o777) == "0o644"
    assert spdx_errors(paths[0]) == []
    assert cyclonedx_errors(paths[1].read_text()) is None
    assert "checksums" not in json.loads(paths[0].read_text())["packages"][0]


def test_license_conversion() -> None:
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: x\nLicense: LGPL-2.1+ and GPL-2 with OpenSSL exception\n")
    lic = dep5_license(text)
    assert lic.expression.startswith("LicenseRef-LGPL-2.1-and-GPL-2-with-OpenSSL-exception")
    assert dep5_license("not machine readable").expression == "NOASSERTION"
    assert spdx_or_ref("MIT AND (GPL-2.0-or-later OR Apache-2.0)").expression.startswith("MIT")
    legacy = spdx_or_ref("GPLv2+")
    assert legacy.expression == "LicenseRef-GPLv2" and legacy.extracted[0][1] == "GPLv2+"


def test_validators_reject_a_broken_document(tmp_path: Path) -> None:
    """Guard: the official validators really are checking (not silently passing)."""
    docs = generate_sboms(make_lock(), make_tree(tmp_path / "tree"), IMAGE)
    docs["spdx"]["packages"][1]["licenseDeclared"] = "NotAThing-1"
    bad = tmp_path / "bad.spdx.json"
    bad.write_text(json.dumps(docs["spdx"]))
    assert any("NotAThing-1" in e.validation_message for e in spdx_errors(bad))
    docs["cyclonedx"]["components"][0]["hashes"][0]["alg"] = "SHA-999"
    assert cyclonedx_errors(json.dumps(docs["cyclonedx"])) is not None


def test_rpm_database_cross_check(tmp_path: Path, fake_tool: Any) -> None:
    """rpm images: the rpmdb is read with `rpm --root TREE -qa` (faked here)."""
    fake_tool("rpm", 'printf "bash\\t0\\t5.2.26-3.azl3\\tx86_64\\tMicrosoft\\tGPL-3.0-or-later\\n'
                     'openssl\\t1\\t3.3.2-1.azl3\\tx86_64\\t(none)\\tApache-2.0\\n'
                     'gpg-pubkey\\t0\\t3135ce90-5e6fda74\\t(none)\\t(none)\\tpubkey\\n"')
    lock = make_lock()
    rpms = tuple(
        LockedPackage(n, v, "x86_64", "base", f"https://rpm.invalid/{n}.rpm", "11" * 32, 1,
                      kind="rpm", depends=d)
        for n, v, d in (("bash", "5.2.26-3.azl3", ("openssl",)),
                        ("openssl", "1:3.3.2-1.azl3", ())))
    from attrs import evolve

    rpm_lock = evolve(lock, os="azurelinux", version="3.0", kind="rpm", packages=rpms)
    docs = generate_sboms(rpm_lock, tmp_path, IMAGE)
    comps = {c["name"]: c for c in docs["cyclonedx"]["components"]}
    assert comps["openssl"]["purl"] == ("pkg:rpm/azurelinux/openssl@3.3.2-1.azl3"
                                        "?arch=x86_64&distro=azurelinux-3.0&epoch=1")
    assert comps["bash"]["licenses"] == [{"expression": "GPL-3.0-or-later"}]
    path = tmp_path / "rpm.spdx.json"
    path.write_text(json.dumps(docs["spdx"]))
    assert spdx_errors(path) == []
    with pytest.raises(ExportError, match=r"'bash' is installed \(rpmdb\) but not in the lock"):
        generate_sboms(evolve(rpm_lock, packages=rpms[1:]), tmp_path, IMAGE)


RPM_SPEC = """\
Name: hello-ic
Version: 1.0
Release: 2
Epoch: 1
Summary: imagecomposer SBOM test package
License: MIT AND GPL-2.0-or-later
Packager: Test Team <test@example.org>
BuildArch: noarch
%description
test
%files
"""


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="needs rpmbuild (rpm)")
def test_real_rpmdb(tmp_path: Path) -> None:
    """A real rpmdb in a tree, written by rpm itself, read through `rpm --root`."""
    top = tmp_path / "rpmbuild"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS/hello.spec").write_text(RPM_SPEC)
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "-bb", top / "SPECS/hello.spec"],
                   check=True, capture_output=True)
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["rpm", "--root", tree, "--initdb"], check=True)
    subprocess.run(["rpm", "--root", tree, "-i", "--nodeps", "--justdb", "--nosignature",
                    *(top / "RPMS/noarch").glob("*.rpm")], check=True, capture_output=True)
    from attrs import evolve

    pkg = LockedPackage("hello-ic", "1:1.0-2", "noarch", "base", "https://rpm.invalid/h.rpm",
                        "22" * 32, 1, kind="rpm")
    lock = evolve(make_lock(), os="fedora", version="40", kind="rpm", packages=(pkg,))
    docs = generate_sboms(lock, tree, IMAGE)
    comp = docs["cyclonedx"]["components"][0]
    assert comp["licenses"] == [{"expression": "MIT AND GPL-2.0-or-later"}]
    assert comp["purl"] == "pkg:rpm/fedora/hello-ic@1.0-2?arch=noarch&distro=fedora-40&epoch=1"
    path = tmp_path / "r.spdx.json"
    path.write_text(json.dumps(docs["spdx"]))
    assert spdx_errors(path) == []
    assert cyclonedx_errors(json.dumps(docs["cyclonedx"])) is None
    with pytest.raises(ExportError, match=r"lock has version 1:1\.0-3"):
        generate_sboms(evolve(lock, packages=(evolve(pkg, version="1:1.0-3"),)), tree, IMAGE)


def test_sbom_command(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    lock_file = tmp_path / "edge.lock.json"
    make_lock().write(lock_file)
    image = tmp_path / "edge.qcow2"
    image.write_bytes(b"image bytes")
    paths = sbom_command(lock_file, tree, tmp_path / "out", image=image, version="2.0")
    assert [p.name for p in paths] == ["edge.spdx.json", "edge.cdx.json"]
    doc = json.loads(paths[0].read_text())
    assert doc["packages"][0]["checksums"][0]["checksumValue"] == hashlib.sha256(
        b"image bytes").hexdigest()
    assert spdx_errors(paths[0]) == []


def test_the_sbom_command_writes_the_bytes_the_build_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``imagecomposer sbom`` takes the build's epoch from the lock (the newest date of its
    repositories, or SOURCE_DATE_EPOCH), not the fixed default: with the build's name,
    version and raw disk, its SBOMs are the bytes finalize wrote (issue 10)."""
    lock = make_lock()
    lock = attrs.evolve(lock, repositories=tuple(
        attrs.evolve(r, date=1796000000) for r in lock.repositories))
    lock_file = tmp_path / "edge.lock.json"
    lock.write(lock_file)
    tree = make_tree(tmp_path / "tree")
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as handle:
        handle.truncate(4 << 20)
        handle.write(b"a disk")
    spec = Spec(image=Image("edge", Base("debian", "12"), "1.0.0"),
                output=Output(formats=("raw",), sbom=("spdx", "cyclonedx")))
    for environment in ({}, {"SOURCE_DATE_EPOCH": "1700000000"}):
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        epoch = choose_epoch(inputs=lock.source_date)[0]  # what the pipeline gives finalize
        assert epoch == int(environment.get("SOURCE_DATE_EPOCH", 1796000000))
        out, again = tmp_path / f"out-{epoch}", tmp_path / f"again-{epoch}"
        work = tmp_path / f"work-{epoch}"
        work.mkdir()
        finalize(raw, spec, out, lock=lock, lock_file=lock_file, tree=tree, work_dir=work,
                 exporter=Exporter(epoch=epoch))

        assert main(["sbom", str(lock_file), str(tree), "--name", "edge", "--image-version",
                     "1.0.0", "--image", str(out / "edge.raw"), "-o", str(again)]) == 0

        assert capsys.readouterr().out.split() == [str(again / "edge.spdx.json"),
                                                   str(again / "edge.cdx.json")]
        for name in ("edge.spdx.json", "edge.cdx.json"):
            assert (again / name).read_bytes() == (out / name).read_bytes(), name
