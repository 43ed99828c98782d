"""A real Debian 12 installation: dpkg in the namespaced chroot, the tree cache, the full
configuration with a real initramfs and systemd-boot, failure reporting, and (when the disk
side is present) the whole compose into a raw disk.

Marked root + network + slow: the package set is resolved and downloaded with apt in a
scratch root (test-only helper, see compose_debset.py).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import attrs
import pytest
from conftest import make_layout

from imagecomposer.cache import manifest
from imagecomposer.cache.trees import copy_tree
from imagecomposer.compose import bootloader, initramfs
from imagecomposer.compose.composer import Composer
from imagecomposer.compose.configure.scripts import PreInstall
from imagecomposer.config.model import Config, Core
from imagecomposer.families import family
from imagecomposer.families.deb import install as dpkg_install
from imagecomposer.foundation.errors import ScriptFailed
from imagecomposer.foundation.sandbox import run_in_chroot
from imagecomposer.lock import Lock, LockedPackage
from imagecomposer.spec.model import (
    Base,
    Customizations,
    File,
    Image,
    Scripts,
    Services,
    Spec,
    Ssh,
    User,
)

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]
Packages = tuple[Lock, dict[str, Path]]
HASH = "$6$rounds=1000$saltsalt$hlO0mCzpp5zq2bXbFVBv6z3I5Z6b8p7b3M2gH0vQ3xQ"


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines()
            if str(path) in line]


@pytest.fixture(scope="module")
def composer(tmp_path_factory: pytest.TempPathFactory) -> Composer:
    base = tmp_path_factory.mktemp("compose")
    return Composer(Config(core=Core(cache_dir=base / "cache", work_dir=base / "work")))


@pytest.fixture(scope="module")
def installed(composer: Composer, debian_packages: Packages,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    lock, files = debian_packages
    work = tmp_path_factory.mktemp("install")
    start = time.monotonic()
    tree = composer.installed_tree(lock, files, work)
    return tree, time.monotonic() - start


def test_install_registers_every_package_and_leaves_nothing_behind(
        installed: tuple[Path, float], debian_packages: Packages) -> None:
    tree, seconds = installed
    lock, _ = debian_packages
    status = (tree / "var/lib/dpkg/status").read_text()
    assert status.count("Status: install ok installed") == len(lock.packages)
    assert (tree / "bin").readlink() == Path("usr/bin")
    assert not mounts_under(tree)
    assert not (tree / "usr/sbin/policy-rc.d").exists()
    assert "update-initramfs" not in (tree / "var/lib/dpkg/diversions").read_text()
    assert (tree / "usr/sbin/update-initramfs").read_text().startswith("#!/bin/sh")
    assert "imagecomposer" not in (tree / "usr/sbin/update-initramfs").read_text()
    assert not list((tree / "boot").glob("initrd.img-*"))  # built once, later
    assert not list((tree / "run").iterdir()) and not list((tree / "dev").iterdir())
    assert not list(tree.rglob("libeatmydata*"))
    print(f"\ninstalled {len(lock.packages)} packages in {seconds:.1f} s")


def test_tree_cache_reuses_the_installation(
        composer: Composer, installed: tuple[Path, float], debian_packages: Packages,
        tmp_path: Path) -> None:
    lock, _ = debian_packages
    _, install_seconds = installed
    assert composer.cache.lookup(composer.tree_key(lock)) is not None
    start = time.monotonic()
    tree = composer.installed_tree(lock, {}, tmp_path)  # no package files needed on a hit
    seconds = time.monotonic() - start
    assert (tree / "var/lib/dpkg/status").read_text().count("install ok installed") == len(
        lock.packages)
    assert seconds < install_seconds
    print(f"\ncache restore {seconds:.1f} s (install {install_seconds:.1f} s)")


def test_sealed_tree_cache_costs_on_a_real_tree(
        composer: Composer, installed: tuple[Path, float], debian_packages: Packages,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What the tree manifest adds on the real tree: at store (made from the source while
    ``cp -a`` runs) and at restore (the copy checked against it), against a bare copy.
    Stores into the module's own cache again (no extra tree on disk)."""
    tree, _ = installed
    lock, _ = debian_packages
    start = time.monotonic()
    copy_tree(tree, tmp_path / "bare")
    bare = time.monotonic() - start
    shutil.rmtree(tmp_path / "bare")
    start, cpu = time.monotonic(), time.process_time()
    made = manifest.of_tree(tree)
    alone, alone_cpu = time.monotonic() - start, time.process_time() - cpu
    cache, key = composer.cache, composer.tree_key(lock)
    assert cache.storage.remove(f"v2-{key}")
    start = time.monotonic()
    cache.store(key, tree)
    stored = time.monotonic() - start
    with caplog.at_level(logging.DEBUG, "imagecomposer.cache.trees"):
        start = time.monotonic()
        assert cache.restore(key, tmp_path / "root")
        restored = time.monotonic() - start
    shutil.rmtree(tmp_path / "root")
    found = re.search(r"\(copy ([\d.]+) s, checked (\d+) paths against the sealed manifest "
                      r"in ([\d.]+) s\)", caplog.text)
    assert found is not None and int(found.group(2)) == len(made)
    files = sum(1 for r in made if r[1] == "file")
    print(f"\nreal tree: {len(made)} paths ({files} files); bare cp -a {bare:.2f} s; "
          f"manifest alone {alone:.2f} s ({alone_cpu:.2f} s CPU); store (cp -a + manifest) "
          f"{stored:.2f} s; "
          f"restore {restored:.2f} s (copy {found.group(1)} s, check {found.group(3)} s)")
    assert float(found.group(3)) < 5.0  # ~0.5 s on 2 idle cores


def full_spec(tmp_path: Path) -> Spec:
    post = tmp_path / "post.sh"
    post.write_text('#!/bin/sh\nset -e\necho "$IMAGECOMPOSER_IMAGE_NAME $IMAGECOMPOSER_STAGE '
                    '$IMAGECOMPOSER_ROOT" > /etc/built-by\necho done\n')
    overlay = tmp_path / "etc-overlay/systemd/system"
    (overlay / "getty.target.wants").mkdir(parents=True, exist_ok=True)
    (overlay / "imagecomposer-canary.service").write_text("[Unit]\nDescription=overlay\n")
    (overlay / "getty.target.wants/README").write_text("merged into the stock directory\n")
    return Spec(
        base_dir=tmp_path,  # where files[].source may come from
        image=Image(name="it-demo", version="2.0", base=Base(os="debian", version="12")),
        customizations=Customizations(
            hostname="it-host", root_password_hash=HASH,
            users=(User(name="ops", groups=("adm",), password_hash=HASH,
                        ssh_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA ops@ci",)),),
            ssh=Ssh(permit_root_login=False, password_authentication=False),
            files=(File(destination="/etc/motd", content="welcome\n", mode="0644"),
                   File(destination="/etc", source=tmp_path / "etc-overlay")),
            services=Services(enabled=("e2scrub_all.timer",), disabled=("e2scrub_reap",)),
            scripts=Scripts(post_install=(post,)),
        ),
    )


def test_configure_a_real_tree(composer: Composer, installed: tuple[Path, float],
                               debian_packages: Packages, tmp_path: Path) -> None:
    lock, _ = debian_packages
    tree = composer.installed_tree(lock, {}, tmp_path)
    spec = full_spec(tmp_path)
    # issue 18: the stock tree's absolute links under /etc, and one planted at a name the
    # spec's /etc overlay writes, pointing at a host file of ours: the overlay replaces it
    units = tree / "etc/systemd/system"
    stock = {p: p.readlink() for p in units.rglob("*") if p.is_symlink()}
    assert any(t.is_absolute() for t in stock.values())
    canary = tmp_path / "host-canary"
    canary.write_text("canary\n")
    (units / "imagecomposer-canary.service").symlink_to(canary)
    start = time.monotonic()
    trees = composer.configure(spec, tree, make_layout(), lock)
    seconds = time.monotonic() - start
    print(f"\nconfigure (with initramfs and bootloader) {seconds:.1f} s")
    assert trees == {"root": tree, "esp": tmp_path / "part-esp"}
    assert canary.read_text() == "canary\n"
    assert (units / "imagecomposer-canary.service").read_text() == "[Unit]\nDescription=overlay\n"
    assert (units / "getty.target.wants/README").is_file()
    assert all(p.readlink() == t for p, t in stock.items() if p.is_symlink())
    assert (tree / "etc/hostname").read_text() == "it-host\n"
    assert "ops:" in (tree / "etc/passwd").read_text()
    keys = tree / "home/ops/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA ops@ci\n"
    assert (tree / "etc/built-by").read_text() == "it-demo post-install /\n"
    assert (tree / "etc/machine-id").read_text() == ""
    assert (tree / "etc/systemd/system/timers.target.wants/e2scrub_all.timer").is_symlink()
    assert (tree / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
            ).is_symlink()
    assert "UUID=33333333-3333-4333-8333-333333333333\t/\text4" in (
        tree / "etc/fstab").read_text()
    sources = (tree / "etc/apt/sources.list.d/debian.sources").read_text()
    assert f"URIs: {lock.repositories[0].url}\n" in sources
    initrd = next((tree / "boot").glob("initrd.img-*"))
    assert initrd.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd, built once
    listing = run_in_chroot(tree, ["lsinitramfs", f"/boot/{initrd.name}"], capture=True)
    assert b"sbin/fsck.ext4" in listing.stdout  # fstab and FSTYPE were in place
    esp = trees["esp"]
    assert (esp / "EFI/BOOT/BOOTX64.EFI").read_bytes()[:2] == b"MZ"
    entry = next((esp / "loader/entries").glob("it-demo-*.conf")).read_text()
    assert "options root=UUID=33333333-3333-4333-8333-333333333333 ro console=tty0" in entry
    assert not mounts_under(tmp_path)

    # GRUB from the same tree: EFI (standalone image + grub.cfg) and BIOS (MBR code, core.img)
    kernels = initramfs.kernels(tree)
    grub_esp = tmp_path / "grub-esp"
    bootloader.grub_efi(tree, grub_esp, spec, make_layout(), kernels)
    assert (grub_esp / "EFI/BOOT/BOOTX64.EFI").read_bytes()[:2] == b"MZ"
    assert "\tlinux /it-demo/" in (grub_esp / "EFI/BOOT/grub.cfg").read_text()
    mbr = attrs.evolve(make_layout(), table="mbr")
    bios = bootloader.grub_bios(tree, spec, mbr, kernels, out=tmp_path / "bios")
    assert len(bios.boot_code) == 440
    assert bootloader.core_blocklist(bios.core_img)[0] == 2
    assert "search" not in (tree / "boot/grub/grub.cfg").read_text()
    assert "\tlinux /boot/vmlinuz-" in (tree / "boot/grub/grub.cfg").read_text()
    assert not list((tree / "tmp").glob("imagecomposer-*"))


def test_failing_post_install_script(composer: Composer, installed: tuple[Path, float],
                                     debian_packages: Packages, tmp_path: Path) -> None:
    lock, _ = debian_packages
    tree = composer.installed_tree(lock, {}, tmp_path)
    bad = tmp_path / "bad.sh"
    bad.write_text("echo about to fail\nexit 7\n")
    spec = attrs.evolve(full_spec(tmp_path), customizations=Customizations(
        scripts=Scripts(post_install=(bad,))))
    with pytest.raises(ScriptFailed, match=r"Script returned non-zero exit code 7: post-install "
                       r"script bad\.sh") as info:
        composer.configure(spec, tree, make_layout(), lock)
    assert "about to fail" in info.value.stderr_tail
    assert not mounts_under(tmp_path)


def build_deb(directory: Path, name: str, postinst: str, *, root: Path | None = None) -> Path:
    root = root or directory / name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t.invalid>\n"
        "Description: test package\n")
    (root / "DEBIAN/postinst").write_text(postinst)
    (root / "DEBIAN/postinst").chmod(0o755)
    out = directory / f"{name}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    return out


def test_failing_maintainer_script_names_the_package(debian_packages: Packages,
                                                     tmp_path: Path) -> None:
    lock, files = debian_packages
    deb = build_deb(tmp_path, "icfail", "#!/bin/sh\necho postinst is failing >&2\nexit 3\n")
    essential = dpkg_install.essential_set(lock)
    failing = LockedPackage(name="icfail", version="1.0", arch="all", repository="local",
                            url=deb.as_uri(), sha256="0" * 64, size=deb.stat().st_size)
    small = attrs.evolve(lock, packages=(*essential, failing))
    tree = tmp_path / "tree"
    with pytest.raises(ScriptFailed, match="Script returned non-zero exit code 3: dpkg "
                       "--configure failed in the maintainer script of package icfail") as info:
        dpkg_install.install(small, {**files, "icfail": deb}, tree)
    assert "postinst is failing" in info.value.stderr_tail
    assert not mounts_under(tmp_path)
    assert not (tree / "usr/sbin/policy-rc.d").exists()


# A pre_install script: what dpkg knows when it runs, whether the spec's package is there
# yet, the tools a pre-install step uses, and a dpkg path exclude the rest must honour.
PRE_INSTALL = """#!/bin/sh
set -e
dpkg-query -W -f '${Package}\\n' | sort > /var/lib/pre-install-seen
test ! -e /usr/share/icspec/kept
for tool in dpkg-divert debconf-set-selections useradd; do
  command -v "$tool" || echo "missing $tool"
done > /var/lib/pre-install-tools
mkdir -p /etc/dpkg/dpkg.cfg.d
echo 'path-exclude=/usr/share/icspec/excluded' > /etc/dpkg/dpkg.cfg.d/pre-install
"""


def test_pre_install_runs_before_the_spec_packages(debian_packages: Packages,
                                                   tmp_path: Path) -> None:
    """Two phases (issue 12): the bootstrap set (Essential, required and their dependencies)
    installed and configured, the script on that tree, then the rest (here one spec
    package), which honours what the script configured."""
    lock, files = debian_packages
    root = tmp_path / "icspec"
    (root / "usr/share/icspec").mkdir(parents=True)
    (root / "usr/share/icspec/kept").write_text("kept\n")
    (root / "usr/share/icspec/excluded").write_text("excluded\n")
    deb = build_deb(tmp_path, "icspec", "#!/bin/sh\nexit 0\n", root=root)
    essential = dpkg_install.essential_set(lock)
    spec_package = LockedPackage(name="icspec", version="1.0", arch="all", repository="local",
                                 url=deb.as_uri(), sha256="0" * 64, size=deb.stat().st_size)
    small = attrs.evolve(lock, packages=(*essential, spec_package))
    assert family("deb").bootstrap(small, files) == tuple(essential)
    (tmp_path / "spec").mkdir()
    script = tmp_path / "spec/pre.sh"
    script.write_text(PRE_INSTALL)
    pre = PreInstall.of(Spec(image=Image(name="pre", base=Base(os="debian", version="12")),
                             customizations=Customizations(scripts=Scripts(
                                 pre_install=(script,)))))
    composer = Composer(Config(core=Core(cache_dir=tmp_path / "cache",
                                         work_dir=tmp_path / "work")))
    start = time.monotonic()
    tree = composer.installed_tree(small, {**files, "icspec": deb}, tmp_path / "work",
                                   pre_install=pre)
    seconds = time.monotonic() - start
    seen = (tree / "var/lib/pre-install-seen").read_text().split()
    assert seen == sorted(p.name for p in essential) and "icspec" not in seen
    tools = (tree / "var/lib/pre-install-tools").read_text()
    assert "missing" not in tools and len(tools.split()) == 3, tools
    status = (tree / "var/lib/dpkg/status").read_text()
    assert status.count("Status: install ok installed") == len(small.packages)
    assert (tree / "usr/share/icspec/kept").read_text() == "kept\n"
    assert not (tree / "usr/share/icspec/excluded").exists()  # the script's exclude held
    assert not (tree / "usr/sbin/policy-rc.d").exists()
    assert "update-initramfs" not in (tree / "var/lib/dpkg/diversions").read_text()
    assert not mounts_under(tmp_path)
    print(f"\ntwo-phase install of {len(essential)} + 1 packages {seconds:.1f} s")


# What a hostile script tries, in perl (the image's perl-base): results go to RESULT in the
# image, one "key: value" line each. MARKER and SECRET are host paths.
ESCAPE = r"""#!/usr/bin/perl
use strict; use warnings;
my ($result, $marker, $secret) = @ARGV;
open(my $out, ">", $result) or die "$result: $!";  # before any escape: lands in the image
my %r;
# the classic chroot() escape: chroot into a subdirectory, climb out of it, chroot there
mkdir "/escape-dir";
if (chroot("/escape-dir")) { chdir("..") for 1..64; chroot("."); $r{chroot} = "escaped" }
else { $r{chroot} = "$!" }
if (open(my $f, ">", $marker)) { print $f "escaped\n"; close $f; $r{marker} = "written" }
else { $r{marker} = "$!" }
for my $name ("/etc/hostname", $secret) {
    if (open(my $f, "<", $name)) { my $l = <$f>; chomp $l; $r{"read $name"} = $l }
}
# open_by_handle_at (x86-64: 304) of inode 2, the root of the tree's ext4 file system
if (open(my $root, "<", "/")) {
    my $handle = pack("LlLL", 8, 1, 2, 0);
    my $fd = syscall(304, fileno($root), $handle, 0);
    if ($fd >= 0 && opendir(my $d, "/proc/self/fd/$fd")) {
        $r{handle} = join(",", sort grep { !/^\./ } readdir($d)) }
    else { $r{handle} = "$!" }
}
print $out "$_: $r{$_}\n" for sort keys %r;
"""


def hostile_results(tree: Path, result: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (tree / result.lstrip("/")).read_text()
                .splitlines())


def check_nothing_escaped(results: dict[str, str], marker: Path, secret: Path) -> None:
    assert results["chroot"] == "Operation not permitted"
    assert results["handle"] == "Operation not permitted"
    assert results["marker"] == "No such file or directory"
    assert not marker.exists()
    assert f"read {secret}" not in results
    host_name = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() \
        else None
    assert results.get("read /etc/hostname") != host_name


def test_hostile_post_install_script_acts_on_the_image_only(
        composer: Composer, installed: tuple[Path, float], debian_packages: Packages,
        tmp_path: Path) -> None:
    lock, _ = debian_packages
    tree = composer.installed_tree(lock, {}, tmp_path / "work")
    marker, secret = tmp_path / "escaped", tmp_path / "host-secret"
    secret.write_text("host secret\n")
    (tmp_path / "spec").mkdir()
    # a spec script gets no arguments: a shell script that hands them to the perl
    wrapper = tmp_path / "spec/escape.sh"
    wrapper.write_text(f"perl - /escape-result {marker} {secret} <<'EOF'\n{ESCAPE}EOF\n")
    spec = attrs.evolve(full_spec(tmp_path), customizations=Customizations(
        scripts=Scripts(post_install=(wrapper,))))
    from imagecomposer.compose.configure import scripts

    scripts.run_scripts(tree, spec, "post-install", spec.customizations.scripts.post_install)
    check_nothing_escaped(hostile_results(tree, "/escape-result"), marker, secret)
    assert sorted(p.name for p in wrapper.parent.iterdir()) == ["escape.sh"]


def test_hostile_maintainer_script_acts_on_the_image_only(
        composer: Composer, installed: tuple[Path, float], debian_packages: Packages,
        tmp_path: Path) -> None:
    lock, _ = debian_packages
    tree = composer.installed_tree(lock, {}, tmp_path / "work")
    marker, secret = tmp_path / "escaped", tmp_path / "host-secret"
    secret.write_text("host secret\n")
    debs = tmp_path / "debs"
    debs.mkdir()
    deb = build_deb(debs, "icescape", f"#!/bin/sh\nset -e\nperl - /var/lib/icescape {marker} "
                                      f"{secret} <<'EOF'\n{ESCAPE}EOF\n")
    run_in_chroot(tree, ["dpkg", "-i", f"{dpkg_install.PKG_MOUNT}/0/{deb.name}"],
                  binds=[(debs, f"{dpkg_install.PKG_MOUNT}/0")], what="dpkg -i icescape")
    check_nothing_escaped(hostile_results(tree, "/var/lib/icescape"), marker, secret)
    assert sorted(p.name for p in debs.iterdir()) == ["icescape", deb.name]


def test_compose_raw_disk_and_config_only_rebuild(
        composer: Composer, installed: tuple[Path, float], debian_packages: Packages,
        tmp_path: Path) -> None:
    pytest.importorskip("imagecomposer.compose.disk")
    lock, files = debian_packages
    spec = full_spec(tmp_path)
    out = tmp_path / "out/demo.raw"
    result = composer.compose(spec, lock, files, tmp_path / "work", out)
    assert result.cache_hit
    table = subprocess.run(["sfdisk", "--json", str(out)], capture_output=True, text=True,
                           check=True).stdout
    assert result.layout.root.partuuid in table.lower()
    assert not (tmp_path / "work/root").exists()  # temporary trees removed
    total = sum(result.timings.values())
    print(f"\nconfiguration-only rebuild {total:.1f} s: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    assert not mounts_under(tmp_path)



def processes_rooted_in(tree: Path) -> list[int]:
    """Processes whose root directory is ``tree`` or below (also once it is deleted): chrooted
    ones by their root link, sandboxed ones (pivot_root) by the source of their ``/`` mount."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                rooted = (proc / "root").readlink().as_posix().startswith(str(tree)) or any(
                    f[4] == "/" and f[3].startswith(str(tree))
                    for f in (line.split() for line in
                              (proc / "mountinfo").read_text().splitlines()))
            except OSError:
                continue
            if rooted:
                found.append(int(proc.name))
    return found


def test_timeout_kills_everything_in_the_chroot(installed: tuple[Path, float]) -> None:
    from imagecomposer.foundation.errors import CommandError

    tree, _ = installed
    start = time.monotonic()
    seen: list[list[int]] = []
    timer = threading.Timer(1.0, lambda: seen.append(processes_rooted_in(tree)))
    timer.start()
    with pytest.raises(CommandError, match="timed out"):
        run_in_chroot(tree, ["sh", "-c", "sleep 300 & sleep 300 & wait"], timeout=2)
    timer.join()
    assert len(seen[0]) >= 3  # the detector sees sandboxed processes ...
    assert time.monotonic() - start < 30
    time.sleep(0.5)
    assert processes_rooted_in(tree) == []  # the PID namespace took the daemons with it
    assert not mounts_under(tree)


INTERRUPTED_BUILD = """
import json, sys
from pathlib import Path
from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config, Core
from imagecomposer.families import family
from imagecomposer.lock import Lock
data = json.loads(Path(sys.argv[1]).read_text())
lock = Lock.from_json(data["lock"])
files = {k: Path(v) for k, v in data["files"].items()}
composer = Composer(Config(core=Core(cache_dir=Path(sys.argv[2]))))
print("started", flush=True)
composer.installed_tree(lock, files, Path(sys.argv[3]))
"""


def test_ctrl_c_during_install_leaves_nothing(debian_packages: Packages, tmp_path: Path) -> None:
    import json
    import os
    import signal
    import sys

    lock, files = debian_packages
    spec_file = tmp_path / "input.json"
    spec_file.write_text(json.dumps({"lock": lock.to_json(),
                                     "files": {k: str(v) for k, v in files.items()}}))
    cache, work = tmp_path / "cache", tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_BUILD, str(spec_file),
                             str(cache), str(work)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"started"
    time.sleep(8)  # well into extraction or dpkg --unpack
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    assert not (work / "root").exists()  # the partial tree is removed
    assert not cache.exists() or not list(cache.rglob("v2-*"))  # no cache entry, no partial
    assert not mounts_under(tmp_path)
    assert processes_rooted_in(tmp_path) == []
