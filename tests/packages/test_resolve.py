"""Resolution semantics against a hermetic signed archive (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import DependencyError, PackageNotFound
from imagecomposer.lock import Lock
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Repository
from tests.fixtures.debrepo import Deb, DebArchive, GpgKey, RepoServer
from tests.packages.conftest import make_spec


def names(resolution: object) -> dict[str, str]:
    lock: Lock = resolution.lock  # type: ignore[attr-defined]
    return {p.name: p.version for p in lock.packages}


def republish(archive: DebArchive, *debs: Deb, suite: str = "bookworm") -> None:
    archive.add(suite, *debs)
    archive.publish()


def test_minimal_base_request(config: Config) -> None:
    res = Resolver(config).resolve(make_spec())
    got = names(res)
    # Essential + Priority required + the profile's bootable set, nothing optional
    assert {"base-files", "dpkg", "bash", "libc6", "systemd-sysv", "systemd", "udev",
            "initramfs-tools", "initramfs-tools-core", "linux-image-amd64",
            "systemd-boot"} == set(got)
    assert "less" not in got  # Priority important is for server only
    lock = res.lock
    assert lock.os == "debian" and lock.arch == "amd64" and lock.kind == "deb"
    assert [r.name for r in lock.repositories] == ["bookworm", "bookworm-updates",
                                                   "bookworm-security"]
    bash = lock.package("bash")
    assert bash is not None and bash.essential and bash.priority == "required"
    assert bash.url.endswith(".deb") and len(bash.sha256) == 64 and bash.size > 0
    assert set(bash.depends) == {"libc6", "base-files"}
    # a lock round-trips through its canonical JSON
    assert Lock.from_json(lock.to_json()) == lock


def test_server_adds_important_and_openssh(config: Config) -> None:
    got = names(Resolver(config).resolve(make_spec(base_type="server")))
    assert {"less", "openssh-server"} <= set(got)
    assert "xauth" not in got  # Recommends are off by default


def test_recommends_on(config: Config) -> None:
    res = Resolver(config).resolve(make_spec(("openssh-server",), recommends=True))
    assert "xauth" in names(res)
    assert "recommended by openssh-server" in res.explain("xauth")


def test_pre_depends_ordering(config: Config) -> None:
    order = [p.name for p in Resolver(config).resolve(make_spec()).lock.packages]
    assert order.index("libc6") < order.index("dpkg")  # dpkg Pre-Depends on libc6
    assert order.index("libc6") < order.index("bash")


def test_alternatives_follow_apt_order(config: Config, archive: DebArchive) -> None:
    # libsolv alone picks alphabetically (aaa-mta); apt takes the first alternative
    republish(archive,
              Deb("aaa-mta", provides="mail-transport-agent"),
              Deb("zzz-mta", provides="mail-transport-agent"),
              Deb("mailer", depends="zzz-mta | aaa-mta"),
              Deb("other", depends="zzz-mta | mail-transport-agent"))
    got = names(Resolver(config).resolve(make_spec(("mailer", "other"))))
    assert "zzz-mta" in got and "aaa-mta" not in got


def test_virtual_request_prefers_real_package(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("awk-a", provides="awk"), Deb("awk", "2.0"),
              Deb("tool", depends="awk"))
    got = names(Resolver(config).resolve(make_spec(("tool",))))
    assert "awk" in got and "awk-a" not in got


def test_virtual_name_request(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("exim-light", provides="mail-transport-agent"))
    assert "exim-light" in names(Resolver(config).resolve(make_spec(("mail-transport-agent",))))


def test_conflicts_and_breaks(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("red", conflicts="blue"), Deb("blue"),
              Deb("green", breaks="red (<< 2.0)"))
    with pytest.raises(DependencyError, match=r"^Failed to resolve dependencies") as exc:
        Resolver(config).resolve(make_spec(("red", "blue")))
    assert "red" in str(exc.value) and "blue" in str(exc.value)
    with pytest.raises(DependencyError, match="green"):
        Resolver(config).resolve(make_spec(("red", "green")))


def test_version_pins(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("tool", "1.0"), Deb("tool", "2.0"))
    assert names(Resolver(config).resolve(make_spec(("tool",))))["tool"] == "2.0"
    assert names(Resolver(config).resolve(make_spec(("tool=1.0",))))["tool"] == "1.0"
    assert names(Resolver(config).resolve(make_spec(("tool>=1.5",))))["tool"] == "2.0"
    assert names(Resolver(config).resolve(make_spec(("tool << 2.0",))))["tool"] == "1.0"
    with pytest.raises(PackageNotFound, match=r"Package not found: tool=3.0"):
        Resolver(config).resolve(make_spec(("tool=3.0",)))


def test_globs(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("py-one"), Deb("py-two"), Deb("pz-three"))
    got = names(Resolver(config).resolve(make_spec(("py-*",))))
    assert {"py-one", "py-two"} <= set(got) and "pz-three" not in got


def test_unknown_package_suggests(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("nginx"))
    with pytest.raises(PackageNotFound) as exc:
        Resolver(config).resolve(make_spec(("ngnix",)))
    assert str(exc.value) == "Package not found: ngnix (did you mean nginx?)"


def test_unsatisfiable(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("needy", depends="ghost (>= 2)"), Deb("ghost", "1"))
    with pytest.raises(DependencyError) as exc:
        Resolver(config).resolve(make_spec(("needy",)))
    text = str(exc.value)
    assert text.startswith("Failed to resolve dependencies")
    assert "needy" in text and "ghost >= 2" in text


def test_remove_locks_out(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("fancy", recommends="extra"), Deb("extra"),
              Deb("app", depends="fancy"))
    got = names(Resolver(config).resolve(make_spec(("fancy",), remove=("extra",),
                                                   recommends=True)))
    assert "fancy" in got and "extra" not in got
    with pytest.raises(DependencyError, match="Failed to resolve dependencies") as exc:
        Resolver(config).resolve(make_spec(("app",), remove=("fancy",)))
    assert "fancy" in str(exc.value)


def test_explain_and_repr(config: Config) -> None:
    res = Resolver(config).resolve(make_spec())
    text = res.explain("initramfs-tools-core")
    assert text.splitlines()[0].startswith("initramfs-tools-core 0.142: required by "
                                           "initramfs-tools")
    assert "requested by the OS profile" in text
    assert "not part of this resolution" in res.explain("nope")
    assert "<Resolution debian 12 amd64:" in repr(res)
    assert "<table>" in res._repr_html_() and "systemd-sysv" in res._repr_html_()


def test_multi_repo_priority_and_allow_list(tmp_path: Path, config: Config, www: Path,
                                            gpg_key: GpgKey, server: RepoServer) -> None:
    extra = DebArchive(www / "extra", gpg_key)
    extra.add("stable", Deb("tool", "0.9"), Deb("myapp", "1.0"), Deb("libc6", "9.9",
                                                                     arch="amd64"))
    extra.publish()
    main = DebArchive(www / "debian", gpg_key)  # the fixture archive, plus tool 1.0
    main.add("bookworm", Deb("tool", "1.0"))
    main.suites["bookworm"]["main"] += []
    repo = Repository(name="internal", url=server.url + "/extra", suite="stable",
                      key=gpg_key.armored)
    # default priority 500: the higher version wins; the allow-list hides libc6 9.9
    spec = make_spec(("tool", "myapp"), repositories=(repo,))
    res = Resolver(config).resolve(spec)
    got = {p.name: (p.version, p.repository) for p in res.lock.packages}
    assert got["myapp"] == ("1.0", "internal")
    assert got["libc6"][1] == "internal"  # no allow-list yet: 9.9 > 2.36
    allowed = Repository(name="internal", url=server.url + "/extra", suite="stable",
                         key=gpg_key.armored, packages=("myapp*", "tool"))
    got = {p.name: (p.version, p.repository) for p in
           Resolver(config).resolve(make_spec(("myapp",), repositories=(allowed,))).lock.packages}
    assert got["libc6"] == ("2.36-9", "bookworm")
    # 990 preferred: the lower version from the preferred repository wins
    preferred = Repository(name="internal", url=server.url + "/extra", suite="stable",
                           key=gpg_key.armored, priority=990, packages=("tool",))
    got = {p.name: (p.version, p.repository) for p in
           Resolver(config).resolve(make_spec(("tool",), repositories=(preferred,))).lock.packages}
    assert got["tool"] == ("0.9", "internal")
    # negative: never used, not even listed in the lock
    never = Repository(name="internal", url=server.url + "/extra", suite="stable",
                       key=gpg_key.armored, priority=-1)
    res = Resolver(config).resolve(make_spec(repositories=(never,)))
    assert [r.name for r in res.lock.repositories if r.name == "internal"] == []
    with pytest.raises(PackageNotFound):
        Resolver(config).resolve(make_spec(("myapp",), repositories=(never,)))


def test_local_directory_and_file_url(config: Config, tmp_path: Path, gpg_key: GpgKey,
                                      archive: DebArchive) -> None:
    debs = tmp_path / "local-debs"
    debs.mkdir()
    Deb("localtool", "3.0", depends="bash").build(debs)
    res = Resolver(config).resolve(make_spec(("localtool",), repositories=(
        Repository(name="local", url=str(debs)),)))
    pkg = res.lock.package("localtool")
    assert pkg is not None and pkg.repository == "local" and pkg.url.startswith("file://")
    assert Path(pkg.url[len("file://"):]).is_file()
    # a file:// apt repository is verified like a remote one
    res = Resolver(config).resolve(make_spec(("systemd",), repositories=(
        Repository(name="mirror", url=archive.root.as_uri(), suite="bookworm",
                   key=gpg_key.keyring, packages=("nothing",)),)))
    assert json.loads(res.lock.to_json())["repositories"][-1]["name"] == "mirror"
