"""The positioned YAML layer and the schema checker's repair loop."""

from __future__ import annotations

import pytest

from imagecomposer.foundation.errors import ValidationError
from imagecomposer.foundation.yamldoc.positions import YamlSyntaxError, compose, index, to_plain
from imagecomposer.spec import Spec
from imagecomposer.spec.accounts import password_hash_problem, ssh_key_problem


def test_compose_keeps_positions_of_values_and_keys() -> None:
    root = compose("a:\n  b: [1, two]\n  c: {d: x}\n", "f.yml")
    assert root is not None
    nodes = index(root)
    assert (nodes[("a", "b", 1)].pos.line, nodes[("a", "b", 1)].pos.column) == (2, 10)
    key_pos = nodes[("a", "c")].key_pos
    assert key_pos is not None and (key_pos.line, key_pos.column) == (3, 3)
    assert to_plain(root) == {"a": {"b": [1, "two"], "c": {"d": "x"}}}


def test_scalars_are_typed_but_keep_their_text() -> None:
    root = compose("a: 0644\nb: 22.10\nc: '12'\nd: true\ne: null\nf: 2024-01-01\n", "f.yml")
    assert root is not None
    plain = to_plain(root)
    assert plain == {"a": 644, "b": 22.1, "c": "12", "d": True, "e": None, "f": "2024-01-01"}
    assert root.value["b"].raw == "22.10" and root.value["c"].style == "'"


def test_non_scalar_keys_and_duplicates_are_collected() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        compose("a: 1\na: 2\n? [x]\n: 3\n", "f.yml")
    assert [str(p) for p in caught.value.problems] == [
        "f.yml:2:1: duplicate key 'a' (first given on line 1)",
        "f.yml:3:3: YAML syntax error: mapping keys must be plain strings",
    ]


def test_tabs_and_bad_indentation_are_syntax_errors() -> None:
    with pytest.raises(ValidationError, match=r"web\.yml:2:1: YAML syntax error"):
        Spec.from_text("image:\n\tname: x\n", name="web.yml")


def test_schema_repair_loop_reports_each_problem_once() -> None:
    text = ("image: {name: 'bad name', base: {os: Debian, version: 12, arch: arm}}\n"
            "disk: {partitions: [{name: r, type: root}], size: -5}\n"
            "build: {stages: []}\n")
    with pytest.raises(ValidationError) as caught:
        Spec.from_text(text, name="w.yml")
    messages = [str(p) for p in caught.value.problems]
    assert messages == [
        "w.yml:1:15: image.name: invalid value 'bad name' (for example 'my-image')",
        "w.yml:1:38: image.base.os: invalid value 'Debian' (for example 'debian')",
        "w.yml:1:65: image.base.arch: invalid value 'arm': must be one of x86_64, aarch64",
        "w.yml:2:21: disk.partitions[0]: missing required field 'size'",
        "w.yml:2:51: disk.size: invalid value -5: Disk size, or 'auto' (content plus margin).",
        "w.yml:3:17: build.stages: must have at least 1 item(s)",
    ]


@pytest.mark.parametrize(("value", "ok"), [
    ("!", True), ("*", True),
    ("$6$examplesalt0001$4KyZq9mVS10GmIho7w0ctkbW1Q4C2G3lfpKvq.L2Z.5zHoIgncmQWO5f65YSSazBUcpFiQ"
     "sLzofHNv7fHHRPG0", True),
    ("$6$rounds=5000$salt$" + "a" * 86, True),
    ("$y$j9T$Cq0gCnX0FvOGqnBJsyvh7.$Kz0aG5zvVGzqUGYiNbLvYmF0OeT2T1f1Sg9p8yKc7W5", True),
    ("$2b$12$" + "a" * 53, True),
    ("$1$salt$abcdefghijklmnopqrstuv", False), ("$6$salt$short", False), ("hunter2", False),
])
def test_password_hash_formats(value: str, ok: bool) -> None:
    assert (password_hash_problem(value) is None) == ok


def test_ssh_key_checks() -> None:
    good = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINq9yZDSv0RZCvg7+7mV0aZqGlXIKJE/0ha+iBf525nF "
            "admin@example")
    assert ssh_key_problem(good) is None
    assert ssh_key_problem('from="10.0.0.0/8",no-pty ' + good) is None
    assert ssh_key_problem("ssh-ed25519 AAAA") == \
        "not a valid OpenSSH public key (the key data is truncated)"
    assert ssh_key_problem(good.replace("AAAAINq9", "AAAAINq8")[:60]) is not None
    assert "DSA" in (ssh_key_problem("ssh-dss AAAAB3NzaC1kc3MAAACBAP") or "")
    assert "expected 'TYPE BASE64" in (ssh_key_problem("just text") or "")
