"""One fingerprint for typed values: canonical, paths by content, secrets only slowly hashed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import attrs

from imagecomposer.foundation.fingerprint import (
    BY_NAME,
    SECRET,
    canonical,
    changed_fields,
    fingerprint,
    fingerprint_fields,
    path_digest,
)
from imagecomposer.spec.model import (
    Base,
    Customizations,
    Disk,
    Encryption,
    File,
    Image,
    Output,
    Partition,
    Spec,
    User,
)


@attrs.frozen
class Inner:
    flag: bool = False
    names: tuple[str, ...] = ()


@attrs.frozen
class Value:
    inner: Inner
    table: dict[str, int]
    source: Path | None = None
    where: Path | None = attrs.field(default=None, metadata=BY_NAME)
    password: str | None = attrs.field(default=None, metadata=SECRET)
    note: str = attrs.field(default="", eq=False)  # not part of the value's identity


def test_canonical_form_sorts_mappings_keeps_sequences_and_skips_non_eq_fields() -> None:
    one = Value(Inner(names=("a", "b")), {"x": 1, "y": 2}, note="one")
    two = Value(Inner(names=("a", "b")), {"y": 2, "x": 1}, note="two")
    assert fingerprint(one) == fingerprint(two)
    assert fingerprint(Value(Inner(names=("b", "a")), {"x": 1, "y": 2})) != fingerprint(one)
    assert fingerprint(frozenset({"b", "a"})) == fingerprint(frozenset({"a", "b"}))
    assert canonical(one) == {"inner": {"flag": False, "names": ["a", "b"]},
                              "table": {"x": 1, "y": 2}, "source": None, "where": None,
                              "password": None}


def test_fields_name_what_changed() -> None:
    old = fingerprint_fields(Value(Inner(), {"x": 1}))
    new = fingerprint_fields(Value(Inner(flag=True), {"x": 1}))
    assert old.digest != new.digest and set(old.fields) == set(new.fields)
    assert "inner.flag" in old.fields and "table.x" in old.fields
    assert changed_fields(old.fields, new.fields) == ["inner.flag"]
    grown = fingerprint_fields(Value(Inner(), {"x": 1, "z": 3}))
    assert changed_fields(old.fields, grown.fields) == ["table.z"]


def test_a_path_is_its_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("same\n")
    b.write_text("same\n")
    assert path_digest(a) == "file:" + hashlib.sha256(b"same\n").hexdigest()
    assert fingerprint(Value(Inner(), {}, source=a)) == fingerprint(Value(Inner(), {}, source=b))
    before = fingerprint(Value(Inner(), {}, source=a))
    a.write_text("changed\n")
    assert fingerprint(Value(Inner(), {}, source=a)) != before
    assert path_digest(tmp_path / "nothing") == "missing"
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    assert path_digest(tmp_path / "dangling") == "missing"


def test_a_directory_is_its_whole_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("hello\n")
    seen = {path_digest(tree)}

    def changed() -> bool:
        digest = path_digest(tree)
        new = digest not in seen
        seen.add(digest)
        return new

    (tree / "etc/motd").write_text("other\n")
    assert changed()  # content
    (tree / "etc/motd").chmod(0o600)
    assert changed()  # permission bits
    (tree / "etc/link").symlink_to("motd")
    assert changed()  # a new link
    (tree / "etc/link").unlink()
    (tree / "etc/link").symlink_to("elsewhere")
    assert changed()  # its target
    (tree / "var/empty").mkdir(parents=True)
    assert changed()  # an empty directory
    (tree / "etc/motd").rename(tree / "etc/motd.d")
    assert changed()  # a name
    copy = tmp_path / "copy"
    tree.rename(copy)
    assert path_digest(copy) in seen  # where the tree is does not matter


def test_by_name_paths_are_names_not_content(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = fingerprint(Value(Inner(), {}, where=out))
    (out / "image.raw").write_text("written by a build")
    assert fingerprint(Value(Inner(), {}, where=out)) == before
    assert fingerprint(Value(Inner(), {}, where=tmp_path / "elsewhere")) != before
    spec = Spec(image=Image("web", Base("debian", "12")), output=Output(directory=out))
    first = fingerprint(spec)
    (out / "more").write_text("x")
    assert fingerprint(spec) == first


def test_secrets_change_the_fingerprint_but_are_never_in_it(tmp_path: Path) -> None:
    password = "$6$salt$" + "x" * 40
    hashed = fingerprint_fields(Value(Inner(), {}, password=password))
    again = fingerprint_fields(Value(Inner(), {}, password=password))
    other = fingerprint_fields(Value(Inner(), {}, password=password + "y"))
    assert hashed == again and hashed.digest != other.digest
    assert changed_fields(hashed.fields, other.fields) == ["password"]
    form = json.dumps(canonical(Value(Inner(), {}, password=password)))
    assert password not in form and hashlib.sha256(password.encode()).hexdigest() not in form
    assert '"password": "secret:' in form

    # LUKS2 key material and user password hashes of a spec: by content, slowly
    passphrase = tmp_path / "pass"
    passphrase.write_text("hunter2\n")
    spec = Spec(image=Image("web", Base("debian", "12")),
                customizations=Customizations(users=(User("ann", password_hash=password),)),
                disk=Disk(partitions=(Partition("root", "root", 1 << 30, encryption=Encryption(
                    passphrase_file=passphrase)),)))
    first = fingerprint_fields(spec)
    form = json.dumps(canonical(spec))
    for secret in (b"hunter2\n", password.encode()):
        assert secret.decode() not in form
        assert hashlib.sha256(secret).hexdigest() not in form
    passphrase.write_text("hunter3\n")
    second = fingerprint_fields(spec)
    assert changed_fields(first.fields, second.fields) == ["disk.partitions"]


def test_a_secret_file_counts_by_its_content_wherever_it_is(tmp_path: Path) -> None:
    """The same key at another path is the same input (a cluster worker unpacks each task's
    spec in a directory of its own: a signed spec must still be an image cache hit); other
    key material is another input."""
    def spec_with(passphrase: Path) -> Spec:
        return Spec(image=Image("web", Base("debian", "12")), disk=Disk(partitions=(
            Partition("root", "root", 1 << 30, encryption=Encryption(
                passphrase_file=passphrase)),)))

    (tmp_path / "task1").mkdir()
    (tmp_path / "task2").mkdir()
    (tmp_path / "task1/pass").write_text("hunter2\n")
    (tmp_path / "task2/pass").write_text("hunter2\n")
    (tmp_path / "other").write_text("hunter3\n")
    first = fingerprint(spec_with(tmp_path / "task1/pass"))
    assert fingerprint(spec_with(tmp_path / "task2/pass")) == first
    assert fingerprint(spec_with(tmp_path / "other")) != first


def test_spec_paths_and_referenced_files(tmp_path: Path) -> None:
    source = tmp_path / "motd"
    source.write_text("hi\n")
    spec = Spec(image=Image("web", Base("debian", "12")), customizations=Customizations(
        files=(File("/etc/motd", source=source),)))
    moved = attrs.evolve(spec, path=tmp_path / "elsewhere.yml")  # path: not in the identity
    assert fingerprint(moved) == fingerprint(spec)
    before = fingerprint_fields(spec)
    source.write_text("bye\n")
    after = fingerprint_fields(spec)
    assert changed_fields(before.fields, after.fields) == ["customizations.files"]
