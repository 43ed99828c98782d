"""A third package family, written entirely in this file, registered from here: every
family-dependent call site of the build dispatches to it, with no change elsewhere.

The family is pacman-like (libsolv's ``DISTTYPE_ARCH``, ``.fpk`` package files, its own
database file and package URLs); its provider serves a few packages from a directory. The
test walks the build's call sites in order: the packages stage's request (the stage key),
provider and pool, the resolver, the package store's file names, ``--locked`` with
``remove:``, the composer's install and its configuration hooks, the SBOM, ``inspect``.
What it does not do is read or write files that name the family (a lock file, a global
configuration): those are validated against ``settings.PackageFamily``, where a shipped
family adds its name (docs/architecture.md, "Adding a family").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import solv

from imagecomposer.compose import composer as composer_module
from imagecomposer.compose.composer import Composer
from imagecomposer.compose.layout import Layout, PlannedPartition
from imagecomposer.config.model import Config, Core, ProviderConfig
from imagecomposer.export.sbom import collect
from imagecomposer.families import (
    Family,
    InstalledPackage,
    TreeContext,
    family,
    family_for,
    provider_for,
    register,
    unregister,
)
from imagecomposer.families.licenses import PackageLicense
from imagecomposer.families.request import PackageRequest, package_request
from imagecomposer.foundation.errors import LockError, PackageNotFound
from imagecomposer.foundation.events import EventSink
from imagecomposer.foundation.rootfs import Root
from imagecomposer.inspect.packages import installed as inspect_installed
from imagecomposer.lock import Lock, LockedPackage, LockedRepository
from imagecomposer.pipeline.inputs import packages_input
from imagecomposer.pipeline.packages import refuse_removed, run_packages_stage
from imagecomposer.spec.model import Base, Customizations, Image, Packages, Spec

KIND = "fakepac"
DB = "/var/lib/fakepac/local"
# name, version, requires
PACKAGES = (("fake-base", "1.0-1", ("libfake",)), ("libfake", "2.1-3", ()),
            ("hello", "0.9-1", ("libfake",)), ("unwanted", "1.0-1", ()))
TREE_FILES = {
    "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "/etc/group": "root:x:0:\n",
    "/etc/shadow": "root:*:19000:0:99999:7:::\n",
    "/etc/gshadow": "root:*::\n",
    "/usr/lib/systemd/system/systemd-networkd.service":
        "[Unit]\nDescription=networkd\n[Install]\nWantedBy=multi-user.target\n",
}


class FakeProvider:
    """A Provider serving :data:`PACKAGES` from ``directory`` (files ``<name>.fpk``)."""

    kind = KIND

    def __init__(self, request: PackageRequest, directory: Path, calls: list[str]) -> None:
        self.request = request
        self.directory = directory
        self.calls = calls

    @property
    def arch(self) -> str:
        return "x86_64"

    def repositories(self) -> Sequence[LockedRepository]:
        return [LockedRepository(name="core", url=self.directory.as_uri(), kind=KIND)]

    def load(self, pool: Any) -> list[Any]:
        repo = pool.add_repo("core")
        for name, version, requires in PACKAGES:
            solvable = repo.add_solvable()
            solvable.name, solvable.evr, solvable.arch = name, version, "x86_64"
            solvable.add_deparray(solv.SOLVABLE_PROVIDES, pool.rel2id(
                pool.str2id(name), pool.str2id(version), solv.REL_EQ))
            for dep in requires:
                solvable.add_deparray(solv.SOLVABLE_REQUIRES, pool.str2id(dep))
        repo.internalize()
        return [repo]

    def base_request(self) -> Sequence[str]:
        return ["fake-base"]

    def jobs(self, pool: Any) -> list[Any]:
        return []

    def solver_flags(self) -> dict[int, int]:
        return {}

    def preferences(self, pool: Any, request: Sequence[str], *, removed: Sequence[str],
                    recommends: bool) -> None:
        return None

    def request_jobs(self, pool: Any, text: str, how: int) -> list[Any]:
        selection = pool.select(text, solv.Selection.SELECTION_NAME)
        if selection.isempty():
            raise PackageNotFound(f"Package not found: {text}")
        return list(selection.jobs(how))

    def remove_jobs(self, pool: Any, install: Sequence[str], remove: Sequence[str]
                    ) -> list[Any]:
        return [job for text in remove
                for job in pool.select(text, solv.Selection.SELECTION_NAME).jobs(
                    solv.Job.SOLVER_LOCK)]

    def annotate_problems(self, text: str) -> str:
        return text

    def locked(self, solvable: Any) -> LockedPackage:
        path = self.directory / f"{solvable.name}.fpk"
        data = path.read_bytes()
        return LockedPackage(name=solvable.name, version=solvable.evr, arch=solvable.arch,
                             repository="core", url=path.as_uri(),
                             sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                             kind=KIND, maintainer="Fake Packager <fake@example.invalid>")

    def verify_package(self, package: LockedPackage, path: Path) -> None:
        self.calls.append(f"verify {package.name}")
        if not path.read_bytes().startswith(b"FPK\n"):
            raise AssertionError(f"{path} is not a fake package")


class FakeFamily(Family):
    kind = KIND  # type: ignore[assignment]
    package_extension = "fpk"
    manager = "fakepac"
    database = "fakepac local db"
    database_paths = (DB,)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.calls: list[str] = []

    def request(self, spec: Spec) -> PackageRequest:
        self.calls.append("request")
        request = package_request(spec)
        return attrs.evolve(request, install=(*request.install, "libfake"))

    def provider(self, request: PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None) -> FakeProvider:
        self.calls.append("provider")
        return FakeProvider(request, self.directory, self.calls)

    def new_pool(self, arch: str) -> Any:
        self.calls.append(f"new_pool {arch}")
        pool = solv.Pool()
        assert pool.setdisttype(solv.Pool.DISTTYPE_ARCH) >= 0
        pool.setarch(arch)
        return pool

    def removed(self, lock: Lock, remove: Sequence[str]) -> dict[str, str]:
        self.calls.append("removed")
        return {p.name: p.name for p in lock.packages if p.name in remove}

    def install(self, lock: Lock, packages: Mapping[str, Path], tree: Path, *,
                timeout: float | None = None, events: EventSink | None = None,
                parallel: int = 1, epoch: int | None = None,
                pre_install: Callable[[Path], None] | None = None) -> None:
        self.calls.append("install")
        tree.mkdir(parents=True, exist_ok=True)
        first = self.bootstrap(lock, packages) if pre_install is not None else lock.packages
        with Root(tree) as root:
            for path, text in TREE_FILES.items():
                root.write(path, text)
        for phase in (first, [p for p in lock.packages if p not in first]):
            if phase is not first and pre_install is not None:
                pre_install(tree)
            with Root(tree) as root:
                for package in phase:
                    root.write(f"/usr/share/fakepac/{package.name}",
                               Path(packages[package.name]).read_bytes())
        with Root(tree) as root:
            root.write(DB, "".join(f"{p.name}\t{p.version}\t{p.arch}\n"
                                   for p in lock.packages))

    def bootstrap(self, lock: Lock, packages: Mapping[str, Path]) -> tuple[LockedPackage, ...]:
        return lock.packages[:1]

    def after_install(self, ctx: TreeContext) -> None:
        self.calls.append("after_install")

    def configure_repositories(self, ctx: TreeContext) -> list[Path]:
        self.calls.append("configure_repositories")
        with Root(ctx.tree) as root:
            return [root.write("/etc/fakepac.conf", "".join(
                f"[{r.name}]\nServer = {r.url}\n" for r in ctx.lock.repositories))]

    def before_initramfs(self, ctx: TreeContext) -> None:
        self.calls.append(f"before_initramfs verity={ctx.verity_root}")

    def finish(self, ctx: TreeContext) -> None:
        self.calls.append("finish")

    def installed_packages(self, tree: Path) -> dict[str, InstalledPackage]:
        self.calls.append("installed_packages")
        with Root(tree) as root:
            text = root.read_text(DB)
        rows = (line.split("\t") for line in text.splitlines())
        return {name: InstalledPackage(name, version, arch) for name, version, arch in rows}

    def purl(self, lock: Lock, package: LockedPackage) -> str:
        return f"pkg:alpm/{lock.os}/{package.name}@{package.version}?arch={package.arch}"

    def license(self, tree: Path, package: LockedPackage,
                installed: InstalledPackage) -> PackageLicense:
        return PackageLicense("MIT")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeFamily]:
    directory = tmp_path / "repo"
    directory.mkdir()
    for name, version, _ in PACKAGES:
        (directory / f"{name}.fpk").write_bytes(f"FPK\n{name} {version}\n".encode())
    added = register(FakeFamily(directory))
    assert isinstance(added, FakeFamily)
    try:
        yield added
    finally:
        unregister(KIND)


def make_spec(install: tuple[str, ...] = ("hello",), remove: tuple[str, ...] = ()) -> Spec:
    return Spec(image=Image(name="fake", version="1",
                            base=Base(os="fakeos", version="1")),  # type: ignore[arg-type]
                customizations=Customizations(
                    packages=Packages(install=install, remove=remove), bootloader="none"))


def make_config(tmp_path: Path) -> Config:
    return Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"),
                  providers={"fakeos": ProviderConfig(
                      kind=KIND, mirror=None, security_mirror=None)})  # type: ignore[arg-type]


def root_only_layout() -> Layout:
    root = PlannedPartition(
        name="root", type="root", type_guid="4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        filesystem="ext4", start=1 << 20, size=(1 << 30) - (2 << 20),
        partuuid="00000000-0000-4000-8000-000000000002",
        fsuuid="00000000-0000-4000-8000-000000000003", number=1, mountpoint="/")
    return Layout(table="gpt", size=1 << 30, disk_id="00000000-0000-4000-8000-000000000001",
                  partitions=(root,))


class DictView:
    """An ``inspect`` View over ``{image path: bytes}`` (no directories)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        return {p: self.files.get(p) for p in paths}

    def listdir_many(self, paths: Iterable[str]) -> dict[str, list[Any] | None]:
        return {p: None for p in paths}

    def readlink_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        return {p: None for p in paths}


def test_the_registry_finds_the_new_family(fake: FakeFamily, tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert family(KIND) is fake
    assert family_for("fakeos", config) is fake
    assert isinstance(provider_for(make_spec(), config), FakeProvider)
    assert fake.calls == ["request", "provider"]


def test_every_call_site_of_a_build_dispatches_to_it(
        fake: FakeFamily, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path)
    spec = make_spec()

    # packages stage: the request the stage key hashes is the family's
    request = packages_input(spec, config).request
    assert request.install == ("hello", "libfake")
    assert fake.calls == ["request"]

    # resolve (the family's provider and pool), fetch into the store (its extension)
    lock_path = tmp_path / "work/fake.lock.json"
    result = run_packages_stage(spec, config, lock_path=lock_path)
    try:
        lock = result.lock
        assert lock.kind == KIND
        assert [p.name for p in lock.packages] == ["libfake", "fake-base", "hello"]
        assert "new_pool x86_64" in fake.calls and "provider" in fake.calls
        assert {f"verify {p.name}" for p in lock.packages} <= set(fake.calls)
        for package in lock.packages:
            stored = result.packages[package.name]
            assert stored.name == f"{package.sha256}.fpk"
            assert stored.is_relative_to(config.package_cache_dir)
        assert fake.filename(lock.packages[0]) == "libfake_2.1-3_x86_64.fpk"
    finally:
        result.cache.close()

    # build --locked with remove: the family's rule refuses the lock (reading a lock file
    # of a new family also needs its name in settings.PackageFamily: not done here)
    with pytest.raises(LockError, match=r"fake-base \(remove: fake-base\)"):
        refuse_removed(lock, packages_input(make_spec(remove=("fake-base",)), config).request)
    refuse_removed(lock, request)
    assert fake.calls.count("removed") == 2

    # compose: install with the family's tool, its hooks in their order
    composer = Composer(config)
    fake.calls.clear()
    tree = composer.installed_tree(lock, result.packages, tmp_path / "compose",
                                   use_cache=False)
    assert fake.calls == ["install"]
    # the fake tree has no kernel: the (family-generic) initramfs step has nothing to build
    monkeypatch.setattr(composer_module.initramfs_cache, "build", lambda *a, **k: [])
    trees = composer.configure(spec, tree, root_only_layout(), lock)
    assert trees == {"root": tree}
    assert fake.calls == ["install", "after_install", "configure_repositories",
                          "before_initramfs verity=False", "finish"]
    assert (tree / "etc/fakepac.conf").read_text().startswith("[core]\nServer = file://")

    # the SBOM reads the family's database, purls and licenses
    fake.calls.clear()
    sbom = {p.name: p for p in collect(lock, tree)}
    assert fake.calls == ["installed_packages"]
    assert sbom["hello"].purl == "pkg:alpm/fakeos/hello@0.9-1?arch=x86_64"
    assert sbom["hello"].license == PackageLicense("MIT")
    assert sbom["hello"].supplier == "Fake Packager <fake@example.invalid>"
    assert sbom["hello"].kind == KIND

    # inspect finds the family's database in an image and names its manager
    found = inspect_installed(DictView({DB: (tree / DB.lstrip("/")).read_bytes()}), tmp_path)
    assert found.manager == "fakepac"
    assert [p.name for p in found.items] == ["fake-base", "hello", "libfake"]
