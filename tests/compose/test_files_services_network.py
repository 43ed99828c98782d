"""Files from the spec, systemd units (real systemctl --root), networkd files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagecomposer.compose.configure import files, network, services
from imagecomposer.foundation.errors import ComposeError, UnitNotFound
from imagecomposer.spec.model import File, Interface, Network


def test_files_in_spec_order_with_modes_and_owners(fake_tree: Path, tmp_path: Path) -> None:
    (fake_tree / "etc/passwd").write_text(
        (fake_tree / "etc/passwd").read_text() + "app:x:1200:1300::/srv/app:/bin/sh\n")
    (fake_tree / "etc/group").write_text(
        (fake_tree / "etc/group").read_text() + "app:x:1300:\n")
    src_file = tmp_path / "app.conf"
    src_file.write_text("from source\n")
    src_dir = tmp_path / "static"
    (src_dir / "css").mkdir(parents=True)
    (src_dir / "css/site.css").write_text("body{}\n")
    entries = (
        File(destination="/etc/motd", content="first\n"),
        File(destination="/etc/motd", content="second\n", mode="0600"),  # later wins
        File(destination="/etc/app/app.conf", source=src_file, owner="app", group="app",
             mode="0640"),
        File(destination="/srv/www", source=src_dir, owner="app", group="app", mode="0750"),
        File(destination="/var/lib/app", owner="app", group="app", mode="0700"),
    )
    files.apply(fake_tree, entries, source_roots=(tmp_path,))
    motd = fake_tree / "etc/motd"
    assert motd.read_text() == "second\n" and motd.stat().st_mode & 0o777 == 0o600
    conf = (fake_tree / "etc/app/app.conf").stat()
    assert (conf.st_uid, conf.st_gid, conf.st_mode & 0o777) == (1200, 1300, 0o640)
    assert (fake_tree / "etc/app/app.conf").read_text() == "from source\n"
    www = fake_tree / "srv/www"
    assert (www / "css/site.css").read_text() == "body{}\n"
    assert (www / "css/site.css").stat().st_uid == 1200
    assert www.stat().st_mode & 0o777 == 0o750
    state = (fake_tree / "var/lib/app").stat()
    assert state.st_uid == 1200 and state.st_mode & 0o777 == 0o700


def test_file_errors(fake_tree: Path, tmp_path: Path) -> None:
    roots = (tmp_path,)
    with pytest.raises(ComposeError, match="must be absolute"):
        files.apply_one(fake_tree, File(destination="etc/x", content=""), source_roots=roots)
    with pytest.raises(ComposeError, match="does not exist in the image"):
        files.apply_one(fake_tree, File(destination="/etc/x", content="", owner="ghost"),
                        source_roots=roots)
    with pytest.raises(ComposeError, match=r"source .* does not exist"):
        files.apply_one(fake_tree, File(destination="/etc/x", source=tmp_path / "missing"),
                        source_roots=roots)


def test_services_enabled_and_disabled_with_systemctl_root(fake_tree: Path) -> None:
    services.apply(fake_tree, ("fstrim.timer", "serial-getty@ttyS1", "ssh"), ())
    wants = fake_tree / "etc/systemd/system"
    assert (wants / "timers.target.wants/fstrim.timer").is_symlink()
    assert (wants / "getty.target.wants/serial-getty@ttyS1.service").is_symlink()
    assert (wants / "multi-user.target.wants/ssh.service").is_symlink()
    services.apply(fake_tree, (), ("ssh.service",))
    assert not (wants / "multi-user.target.wants/ssh.service").exists()


def test_missing_unit_is_a_clear_error(fake_tree: Path, fake_tool) -> None:  # type: ignore[no-untyped-def]
    fake_tool("systemctl", "echo must not run >&2; exit 1")
    with pytest.raises(UnitNotFound,
                       match=r"Service not found: unit nginx\.service does not exist"):
        services.apply(fake_tree, ("nginx",), ())


def test_unit_names() -> None:
    assert services.unit_name("sshd") == "sshd.service"
    assert services.unit_name("fstrim.timer") == "fstrim.timer"


def test_network_dhcp_default_enables_networkd_and_resolved(fake_tree: Path) -> None:
    written = network.configure(fake_tree, Network())
    assert [p.name for p in written] == ["10-imagecomposer-0.network"]
    text = written[0].read_text()
    assert "[Match]\nName=en*\n" in text and "DHCP=ipv4\n" in text
    wants = fake_tree / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "systemd-networkd.service").is_symlink()
    assert (wants / "systemd-resolved.service").is_symlink()
    assert (fake_tree / "etc/resolv.conf").readlink() == Path(
        "../run/systemd/resolve/stub-resolv.conf")


def test_network_static() -> None:
    text = network.network_file(Interface(
        match="eth0", dhcp4=False, addresses=("192.0.2.10/24", "2001:db8::10/64"),
        gateway="192.0.2.1", dns=("192.0.2.53",)))
    assert "DHCP=no\n" in text
    assert "Address=192.0.2.10/24\nAddress=2001:db8::10/64\n" in text
    assert "Gateway=192.0.2.1\nDNS=192.0.2.53\n" in text


@pytest.mark.parametrize("iface", [
    Interface(addresses=("192.0.2.300/24",)),
    Interface(addresses=("192.0.2.1",)),
    Interface(gateway="not-an-ip"),
])
def test_network_invalid(iface: Interface) -> None:
    with pytest.raises(ComposeError):
        network.network_file(iface)


def test_network_needs_networkd(fake_tree: Path) -> None:
    (fake_tree / "usr/lib/systemd/system/systemd-networkd.service").unlink()
    with pytest.raises(ComposeError, match="needs systemd-networkd"):
        network.configure(fake_tree, Network())


def test_a_unit_the_network_enabled_is_not_enabled_again(  # type: ignore[no-untyped-def]
        fake_tree: Path, fake_tool, tmp_path: Path) -> None:
    """The examples enable systemd-networkd in services.enabled, which the network
    configuration already enabled: one systemctl call for it, not two (issue 12)."""
    real = shutil.which("systemctl")
    assert real is not None
    calls = tmp_path / "systemctl-calls"
    fake_tool("systemctl", f'echo "$*" >> {calls}; exec {real} "$@"')
    network.configure(fake_tree, Network())
    services.apply(fake_tree, ("systemd-networkd", "ssh"), (),
                   already=network.enabled_units(fake_tree))
    lines = calls.read_text().splitlines()
    assert sum("systemd-networkd.service" in line for line in lines) == 1, lines
    assert any(line.endswith("enable ssh.service") for line in lines)
    wants = fake_tree / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "systemd-networkd.service").is_symlink()
    assert (wants / "ssh.service").is_symlink()
