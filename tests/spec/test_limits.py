"""Hostile YAML (issue 18, item 6): each is refused with one positioned problem, fast.

Before the limits, the billion laughs ran 116 s past 5.8 GB, 10,000 nested brackets gave a
RecursionError traceback, and a 50 MB spec with 1.9 M keys was parsed for 152 s. The time
bounds below are loose (a loaded CI machine), the limits are in imagecomposer/spec/limits.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imagecomposer.config import load_config
from imagecomposer.foundation.errors import InvalidConfig, Problem, TemplateError, ValidationError
from imagecomposer.foundation.yamldoc.limits import (
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_TEMPLATES,
    MAX_TEXT,
    MAX_VALUES,
    MAX_VARIABLE_DEPTH,
    LimitedComposer,
)
from imagecomposer.spec import Spec

HEAD = "image: {name: web, base: {os: debian, version: '12'}}\n"


def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 10⁹ "lol"s from a few hundred bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@contextmanager
def refused_within(seconds: float) -> Iterator[list[Problem]]:
    """Expect a ValidationError with exactly one problem within ``seconds``."""
    found: list[Problem] = []
    start = time.perf_counter()
    with pytest.raises(ValidationError) as info:
        yield found
    elapsed = time.perf_counter() - start
    found.extend(info.value.problems)
    assert len(found) == 1, info.value
    assert elapsed < seconds, f"refused after {elapsed:.2f} s"


def load(tmp_path: Path, text: str, name: str = "spec.yml") -> Spec:
    path = tmp_path / name
    path.write_text(text)
    return Spec.load(path)


def test_billion_laughs_is_refused_in_milliseconds(tmp_path: Path) -> None:
    text = HEAD + billion_laughs()
    assert len(text) < 1000
    with refused_within(1.0) as problems:
        load(tmp_path, text)
    (problem,) = problems
    assert problem.message == (f"YAML document exceeds the limit of {MAX_VALUES} values "
                               f"(aliases expanded)")
    assert problem.file == str(tmp_path / "spec.yml")
    assert problem.line is not None and 2 <= problem.line <= 10 and problem.column


@pytest.mark.parametrize("shape", ["flow-sequence", "flow-mapping", "block-sequence",
                                   "block-mapping"])
def test_ten_thousand_levels_of_nesting_are_refused_without_recursion_error(
        tmp_path: Path, shape: str) -> None:
    depth = 10_000
    text = {
        "flow-sequence": "[" * depth + "]" * depth,
        "flow-mapping": "{a: " * depth + "}" * depth,
        "block-sequence": "- " * depth + "x",
        "block-mapping": "".join("  " * i + "a:\n" for i in range(depth // 20)),
    }[shape]
    with refused_within(1.0) as problems:
        load(tmp_path, HEAD + "variables:\n  x: " + text if shape.startswith("flow")
             else text + "\n")
    assert problems[0].message.startswith(f"YAML document nested more than {MAX_DEPTH} "
                                          f"levels deep")
    assert problems[0].line is not None


def test_nesting_up_to_the_limit_is_accepted() -> None:
    from imagecomposer.foundation.yamldoc.positions import compose

    deepest = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert compose("a: " + deepest + "\n", "ok.yml") is not None  # the mapping is level 1
    with pytest.raises(Exception, match="nested more than"):
        compose("a: [" + deepest + "]\n", "deep.yml")


def test_a_fifty_megabyte_spec_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    lines = "".join(f"  key@{i:03d}: value-of-key-{i:03d}\n" for i in range(1_000))
    with path.open("w") as out:  # 1.9 M distinct keys
        out.write(HEAD + "variables:\n")
        for block in range(1_900):
            out.write(lines.replace("@", f"{block:04d}"))
    size = path.stat().st_size
    assert size > 50_000_000
    with refused_within(1.0) as problems:
        Spec.load(path)
    (problem,) = problems
    assert problem.message == (f"YAML document exceeds the limit of 1 MiB ({MAX_BYTES} bytes) "
                               f"(it has {size} bytes)")
    assert problem.file == str(path) and problem.line is not None and problem.line > 1000


def test_dev_zero_is_refused_after_one_short_read() -> None:
    with refused_within(1.0) as problems:
        Spec.load("/dev/zero")
    assert "exceeds the limit of 1 MiB" in problems[0].message


def test_too_many_values_under_the_size_limit_are_refused_while_composing(
        tmp_path: Path) -> None:
    text = HEAD + "variables:\n  list: [" + ",".join(["x"] * 100_000) + "]\n"
    assert len(text) < MAX_BYTES
    with refused_within(5.0) as problems:
        load(tmp_path, text)
    assert problems[0].message == (f"YAML document exceeds the limit of {MAX_VALUES} values "
                                   f"(aliases expanded)")
    assert problems[0].line == 3


def test_too_many_aliases(tmp_path: Path) -> None:
    text = HEAD + "x: &x 1\nvariables:\n  list: [" + ",".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"
    with refused_within(1.0) as problems:
        load(tmp_path, text)
    assert problems[0].message == f"YAML document uses more than {MAX_ALIASES} aliases"


def test_an_alias_inside_its_own_value(tmp_path: Path) -> None:
    with refused_within(1.0) as problems:
        load(tmp_path, HEAD + "loop: &loop [1, [2, *loop]]\n")
    assert str(problems[0]).endswith("spec.yml:2:21: alias '*loop' is used inside the value "
                                     "it names")


def test_aliases_cannot_deepen_a_document_past_the_limit(tmp_path: Path) -> None:
    half = MAX_DEPTH // 2 + 2
    text = HEAD + "a: &deep " + "[" * half + "]" * half + "\nb: " + "[" * half + "*deep" + \
        "]" * half + "\n"
    with refused_within(1.0) as problems:
        load(tmp_path, text)
    assert problems[0].message == (f"YAML document nested more than {MAX_DEPTH} levels deep "
                                   f"(with alias '*deep' expanded)")


def test_aliases_cannot_multiply_text_past_the_limit(tmp_path: Path) -> None:
    big = "x" * (MAX_BYTES // 2)
    text = HEAD + f"a: &big '{big}'\nb: [" + ", ".join(["*big"] * 16) + "]\n"
    assert len(text) < MAX_BYTES and 17 * len(big) > MAX_TEXT
    with refused_within(2.0) as problems:
        load(tmp_path, text)
    assert problems[0].message == "YAML document exceeds the limit of 8 MiB of text (aliases " \
                                  "expanded)"


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    spec = Spec.from_text(HEAD + "disk:\n  size: 8GiB\n  partitions:\n"
                          "    - &esp {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
                          "    - {<<: *esp, name: root, type: root, size: rest, "
                          "filesystem: ext4}\n")
    assert [p.name for p in spec.disk.partitions] == ["esp", "root"]


def test_variables_cannot_multiply_text(tmp_path: Path) -> None:
    names = "abcdefghij"
    lines = [HEAD + "variables:"]
    for name, following in itertools.pairwise(names):
        lines.append(f"  {name}: '" + ("${" + following + "}") * 9 + "'")
    lines.append("  j: lol")
    lines.append("customizations: {hostname: '${a}'}")
    with refused_within(2.0) as problems:
        load(tmp_path, "\n".join(lines) + "\n")
    (problem,) = problems
    assert problem.message == f"variables expand to more than {MAX_TEXT // 2**20} MiB of text"
    assert problem.path == "variables.a" and problem.line == 3


def test_variable_chains_are_limited(tmp_path: Path) -> None:
    count = 300  # 5 Python frames a level: a RecursionError without the limit
    lines = [HEAD + "variables:"]
    lines += [f"  v{i}: 'x${{v{i + 1}}}'" for i in range(count)] + [f"  v{count}: end"]
    with refused_within(2.0) as problems:
        load(tmp_path, "\n".join(lines) + "\n")
    (problem,) = problems
    assert problem.message.startswith(f"variables nested more than {MAX_VARIABLE_DEPTH} "
                                      f"levels deep: v0 -> v1 -> v2 -> ... ")
    assert problem.path == "variables.v0"


def test_a_variable_chain_within_the_limit_resolves() -> None:
    lines = [HEAD + "variables:"]
    lines += [f"  v{i}: '${{v{i + 1}}}'" for i in range(MAX_VARIABLE_DEPTH - 1)]
    lines += [f"  v{MAX_VARIABLE_DEPTH - 1}: deep", "customizations: {hostname: '${v0}'}"]
    assert Spec.from_text("\n".join(lines) + "\n").customizations.hostname == "deep"


def test_templates_naming_each_other_many_times_are_bounded(tmp_path: Path) -> None:
    # t0 extends t1 twenty times, t1 extends t2 twenty times ...: 20^5 reads without a bound.
    for level in range(6):
        body = ("extends: [" + ", ".join([f"./t{level + 1}.yml"] * 20) + "]\n"
                if level < 5 else "customizations: {hostname: leaf}\n")
        (tmp_path / f"t{level}.yml").write_text(body)
    with refused_within(2.0) as problems:
        load(tmp_path, HEAD + "extends: ./t0.yml\n")
    assert problems[0].message == (f"more than {MAX_TEMPLATES} template files to read for one "
                                   f"spec (counting every extends of every template)")
    assert problems[0].path == "extends"


def test_the_limits_hold_for_the_spec_with_its_templates_merged(tmp_path: Path) -> None:
    """Each file is under the limits, their sum is not: refused after merging."""
    big = "x" * (MAX_BYTES // 2)
    for name in ("a", "b"):
        aliases = ", ".join(f"{name}{i}: *big" for i in range(9))
        (tmp_path / f"{name}.yml").write_text(f"variables: {{{name}: &big '{big}', {aliases}}}\n")
    with refused_within(2.0) as problems:
        load(tmp_path, HEAD + "extends: [./a.yml, ./b.yml]\n")
    assert problems[0].message == ("the spec with its templates merged exceeds the limit of "
                                   "8 MiB of text")
    assert problems[0].file == str(tmp_path / "b.yml")


def test_a_hostile_template_is_refused_inside_the_template(tmp_path: Path) -> None:
    (tmp_path / "laughs.yml").write_text(billion_laughs())
    with pytest.raises(TemplateError) as info:
        load(tmp_path, HEAD + "extends: ./laughs.yml\n")
    (problem,) = info.value.problems
    assert problem.file == str(tmp_path / "laughs.yml")
    assert "exceeds the limit of" in problem.message


@pytest.mark.parametrize("make", [billion_laughs, lambda: "core: " + "[" * 10_000],
                         ids=["billion-laughs", "deep"])
def test_the_global_configuration_has_the_same_limits(tmp_path: Path,
                                                       make: Callable[[], str]) -> None:
    path = tmp_path / "config.yml"
    path.write_text(make())
    start = time.perf_counter()
    with pytest.raises(InvalidConfig) as info:
        load_config(path, environ={})
    assert time.perf_counter() - start < 1.0
    (problem,) = info.value.problems
    assert problem.file == str(path) and problem.line is not None


def test_the_examples_are_far_below_every_limit() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    templates = Path(__file__).resolve().parents[2] / "imagecomposer" / "spec" / "templates"
    for path in [*examples.glob("*.yml"), *templates.glob("*/*.yml")]:
        text = path.read_text()
        yaml = YAML(typ="rt")
        yaml.Composer = LimitedComposer
        yaml.compose(text)
        composer = yaml.composer
        assert len(text.encode()) < MAX_BYTES // 100, path
        assert composer.values < MAX_VALUES // 20 and composer.text < MAX_TEXT // 100, path
