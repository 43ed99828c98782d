"""The install order of a lock: a pure function of the package set and its relations.

The rule (documented in docs/packages.md): a package comes after what it Pre-Depends on
and what it Depends on (rpm: Requires(pre) and Requires). Dependency cycles are broken
deterministically: the strongly connected components of the Depends graph are ordered
topologically (dependencies first), ties by the smallest name in each component; inside a
component, Pre-Depends edges are respected where they do not form a cycle themselves,
ties (and Pre-Depends cycles) by name. Nothing else — no solver ids, no load order — goes
in, so the same set gives the same order on every machine.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping


def _components(names: list[str], edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative; input sorted for determinism)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in names:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def _kahn(names: Iterable[str], before: Mapping[str, set[str]]) -> list[str]:
    """Topological order, smallest name first among the ready; cycles broken by name."""
    pending = set(names)
    waiting = {n: {d for d in before.get(n, ()) if d in pending and d != n} for n in pending}
    users: dict[str, set[str]] = {n: set() for n in pending}
    for name, deps in waiting.items():
        for dep in deps:
            users[dep].add(name)
    ready = [n for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while pending:
        if not ready:  # a cycle: take the smallest name still waiting
            heapq.heappush(ready, min(pending))
        name = heapq.heappop(ready)
        if name not in pending:
            continue
        pending.discard(name)
        order.append(name)
        for user in users[name]:
            deps = waiting[user]
            deps.discard(name)
            if not deps and user in pending:
                heapq.heappush(ready, user)
    return order


def install_order(names: Iterable[str], pre: Mapping[str, set[str]],
                  depends: Mapping[str, set[str]]) -> list[str]:
    """``names`` in install order: after their Pre-Depends and Depends (see module doc)."""
    members = sorted(set(names))
    inside = set(members)
    edges = {n: {d for d in pre.get(n, set()) | depends.get(n, set())
                 if d in inside and d != n} for n in members}
    components = _components(members, edges)
    of = {name: i for i, component in enumerate(components) for name in component}
    graph: dict[int, set[int]] = {i: set() for i in range(len(components))}
    for name, deps in edges.items():
        for dep in deps:
            if of[dep] != of[name]:
                graph[of[name]].add(of[dep])
    keys = {i: components[i][0] for i in graph}  # a component sorts by its first name
    ordered = _kahn_components(graph, keys)
    result: list[str] = []
    for i in ordered:
        component = components[i]
        if len(component) == 1:
            result += component
        else:
            result += _kahn(component, {n: pre.get(n, set()) & set(component)
                                        for n in component})
    return result


def _kahn_components(graph: Mapping[int, set[int]], keys: Mapping[int, str]) -> list[int]:
    waiting = {i: set(deps) for i, deps in graph.items()}
    users: dict[int, set[int]] = {i: set() for i in graph}
    for i, deps in graph.items():
        for dep in deps:
            users[dep].add(i)
    ready = [(keys[i], i) for i, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for user in users[i]:
            waiting[user].discard(i)
            if not waiting[user]:
                heapq.heappush(ready, (keys[user], user))
    return order
