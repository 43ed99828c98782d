"""Developer sessions: tests, lint, typecheck, bench.

libsolv's Python module must have Debian support, so every session installs it from a
wheelhouse built once by scripts/build-solv-wheel.sh (about 30 s on 2 cores).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

WHEELHOUSE = ".wheelhouse"


def install(session: nox.Session, *extras: str) -> None:
    session.run("scripts/build-solv-wheel.sh", WHEELHOUSE, "pip", external=True,
                env={"PATH": f"{session.bin}{os.pathsep}{os.environ['PATH']}"})
    # --no-index: PyPI's solv wheel (no Debian support) must never win over ours.
    session.install("--no-index", "--find-links", WHEELHOUSE, "solv==0.7.39.post1")
    target = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", target)


@nox.session
def tests(session: nox.Session) -> None:
    """All tests, integration ones (root, network, boot) included: `nox -s tests`."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the layer contract (import-linter, pyproject.toml [tool.importlinter])."""
    session.install("ruff==0.17.6", "import-linter==2.17")
    session.install("--no-deps", "-e", ".")  # lint-imports reads the installed package
    session.run("ruff", "check", "imagecomposer", "tests", "benchmarks", "noxfile.py")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    install(session, "test")
    session.install("mypy==2.4.1")
    session.run("mypy", "--strict", "imagecomposer")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory goals: prints one table per benchmark module."""
    install(session, "test")
    session.run("python", "-m", "benchmarks", *session.posargs)
