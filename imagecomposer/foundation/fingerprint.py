"""One fingerprint for any typed value: what stage records and cache keys are made of.

:func:`fingerprint` hashes a value canonically: attrs instances as their fields (those that
take part in equality: a spec's ``path`` and ``source_map`` do not), mappings with sorted
keys, tuples and lists in order, sets sorted. A :class:`~pathlib.Path` stands for its
content, not its name: a file is its SHA256, a directory its whole tree (names, types,
permission bits, link targets, file contents), and a path that does not exist is
``"missing"``. So a changed script, key or ``files:`` source changes every fingerprint that
holds its path, while the same content elsewhere does not.

Two attrs field markers change how one field is hashed (pass them as ``metadata=``):

- :data:`SECRET`: a password hash, a passphrase or key file. It still changes the
  fingerprint (a changed password must rebuild) but only through a salted scrypt of its
  value or file content (wherever the file is), about 0.1 s per distinct secret and
  process: what is stored in a workspace record or a cache entry is never a fast hash of
  key material, let alone the value.
- :data:`BY_NAME`: a path that is a location, not content (an output directory, an allowed
  directory of host files); it is hashed as its name.
- :data:`OPTIONAL`: a field left out of the canonical form while it holds its default (a
  field added to a value later: the fingerprints of values that do not use it, and so the
  stage records and cache keys made before it existed, stay the same).

:func:`fingerprint_fields` also returns one fingerprint per field (``request.read_only_root``,
dotted through attrs instances and mappings), so a record can say which field changed.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = ["BY_NAME", "OPTIONAL", "SECRET", "Fingerprint", "canonical", "changed_fields",
           "fingerprint", "fingerprint_fields", "path_digest"]

SECRET: Mapping[str, str] = {"fingerprint": "secret"}
BY_NAME: Mapping[str, str] = {"fingerprint": "name"}
OPTIONAL: Mapping[str, str] = {"fingerprint": "optional"}

MISSING = "missing"
_BLOCK = 1 << 20
_SALT = b"imagecomposer-secret\0"


@attrs.frozen
class Fingerprint:
    """A value's fingerprint and one fingerprint per (dotted) field of it."""

    digest: str
    fields: Mapping[str, str]


def fingerprint(value: Any) -> str:
    """The SHA256 (hex) of ``value``'s canonical form (see the module documentation)."""
    return _digest(canonical(value))


def fingerprint_fields(value: Any) -> Fingerprint:
    """:func:`fingerprint` of ``value`` and of each of its fields, computed from one
    canonical form (each file is read once)."""
    form = canonical(value)
    return Fingerprint(_digest(form), dict(_flatten(form, "")))


def changed_fields(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The fields whose fingerprints differ (added and removed ones included), sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def canonical(value: Any) -> Any:
    """``value`` as JSON-ready data: paths replaced by content digests, secrets by their
    slow digests. Raises TypeError for a value that has no canonical form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return path_digest(value)
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if attrs.has(type(value)):
        out: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            if not field.eq:
                continue
            item = getattr(value, field.name)
            how = field.metadata.get("fingerprint")
            if how == "optional" and item == field.default:
                continue
            if how == "secret":
                out[field.name] = _secret(item, field.name)
            elif how == "name":
                out[field.name] = _by_name(item)
            else:
                out[field.name] = canonical(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=_dumps)
    if isinstance(value, bytes):
        return "bytes:" + hashlib.sha256(value).hexdigest()
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


def _dumps(form: Any) -> str:
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(form: Any) -> str:
    return hashlib.sha256(_dumps(form).encode()).hexdigest()


def _flatten(form: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(form, dict) and form:
        for key, item in form.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix or "value", _digest(form)


def _by_name(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_by_name(v) for v in value]
    return canonical(value)


# --- secrets ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _slow(data: bytes, salt: bytes) -> str:
    # 32 MiB and ~0.1 s per secret: a stolen record is no fast oracle for a weak passphrase
    return hashlib.scrypt(data, salt=_SALT + salt, n=1 << 15, r=8, p=1, maxmem=64 << 20,
                          dklen=32).hex()


def _secret(value: Any, name: str) -> Any:
    """A secret's stand-in: scrypt of the value (a path: of its content), salted with the
    field's name. Not with a path's location: the same key at another path (a cluster
    worker unpacks each task's spec in a directory of its own) is the same input, as any
    other file's content is."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_secret(v, name) for v in value]
    if isinstance(value, Path):
        try:
            data = value.read_bytes() if value.is_file() else path_digest(value).encode()
        except OSError:
            data = b"\0unreadable"
        return "secret:" + _slow(data, name.encode())
    data = value.encode() if isinstance(value, str) else _dumps(canonical(value)).encode()
    return "secret:" + _slow(data, name.encode())


# --- paths --------------------------------------------------------------------------------

# (dev, inode, size, mtime, ctime) -> sha256: a rewritten file always gets a new ctime
_FILE_DIGESTS: dict[tuple[int, int, int, int, int], str] = {}


def path_digest(path: Path) -> str:
    """``file:SHA256`` of a file, ``tree:SHA256`` of a directory tree, ``missing`` when
    nothing is there (a dangling symbolic link included). A symbolic link given as
    ``path`` is followed; links inside a tree are recorded as their targets."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return MISSING
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    try:
        if stat.S_ISREG(st.st_mode):
            return "file:" + _file_digest(path, st)
        if stat.S_ISDIR(st.st_mode):
            return "tree:" + _tree_digest(path)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return f"special:{stat.S_IFMT(st.st_mode):o}"


def _file_digest(path: Path | bytes, st: os.stat_result) -> str:
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    found = _FILE_DIGESTS.get(key)
    if found is not None:
        return found
    digest = hashlib.sha256()
    with open(path, "rb") as stream:  # noqa: PTH123 - a Path or bytes from scandir
        while block := stream.read(_BLOCK):
            digest.update(block)
    if len(_FILE_DIGESTS) > 4096:
        _FILE_DIGESTS.clear()
    _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def _tree_digest(root: Path) -> str:
    """Every entry below ``root`` in byte order of its relative path: the path, its type,
    permission bits and content (a file's SHA256, a link's target)."""
    entries: list[tuple[bytes, str]] = []
    todo = [b""]
    base = os.fsencode(root)
    while todo:
        rel = todo.pop()
        with os.scandir(base + b"/" + rel if rel else base) as listing:
            for entry in listing:
                name = rel + b"/" + entry.name if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                perm = f"{stat.S_IMODE(st.st_mode):o}"
                if stat.S_ISLNK(st.st_mode):
                    target = os.fsdecode(os.readlink(entry.path))  # noqa: PTH115 - bytes
                    entries.append((name, f"l\0{perm}\0{target}"))
                elif stat.S_ISDIR(st.st_mode):
                    entries.append((name, f"d\0{perm}\0"))
                    todo.append(name)
                elif stat.S_ISREG(st.st_mode):
                    entries.append((name, f"f\0{perm}\0{_file_digest(entry.path, st)}"))
                else:
                    entries.append((name, f"o\0{perm}\0{stat.S_IFMT(st.st_mode):o}"))
    digest = hashlib.sha256()
    for name, description in sorted(entries):
        digest.update(name + b"\0" + description.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()
