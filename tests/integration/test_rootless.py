"""Rootless builds end to end (issue 14): an unprivileged user with subordinate ids builds
the verity example (with the verity test's check unit, an authorized SSH key, Secure Boot
signing, signed outputs and every output format: conftest.verity_check_spec) with the CLI,
from the lock of the session's root build; every output is byte for byte the root build's
(the disk images in every format, SBOMs, lock, manifest, signatures, provenance,
SHA256SUMS); root's files are root's, the shadow group owns /etc/shadow, setuid bits are
there, the admin's home and SSH key are the admin's; the outputs belong to the user,
nothing of the user's ids is left outside its home; the image boots to a login prompt under
Secure Boot enforced when the user boots it (QEMU and OVMF's variables as the user).

On the host's disk the installed tree's files carry the mapped ids: root's are the user's,
the shadow group's the user's first subordinate gid + 41.

The minimal example is not built as the user: its bytes without root are checked by the
cluster test (a worker's build) and ``check_reproducible`` (fresh caches), and what the user
namespace changes (ids, setuid bits, the shadow group, a user's SSH key) is in this build.

Time added to CI: one build as the user (its package and metadata caches seeded from the
session's: nothing is downloaded again) and one boot (QEMU as the user: TCG when /dev/kvm is
root's only); the root builds are the session's, shared with the other integration tests.
The verity spec's formats, checksums and signatures cost ~75 s in each of the two verity
builds (root's and the user's), the byte comparisons ~35 s (docs/rootless.md, "Measured
figures").
"""

from __future__ import annotations

import contextlib
import difflib
import filecmp
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.boot import file_info, read_file
from imagecomposer.config.model import Config
from imagecomposer.families.deb.verity_initrd import OPENED_MARKER
from imagecomposer.inspect import compare
from imagecomposer.pipeline.build import BuildReport
from imagecomposer.sign import verify_file
from imagecomposer.spec import Spec
from tests.unprivileged import User

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]
EXAMPLES = Path(__file__).parents[2] / "examples"
NAMES = ("debian-12-verity",)


def explain(root: Path, rootless: Path) -> str:
    """What differs between a root build's output and the rootless build's, for the
    failure message: the files inside a disk image (``compare --mode files``, then the
    first differing byte), a diff of a text file."""
    if root.suffix == ".raw":
        report = compare(root, rootless, mode="files")
        with root.open("rb") as a, rootless.open("rb") as b:
            offset = 0
            while (block := a.read(1 << 20)) == (other := b.read(1 << 20)) and block:
                offset += len(block)
            first = offset + next(
                (i for i, (x, y) in enumerate(zip(block, other, strict=False)) if x != y),
                min(len(block), len(other)))
        return f"{root.name}: first differing byte {first}\n{report.text()}"
    lines = None
    if root.stat().st_size < 1 << 24:  # not a disk image
        with contextlib.suppress(UnicodeDecodeError):
            lines = [p.read_text().splitlines() for p in (root, rootless)]
    if lines is None:
        return (f"{root.name}: binary, differs (sizes {root.stat().st_size}, "
                f"{rootless.stat().st_size})")
    diff = difflib.unified_diff(*lines, "root", "rootless", lineterm="", n=1)
    return f"{root.name}:\n" + "\n".join(list(diff)[:60])


@pytest.fixture(scope="module")
def builds(rootless_user: User, example_build: ExampleBuild, verity_check_spec: Path,
           config: Config) -> dict[str, tuple[Path, Path]]:
    """name -> (the root build's outputs, the user's outputs), the user's built with the
    CLI from a copy of the specs in its home and the root build's lock."""
    user = rootless_user
    specs = user.home / "specs"
    shutil.copytree(EXAMPLES, specs)
    for source in verity_check_spec.parent.iterdir():
        shutil.copy(source, specs / source.name)
    spec_files = {"debian-12-verity": specs / verity_check_spec.name}
    root_outs = {"debian-12-verity": example_build("debian-12-verity", verity_check_spec)[2]}
    # The session's downloads, not the archive again: the user's package and metadata caches
    # start as copies of the root builds' (downloading needs no privilege; the installed
    # trees, the initramfs and the disks are the user's own work)
    cache = user.home / ".cache/imagecomposer"  # the session's user: earlier tests used it
    cache.mkdir(parents=True, exist_ok=True)
    for kind in ("packages", "metadata"):
        shutil.rmtree(cache / kind, ignore_errors=True)
        if (config.core.cache_dir / kind).is_dir():
            subprocess.run(["cp", "-a", "--reflink=auto", config.core.cache_dir / kind,
                            cache / kind], check=True)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", user.home / ".cache"],
                   check=True)
    found: dict[str, tuple[Path, Path]] = {}
    for name, spec in spec_files.items():
        root_out = root_outs[name]
        out = user.home / "out" / name
        out.mkdir(parents=True)
        shutil.copy(root_out / f"{name}.lock.json", out)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", specs, user.home / "out"],
                       check=True)
        # --no-image-cache and the workspace removed once checked: a build's copies cost
        # ~3 GB of disk each, and the boots need the outputs only
        began = time.monotonic()
        done = user.imagecomposer("build", spec, "--locked", "--no-image-cache", "-o", out,
                                  timeout=1800)
        print(f"{name}: rootless build {time.monotonic() - began:.0f} s")
        assert done.returncode == 0, done.stderr[-4000:]
        assert "building without root: root of a user namespace" in done.stderr
        work = user.home / ".local/state/imagecomposer/work"
        trees = list(work.glob(f"{name}-*/compose/*"))  # the installed tree, on the host
        assert trees, list(work.iterdir())
        for tree in trees:
            shadow, su = (tree / "etc/shadow").stat(), (tree / "usr/bin/su").stat()
            assert (shadow.st_uid, shadow.st_gid) == (user.uid, (user.subgid or 0) + 41)
            assert (su.st_uid, su.st_mode & 0o7777) == (user.uid, 0o4755)
        shutil.rmtree(work)
        found[name] = (root_out, out)
    return found


def test_outputs_are_the_users_and_nothing_is_left_outside_its_home(
        rootless_user: User, builds: dict[str, tuple[Path, Path]]) -> None:
    user = rootless_user
    for _, out in builds.values():
        for path in out.iterdir():
            info = path.stat()
            assert (info.st_uid, info.st_gid) == (user.uid, user.gid), path
            assert info.st_mode & stat.S_IRUSR
    # the workspaces were in the user's state directory (the fixture checked and removed them)
    assert (user.home / ".local/state/imagecomposer").is_dir()
    # the builds' own trees in the user's tree cache, holding the image's ids mapped
    shadows = list((user.home / ".cache/imagecomposer/trees").rglob("etc/shadow"))
    assert shadows, list((user.home / ".cache/imagecomposer").iterdir())
    for shadow in shadows:
        info = shadow.stat()
        assert (info.st_uid, info.st_gid) == (user.uid, (user.subgid or 0) + 41), shadow
    assert user.subuid is not None
    # other test users' directories (/tmp/ic-user-*) are left out: they share this user's
    # subordinate range, so what they hold would match
    roots = [r for r in ("/tmp", "/var/tmp", "/dev/shm", "/var/cache", "/run")
             if Path(r).is_dir()]
    found = subprocess.run(
        ["find", *roots, "-xdev", "(", "-path", f"/tmp/pytest-of-{user.name}", "-o", "-path",
         str(user.home), "-o", "-path", "/tmp/ic-user-*", ")", "-prune", "-o",
         "(", "-uid", str(user.uid), "-o", "(", "-uid", f"+{user.subuid - 1}", "-uid",
         f"-{user.subuid + 65535}", ")", ")", "-print"],
        capture_output=True, text=True, check=False).stdout.split()
    assert found == []


@pytest.mark.parametrize("name", NAMES)
def test_the_rootless_image_holds_what_the_root_build_holds(
        name: str, builds: dict[str, tuple[Path, Path]]) -> None:
    _, user_out = builds[name]
    image = user_out / f"{name}.raw"
    # what the image needs, not the host user's ids
    passwd = read_file(image, "root", "/etc/passwd").decode()
    group = read_file(image, "root", "/etc/group").decode()
    admin = next(line.split(":") for line in passwd.splitlines() if line.startswith("admin:"))
    shadow_gid = next(int(line.split(":")[2]) for line in group.splitlines()
                      if line.startswith("shadow:"))
    expected = {"/": (0o040755, 0, 0), "/etc/passwd": (0o100644, 0, 0),
                "/etc/shadow": (0o100640, 0, shadow_gid),
                "/usr/bin/passwd": (0o104755, 0, 0), "/usr/bin/su": (0o104755, 0, 0),
                "/usr/bin/sudo": (0o104755, 0, 0),
                "/home/admin": (0o040755, int(admin[2]), int(admin[3])),
                "/home/admin/.ssh/authorized_keys": (0o100600, int(admin[2]), int(admin[3])),
                "/root": (0o040700, 0, 0)}
    for path, (mode, uid, gid) in expected.items():
        info = file_info(image, "root", path)
        assert (info.mode, info.uid, info.gid) == (mode, uid, gid), path


@pytest.mark.parametrize("name", NAMES)
def test_the_rootless_build_gives_the_root_builds_bytes(
        name: str, builds: dict[str, tuple[Path, Path]]) -> None:
    """Every output, byte for byte: the disk images in every format, the SBOMs, the lock,
    the manifest, SHA256SUMS (and, where the spec signs, signatures and provenance)."""
    root_out, user_out = builds[name]
    names = sorted(p.name for p in root_out.iterdir() if p.is_file())
    assert names == sorted(p.name for p in user_out.iterdir() if p.is_file())
    differing = [n for n in names if not filecmp.cmp(root_out / n, user_out / n,
                                                     shallow=False)]
    explained = [explain(root_out / n, user_out / n) for n in differing]
    assert differing == [], "\n".join(explained)
    if (user_out / "SHA256SUMS.sig").exists():  # signed as the user (what it lists is equal)
        verify_file(user_out / "SHA256SUMS", user_out / "SHA256SUMS.sig",
                    user_out.parents[1] / "specs/release.pub")


def user_bin(user: User) -> str:
    """The user's PATH with ``~/.local/bin`` first, holding ``virt-fw-vars`` (what ``pip
    install --user virt-firmware`` gives: it enrolls the db certificate for --secure-boot)
    run by the user's interpreter, which may not be the one with the script beside it."""
    script = user.home / ".local/bin/virt-fw-vars"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!{user.interpreter}\nimport sys\nfrom virt.firmware.vars import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", user.home / ".local/bin"],
                   check=True)
    return f"{script.parent}:{user.env()['PATH']}"


def test_the_user_boots_the_rootless_image(rootless_user: User,
                                          builds: dict[str, tuple[Path, Path]]) -> None:
    """The verity build (a superset of the minimal one's boot: its boot chain is signed, so
    it boots with Secure Boot enforced and the spec's db certificate enrolled, OVMF's Secure
    Boot firmware and variables as the user)."""
    name = "debian-12-verity"
    _, out = builds[name]
    console = rootless_user.home / f"{name}.console.log"
    done = rootless_user.imagecomposer("boot", out / f"{name}.raw", "--secure-boot",
                                       "--sb-cert", rootless_user.home / "specs/db.crt",
                                       "--timeout", "600", "--console-log", console,
                                       timeout=900, env={"PATH": user_bin(rootless_user)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "login prompt reached" in done.stdout
    text = console.read_text(errors="replace")
    assert "Secure boot enabled" in text, text[-3000:]
    assert "debian-verity login:" in text
    assert OPENED_MARKER in text and "device-mapper: verity" in text
    assert re.search(r"VERITY-CHECK root: /dev/mapper/root +ro[,\s]", text)
    assert "VERITY-CHECK etc: read-only" in text and "VERITY-CHECK var: writable" in text
