"""Read the host's apt sources to find a mirror that serves a given suite (``mirror: auto``).

Both formats apt reads are understood: one-line ``sources.list`` entries (``deb [opts] URI
suite comp...``) and deb822 ``*.sources`` stanzas (``Types/URIs/Suites/Components``).
Only ``deb`` entries count; ``deb-src`` and disabled (``Enabled: no``) stanzas do not.

A suite the host does not list is served from the archive the host uses for another suite
of the same distribution (a Debian 12 host builds Debian 13 from its Debian archive): an
archive holds every suite of its distribution, and the signed ``InRelease`` of the suite is
the check that it really does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

APT_ETC = Path("/etc/apt")


@attrs.frozen
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None
    origin: str = ""  # the file it came from, for messages


def _one_line(path: Path, text: str) -> Iterator[AptSource]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        options: dict[str, str] = {}
        match = re.match(r"^(\S+)\s+\[([^\]]*)\]\s+(.*)$", line)
        if match:
            kind, opts, rest = match.groups()
            for item in opts.split():
                key, _, value = item.partition("=")
                options[key] = value
        else:
            kind, _, rest = line.partition(" ")
        if kind != "deb":
            continue
        parts = rest.split()
        if len(parts) < 2:
            continue
        yield AptSource(parts[0].rstrip("/"), (parts[1],), tuple(parts[2:]),
                        options.get("signed-by"), str(path))


def _deb822(path: Path, text: str) -> Iterator[AptSource]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()),
                            tuple(fields.get("components", "").split()),
                            fields.get("signed-by"), str(path))


def read_sources(etc: Path | None = None) -> list[AptSource]:
    """Every enabled ``deb`` source of the host, in apt's reading order."""
    etc = etc or APT_ETC
    found: list[AptSource] = []
    main = etc / "sources.list"
    files: Iterable[Path] = [main] if main.is_file() else []
    files = [*files, *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            found += _deb822(path, text)
        elif path.suffix == ".list" or path == main:
            found += _one_line(path, text)
    return found


def _pocket(suite: str) -> tuple[str, str]:
    """``bookworm-security`` → (bookworm, security); ``buster/updates`` → (buster, updates)."""
    for sep in ("-", "/"):
        if sep in suite:
            codename, _, pocket = suite.partition(sep)
            return codename, pocket
    return suite, ""


def mirror_for(suite: str, etc: Path | None = None, *,
               codenames: Iterable[str] = ()) -> str | None:
    """The URI of the first host source that serves ``suite``, or None.

    Without one, the first source that serves another suite of the same distribution —
    any of ``codenames`` (e.g. every Debian codename imagecomposer knows), with the same
    kind of pocket: a ``-security`` suite from the host's security archive, every other
    suite from its main archive.
    """
    usable = [s for s in read_sources(etc)
              if s.uri.startswith(("http://", "https://", "file:"))]
    for source in usable:
        if suite in source.suites:
            return source.uri
    family = set(codenames)
    security = _pocket(suite)[1] == "security"
    for source in usable:
        for other in source.suites:
            codename, pocket = _pocket(other)
            if codename in family and (pocket == "security") == security:
                return source.uri
    return None
