"""The lock's install order: one documented rule, nothing else (imagecomposer.families.order)."""

from __future__ import annotations

import random

from imagecomposer.families.order import install_order


def test_dependencies_first_ties_by_name() -> None:
    depends = {"app": {"lib-z", "lib-a"}, "lib-z": {"base"}, "lib-a": {"base"}}
    assert install_order(["app", "lib-z", "lib-a", "base", "other"], {}, depends) == [
        "base", "lib-a", "lib-z", "app", "other"]


def test_cycles_are_broken_by_name_and_pre_depends_win_inside() -> None:
    # libc6 <-> libgcc-s1 (a Depends cycle); dpkg Pre-Depends on libc6; inside the cycle
    # b Pre-Depends on c, so c comes first although "b" sorts before "c"
    depends = {"libc6": {"libgcc-s1"}, "libgcc-s1": {"libc6"}, "a": {"b"}, "b": {"a"},
               "c": {"a"}}
    pre = {"dpkg": {"libc6"}, "b": {"c"}}
    order = install_order(["dpkg", "libc6", "libgcc-s1", "a", "b", "c"], pre, depends)
    assert order.index("libc6") < order.index("dpkg")
    assert order.index("c") < order.index("b")
    assert order.index("libc6") < order.index("libgcc-s1")  # the cycle: by name


def test_a_pure_function_of_the_graph() -> None:
    rnd = random.Random(7)
    names = [f"p{i:02d}" for i in range(60)]
    depends = {n: set(rnd.sample(names, rnd.randint(0, 5))) - {n} for n in names}
    pre = {n: set(rnd.sample(sorted(depends[n]), min(1, len(depends[n])))) for n in names}
    expected = install_order(names, pre, depends)
    assert sorted(expected) == sorted(names)
    for _ in range(5):
        shuffled = names[:]
        rnd.shuffle(shuffled)
        keys = shuffled[:]
        assert install_order(shuffled, {k: pre[k] for k in keys},
                             {k: depends[k] for k in reversed(keys)}) == expected
