"""The apt model against apt itself, on small hermetic archives (no network).

Each case builds the situation one of apt's rules decides, resolves it with imagecomposer,
runs ``apt-get -s install`` of the same request on the same verified index files, and
checks both that the two agree (names and versions) and that the rule chose what apt's
source says it chooses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.families import provider_for
from imagecomposer.families.deb import DebProvider
from imagecomposer.families.deb.aptpool import creation_rank
from imagecomposer.resolver import Resolver
from imagecomposer.resolver.resolution import Resolution
from tests.fixtures.aptsim import AptSim
from tests.fixtures.debrepo import Deb, DebArchive
from tests.packages.conftest import make_spec

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")


def resolve_like_apt(config: Config, archive: DebArchive, tmp_path: Path, *debs: Deb,
                     install: tuple[str, ...], recommends: bool = False,
                     remove: tuple[str, ...] = ()) -> tuple[Resolution, dict[str, str]]:
    """Publish ``debs``, resolve ``install`` and assert apt installs the same; both."""
    archive.add("bookworm", *debs)
    archive.publish()
    spec = make_spec(install, recommends=recommends, remove=remove)
    provider = provider_for(spec, config)
    assert isinstance(provider, DebProvider)
    resolution = Resolver(config).resolve(spec, provider=provider)
    ours = {p.name: p.version for p in resolution.lock.packages}
    request = [*resolution.lock.requested, *(f"{n}-" for n in remove)]
    theirs, _ = AptSim(tmp_path / "apt", provider.index_files()).simulate(
        request, recommends=recommends)
    assert ours == theirs
    return resolution, ours


def test_first_alternative_even_when_the_archive_prefers_another(
        config: Config, archive: DebArchive, tmp_path: Path) -> None:
    # the case: bsd-mailx's "default-mta | mail-transport-agent" is exim (the
    # provider of default-mta), however often other packages name sendmail first
    fans = [Deb(f"fan{i}", depends="sendmail-bin | mail-transport-agent") for i in range(4)]
    res, got = resolve_like_apt(
        config, archive, tmp_path, *fans,
        Deb("exim4-daemon-light", provides="mail-transport-agent, default-mta"),
        Deb("sendmail-bin", provides="mail-transport-agent"),
        Deb("bsd-mailx", depends="default-mta | mail-transport-agent"),
        install=("bsd-mailx",))
    assert "exim4-daemon-light" in got and "sendmail-bin" not in got
    assert res.explain("exim4-daemon-light").splitlines()[0] == (
        "exim4-daemon-light 1.0: first alternative of bsd-mailx: default-mta | "
        "mail-transport-agent (exim4-daemon-light provides default-mta)")


def test_first_alternative_without_recommends(config: Config, archive: DebArchive,
                                             tmp_path: Path) -> None:
    # maven's case: the first alternative wins even if a later one is smaller
    others = [Deb(f"user{i}", depends="java-runtime-headless | default-jre-headless")
              for i in range(3)]
    _, got = resolve_like_apt(
        config, archive, tmp_path, *others,
        Deb("default-jre-headless", depends="openjdk-jre-headless"),
        Deb("openjdk-jre-headless", provides="java-runtime-headless"),
        Deb("tiny-jre", provides="java-runtime-headless"),
        Deb("maven", depends="default-jre-headless | java-runtime-headless"),
        install=("maven",))
    assert {"default-jre-headless", "openjdk-jre-headless"} <= set(got)
    assert "tiny-jre" not in got


def test_satisfied_group_is_left_alone(config: Config, archive: DebArchive,
                                       tmp_path: Path) -> None:
    # "a | b" with b already marked (requested first): apt installs no a
    _, got = resolve_like_apt(
        config, archive, tmp_path, Deb("a-impl"), Deb("b-impl"),
        Deb("early", depends="b-impl"), Deb("late", depends="a-impl | b-impl"),
        install=("early", "late"))
    assert "b-impl" in got and "a-impl" not in got


def test_recommends_of_recommends_and_or_groups(config: Config, archive: DebArchive,
                                                tmp_path: Path) -> None:
    _, got = resolve_like_apt(
        config, archive, tmp_path,
        Deb("desk", recommends="panel, theme-a | theme-b"),
        Deb("panel", recommends="plugins"), Deb("plugins"),
        Deb("theme-a"), Deb("theme-b"),
        install=("desk",), recommends=True)
    assert {"panel", "plugins", "theme-a"} <= set(got) and "theme-b" not in got


def test_conflict_of_a_requested_package_makes_apt_fall_back(
        config: Config, archive: DebArchive, tmp_path: Path) -> None:
    _, got = resolve_like_apt(
        config, archive, tmp_path, Deb("red", conflicts="blue"), Deb("blue"), Deb("green"),
        Deb("tool", depends="blue | green"),
        install=("red", "tool"))
    assert "green" in got and "blue" not in got


def test_uninstallable_first_alternative(config: Config, archive: DebArchive,
                                         tmp_path: Path) -> None:
    # the first alternative's own dependency cannot be met: apt discards it, takes the
    # second, and what the first had already pulled in is not installed either
    _, got = resolve_like_apt(
        config, archive, tmp_path,
        Deb("first", depends="helper, missing-lib"), Deb("helper"), Deb("second"),
        Deb("app", depends="first | second"),
        install=("app",))
    assert "second" in got and not {"first", "helper"} & set(got)


def test_provider_order_priority_essential_and_creation(config: Config, archive: DebArchive,
                                                        tmp_path: Path) -> None:
    # virtual "editor": Priority decides; "pager": equal priorities, the package apt
    # created last wins; "shell": Important (the flag, not the Priority) before Priority
    _, got = resolve_like_apt(
        config, archive, tmp_path,
        Deb("ed-optional", provides="editor"),
        Deb("ed-important", provides="editor", priority="important"),
        Deb("pager-one", provides="pager"), Deb("pager-two", provides="pager"),
        Deb("sh-standard", provides="shell", priority="standard"),
        Deb("sh-flagged", provides="shell", fields={"Important": "yes"}),
        Deb("needs", depends="editor, pager, shell"),
        install=("needs",))
    assert {"ed-important", "pager-two", "sh-flagged"} <= set(got)
    assert not {"ed-optional", "pager-one", "sh-standard"} & set(got)


def test_recommends_off_and_removed_names(config: Config, archive: DebArchive,
                                         tmp_path: Path) -> None:
    _, got = resolve_like_apt(
        config, archive, tmp_path,
        Deb("svc", depends="logger-a | logger-b", recommends="extra"),
        Deb("logger-a"), Deb("logger-b"), Deb("extra"),
        install=("svc",), recommends=True, remove=("logger-a",))
    assert "logger-b" in got and "logger-a" not in got and "extra" in got


def test_creation_rank_follows_apt_cache_generator() -> None:
    # index 1 mentions "late" only in a Conflicts after another index named it: no record
    first = "\n" + "\n".join(["pkg-a", "~late", "pkg-b"]) + "\n"
    second = "\n" + "\n".join(["-late", "late", "-early"]) + "\n"
    ranks = {n: creation_rank(n, [first, second]) for n in ("pkg-a", "pkg-b", "late", "early")}
    assert sorted(ranks, key=ranks.__getitem__) == ["pkg-a", "pkg-b", "late", "early"]
    assert ranks["late"] > ranks["pkg-b"]  # its ":any" mention created no record
