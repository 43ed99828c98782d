"""inspect on small synthetic images: every fact it reports, read offline."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import fastjsonschema
import pytest

from imagecomposer.foundation.errors import NotInImage
from imagecomposer.inspect import Image, InspectReport, schema
from imagecomposer.inspect.schemas import generate
from tests.inspect.conftest import AS_ROOT, KERNEL, SECRET_HASH


@pytest.fixture(scope="module")
def report(synthetic: Path) -> InspectReport:
    with Image.open(synthetic) as image:
        return image.inspect()


def test_partitions_and_filesystems(report: InspectReport) -> None:
    table = report.partition_table
    assert table.type == "gpt"
    found = {p.name: p for p in table.partitions}
    assert [p.number for p in table.partitions] == [1, 2, 3, 4, 5]
    assert found["esp"].type == "esp" and found["root"].type == "root"
    assert {n: p.filesystem.type for n, p in found.items() if p.filesystem} == {
        "esp": "vfat", "root": "ext4", "sq": "squashfs", "ero": "erofs", "xf": "xfs"}
    root_fs = found["root"].filesystem
    assert root_fs is not None and root_fs.mountpoint == "/" and root_fs.uuid
    assert 0 < (root_fs.used or 0) < (root_fs.size or 0) <= found["root"].size
    esp_fs = found["esp"].filesystem
    assert esp_fs is not None and esp_fs.mountpoint == "/boot/efi"


def test_os_facts(report: InspectReport) -> None:
    assert report.os is not None
    assert (report.os.id, report.os.version_id, report.os.pretty_name) == (
        "synthetic", "1", "Synthetic Linux 1")
    assert report.hostname == "synth"
    assert report.timezone == "Europe/Berlin"  # from the /etc/localtime symlink
    assert report.locale == "en_US.UTF-8"
    users = {u.name: u for u in report.users}
    assert users["alice"].password == "set" and users["alice"].groups == ("sudo",)
    assert users["root"].password == "locked" and users["svc"].password == "locked"
    assert users["alice"].shell == "/bin/zsh" and users["alice"].uid == 1000
    assert {g.name: g.members for g in report.groups}["sudo"] == ("alice",)
    assert report.services.enabled == ("foo.service",)
    assert report.services.masked == ("bad.service",)
    assert report.services.default_target == "multi-user.target"


def test_no_password_hash_anywhere(report: InspectReport) -> None:
    assert SECRET_HASH not in json.dumps(report.to_dict())
    assert SECRET_HASH.split("$")[3] not in report.text()


def test_packages_kernels_boot(report: InspectReport) -> None:
    assert report.packages.manager == "dpkg"
    assert [(p.name, p.version) for p in report.packages.items] == [
        ("base", "1.0"), ("tool", "2.0-1")]  # "gone" is deinstalled
    (kernel,) = report.kernels
    assert kernel.version == KERNEL and kernel.modules
    assert kernel.image == f"/boot/vmlinuz-{KERNEL}"
    assert f"esp:/synthetic/{KERNEL}/initrd" in kernel.initrds
    boot = report.bootloader
    assert boot.type == "systemd-boot" and boot.default == "synthetic-*"
    (entry,) = boot.entries
    assert entry.kind == "type1" and entry.linux == f"esp:/synthetic/{KERNEL}/linux"
    assert entry.options == "root=LABEL=root ro quiet"
    assert report.kernel_cmdline == ("root=LABEL=root ro quiet", "root=LABEL=root quiet")
    assert [s.path for s in report.sboms] == ["/usr/share/sbom/synthetic.spdx.json"]
    assert report.sboms[0].format == "spdx" and report.sboms[0].packages == 2


def test_secure_boot_signers(report: InspectReport) -> None:
    found = {b.path: b for b in report.secure_boot}
    assert set(found) == {"esp:/EFI/BOOT/BOOTX64.EFI", "esp:/EFI/systemd/systemd-bootx64.efi",
                          f"esp:/synthetic/{KERNEL}/linux"}
    unsigned = found["esp:/EFI/systemd/systemd-bootx64.efi"]
    assert not unsigned.signed and unsigned.verified is None
    for path in ("esp:/EFI/BOOT/BOOTX64.EFI", f"esp:/synthetic/{KERNEL}/linux"):
        assert found[path].signed and found[path].verified is True
        assert found[path].signers[0].subject == "CN=inspect test db"


def test_tampered_efi_binary_fails_verification(synthetic: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.raw"
    subprocess.run(["cp", "--sparse=always", synthetic, tampered], check=True)
    with Image.open(tampered) as image:
        esp = image.partition("esp")
        data = image.read(f"/synthetic/{KERNEL}/linux", "esp")
    code = data.index(b"kernel")  # inside the signed .text section
    with tampered.open("r+b") as handle:  # find the kernel's bytes in the FAT and flip one
        disk = handle.read()
        at = disk.index(data[:code + 6], esp.start) + code
        handle.seek(at)
        handle.write(b"K")
    with Image.open(tampered) as image:
        found = {b.path: b for b in image.inspect().secure_boot}
    assert found[f"esp:/synthetic/{KERNEL}/linux"].signed
    assert found[f"esp:/synthetic/{KERNEL}/linux"].verified is False
    assert found["esp:/EFI/BOOT/BOOTX64.EFI"].verified is True


def test_json_matches_the_shipped_schema(report: InspectReport) -> None:
    assert schema("inspect") == generate("inspect")
    assert schema("compare") == generate("compare")
    fastjsonschema.compile(schema("inspect"))(json.loads(json.dumps(report.to_dict())))


def test_html_and_text(report: InspectReport) -> None:
    page = report._repr_html_()
    assert "<table>" in page and "Synthetic Linux 1" in page
    text = report.text()
    assert "Boot loader: systemd-boot" in text and "foo.service" in text


def test_read_follows_symlinks_inside_the_image(synthetic: Path) -> None:
    with Image.open(synthetic) as image:
        assert image.read("/etc/os-release").startswith(b'PRETTY_NAME="Synthetic')
        assert image.read("/bin/tool") == image.read("/usr/bin/tool")
        assert image.read("/srv/odd dir/abs-chain") == image.read("/usr/bin/tool")
        assert image.read("/srv/odd dir/ünïcode") == b"unicode\n"
        assert image.read("/srv/odd dir/../odd dir/name with spaces.txt") == b"spaces\n"
        # the ESP is mounted at /boot/efi by the image's fstab (PARTUUID=)
        assert image.read(f"/boot/efi/loader/entries/synthetic-{KERNEL}.conf").startswith(
            b"title Synthetic 1")
        assert image.read("/loader/LOADER.CONF", "esp").startswith(b"default")  # FAT: any case
        with pytest.raises(NotInImage):
            image.read("/srv/odd dir/loop-a")
        with pytest.raises(NotInImage):
            image.read("/etc/nothing")
        assert "hostname" in image.listdir("/etc")


def _tree_records(tree: Path) -> dict[str, tuple[str, int, str | None]]:
    found = {}
    for path in sorted(tree.rglob("*")):
        info = path.lstat()
        rel = "/" + str(path.relative_to(tree))
        digest = (hashlib.sha256(path.read_bytes()).hexdigest()
                  if stat.S_ISREG(info.st_mode) else None)
        kind = ("symlink" if path.is_symlink() else "dir" if path.is_dir() else "file")
        found[rel] = (kind, stat.S_IMODE(info.st_mode), digest)
    return found


@pytest.mark.parametrize("partition", ["root", "sq", "ero", "xf"])
def test_files_match_the_source_tree(synthetic: Path, partition: str) -> None:
    source = synthetic.parent / ("root" if partition == "root" else "data")
    expected = _tree_records(source)
    with Image.open(synthetic) as image:
        records = {r.path: r for r in image.files(partition)
                   if not r.path.startswith("/lost+found")}
    assert set(records) == set(expected)
    for path, (kind, mode, digest) in expected.items():
        record = records[path]
        assert record.kind == kind, path
        if kind == "file":
            assert record.sha256 == digest, path
            assert record.mode == mode, path
    sparse = records.get("/srv/sparse.img")
    if sparse is not None:
        assert sparse.size == 3 * (1 << 20) + 20
    if AS_ROOT and partition in ("sq", "xf", "root"):
        secret = records.get("/etc/secret") or records["/home/alice/notes"]
        assert (secret.uid, secret.gid) in ((1000, 27), (1000, 1000))


def test_extract_sbom(synthetic: Path, tmp_path: Path) -> None:
    with Image.open(synthetic) as image:
        (written,) = image.extract_sboms(tmp_path / "sbom")
    assert json.loads(written.read_text())["spdxVersion"] == "SPDX-2.3"


def test_temporary_files_are_removed(synthetic: Path, tmp_path: Path) -> None:
    with Image.open(synthetic, workdir=tmp_path) as image:
        image.files("root")
        image.files("ero")
        assert list(tmp_path.iterdir())
    assert not list(tmp_path.iterdir())
