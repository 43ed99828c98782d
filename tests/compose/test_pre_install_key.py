"""What the installed tree depends on once pre_install scripts run at installation: the
installed-tree cache key and the compose stage's inputs (issue 12).

A spec without pre_install scripts keys its tree and its compose stage exactly as before
(existing caches and workspace records stay valid); a spec with them keys on the scripts'
content, names and the environment they see, never on where they lie.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.compose.composer import Composer
from imagecomposer.compose.configure.scripts import PreInstall
from imagecomposer.config.model import Config, Core
from imagecomposer.foundation.fingerprint import OPTIONAL, canonical, fingerprint
from imagecomposer.lock import Lock
from imagecomposer.pipeline.inputs import compose_input
from imagecomposer.spec.model import Base, Customizations, Image, Scripts, Spec

EPOCH = 1_700_000_000
LOCK = Lock(os="debian", version="12", arch="amd64", kind="deb", repositories=(), packages=())


def spec_with(*pre: Path, post: tuple[Path, ...] = (), network: bool = False,
              version: str = "1.0") -> Spec:
    return Spec(image=Image(name="key-test", version=version,
                            base=Base(os="debian", version="12")),
                customizations=Customizations(scripts=Scripts(
                    pre_install=pre, post_install=post, network=network)))


def script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def key(composer: Composer, spec: Spec) -> str:
    return composer.tree_key(LOCK, PreInstall.of(spec))


def test_without_pre_install_the_keys_are_unchanged(tmp_path: Path) -> None:
    composer = Composer(Config(core=Core(cache_dir=tmp_path / "c", work_dir=tmp_path / "w")),
                        epoch=EPOCH)
    post = script(tmp_path / "post.sh", "echo post\n")
    plain = spec_with(post=(post,))
    assert PreInstall.of(plain) is None
    assert key(composer, plain) == composer.tree_key(LOCK) == f"{LOCK.hash}-e{EPOCH}"
    # the compose stage's value: the same canonical form as before the field existed
    value = compose_input(LOCK.hash, epoch=EPOCH, spec=plain)
    assert canonical(value) == {"lock": LOCK.hash, "epoch": EPOCH}
    assert fingerprint(value) == fingerprint(compose_input(LOCK.hash, epoch=EPOCH))


def test_pre_install_scripts_key_the_tree(tmp_path: Path) -> None:
    composer = Composer(Config(core=Core(cache_dir=tmp_path / "c", work_dir=tmp_path / "w")),
                        epoch=EPOCH)
    pre = script(tmp_path / "a/pre.sh", "echo one\n")
    base = key(composer, spec_with(pre))
    assert base.startswith(f"{LOCK.hash}-e{EPOCH}-p") and base != composer.tree_key(LOCK)
    assert fingerprint(compose_input(LOCK.hash, epoch=EPOCH, spec=spec_with(pre))) != \
        fingerprint(compose_input(LOCK.hash, epoch=EPOCH))

    # the same content elsewhere, and a changed post_install script: the same tree
    same = script(tmp_path / "b/pre.sh", "echo one\n")
    post = script(tmp_path / "post.sh", "echo post\n")
    assert key(composer, spec_with(same)) == base
    assert key(composer, spec_with(pre, post=(post,))) == base

    # what the script is, is called, and sees: another tree each
    others = {
        "content": spec_with(script(tmp_path / "c/pre.sh", "echo two\n")),
        "name": spec_with(script(tmp_path / "d/other.sh", "echo one\n")),
        "network": spec_with(pre, network=True),
        "image version (IMAGECOMPOSER_IMAGE_VERSION)": spec_with(pre, version="2.0"),
        "a second script": spec_with(pre, same),
    }
    keys = {what: key(composer, s) for what, s in others.items()}
    assert base not in keys.values(), keys
    assert len(set(keys.values())) == len(keys), keys
    # the epoch still counts
    later = Composer(composer.config, epoch=EPOCH + 1)
    assert key(later, spec_with(pre)) != base
    # edited in place: the key follows the content
    pre.write_text("echo edited\n")
    assert key(composer, spec_with(pre)) != base


def test_optional_field_left_out_while_default() -> None:
    @attrs.frozen
    class Before:
        a: int

    @attrs.frozen
    class After:
        a: int
        b: str | None = attrs.field(default=None, metadata=OPTIONAL)

    assert fingerprint(After(1)) == fingerprint(Before(1))
    assert fingerprint(After(1, "x")) != fingerprint(Before(1))
    assert canonical(After(1, "x")) == {"a": 1, "b": "x"}
