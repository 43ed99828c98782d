"""From checked plain data to the typed :class:`~imagecomposer.spec.model.Spec`.

Also the field checks JSON Schema cannot express: plaintext passwords (refused with advice,
before the schema so the message is precise), crypt(3) hash formats and OpenSSH public keys.
Sizes become bytes, relative paths become absolute (against the directory of the file that
wrote them: a template's paths are relative to the template).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imagecomposer.foundation.convert import CONVERTER
from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.units import parse_size
from imagecomposer.foundation.yamldoc.positions import Node
from imagecomposer.foundation.yamldoc.sourcemap import PathKey, SourceMap, format_path
from imagecomposer.spec.accounts import HASH_ADVICE, password_hash_problem, ssh_key_problem

if TYPE_CHECKING:
    from imagecomposer.spec.model import Spec

SpecT = TypeVar("SpecT", bound="Spec")

# Field paths holding local file paths; "*" matches any list index.
PATH_FIELDS: tuple[tuple[str | int, ...], ...] = (
    ("repositories", "*", "key"),
    ("customizations", "files", "*", "source"),
    ("customizations", "scripts", "pre_install", "*"),
    ("customizations", "scripts", "post_install", "*"),
    ("customizations", "security", "secure_boot", "key"),
    ("customizations", "security", "secure_boot", "cert"),
    ("output", "sign", "key"),
    ("output", "sign", "cert"),
    ("output", "sign", "passphrase_file"),
    ("output", "directory"),
    ("build", "allowed_paths", "*"),
    # LUKS2 key material (docs/disk.md "LVM and LUKS2")
    ("disk", "partitions", "*", "encryption", "passphrase_file"),
    ("disk", "partitions", "*", "encryption", "key_file"),
    ("disk", "partitions", "*", "volume_group", "logical_volumes", "*", "encryption",
     "passphrase_file"),
    ("disk", "partitions", "*", "volume_group", "logical_volumes", "*", "encryption",
     "key_file"),
)
_PLAINTEXT_KEYS = {"password": "password_hash", "plain_password": "password_hash",
                   "root_password": "root_password_hash"}


def _matches(pattern: tuple[str | int, ...], path: PathKey) -> bool:
    return len(pattern) == len(path) and all(
        (p == "*" and isinstance(q, int)) or p == q for p, q in zip(pattern, path, strict=True))


def _nodes(node: Node, path: PathKey = ()) -> Iterator[tuple[PathKey, Node]]:
    yield path, node
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            yield from _nodes(child, (*path, key))
    elif isinstance(node.value, list):
        for i, child in enumerate(node.value):
            yield from _nodes(child, (*path, i))


def absolutize(root: Node, directory: Path) -> None:
    """Make the relative paths of a file's document absolute against ``directory``."""
    for path, node in _nodes(root):
        if isinstance(node.value, str) and any(_matches(p, path) for p in PATH_FIELDS):
            given = Path(node.value).expanduser()
            if not given.is_absolute() and "${" not in node.value:
                node.value = str(directory / given)


def refuse_plaintext(root: Node, problems: list[Problem]) -> None:
    """Report and drop ``password:`` keys (never echoing their value)."""
    for path, node in list(_nodes(root)):
        if not isinstance(node.value, dict):
            continue
        for key in [k for k in node.value if k in _PLAINTEXT_KEYS]:
            inside_user = path[:2] == ("customizations", "users") and len(path) == 3
            if not (inside_user or path == ("customizations",)):
                continue
            child = node.value.pop(key)
            pos = child.key_pos or child.pos
            advice = HASH_ADVICE.replace("password_hash", _PLAINTEXT_KEYS[key])
            problems.append(Problem(f"plaintext passwords are refused; {advice}",
                                    pos.file, pos.line, pos.column, format_path((*path, key))))


def check_fields(data: dict[str, Any], where: SourceMap) -> list[Problem]:
    """Hash and key formats of the (schema-valid) data."""
    problems: list[Problem] = []
    custom = data.get("customizations")
    if not isinstance(custom, dict):
        return problems
    root_hash = custom.get("root_password_hash")
    if isinstance(root_hash, str) and (why := password_hash_problem(root_hash)):
        problems.append(where.problem(("customizations", "root_password_hash"), why))
    users = custom.get("users")
    for i, user in enumerate(users if isinstance(users, list) else []):
        if not isinstance(user, dict):
            continue
        value = user.get("password_hash")
        if isinstance(value, str) and (why := password_hash_problem(value)):
            problems.append(where.problem(("customizations", "users", i, "password_hash"), why))
        keys = user.get("ssh_keys")
        for j, key in enumerate(keys if isinstance(keys, list) else []):
            if isinstance(key, str) and (why := ssh_key_problem(key)):
                problems.append(where.problem(("customizations", "users", i, "ssh_keys", j), why))
    return problems


def normalize(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Sizes to bytes, paths absolute, variables as pairs: the shape cattrs structures."""
    out: dict[str, Any] = dict(data)
    out.pop("extends", None)
    out["variables"] = tuple(sorted((str(k), str(v))
                                    for k, v in (data.get("variables") or {}).items()))
    disk = dict(out.get("disk") or {})
    if "size" in disk:
        disk["size"] = parse_size(disk["size"])
    disk["partitions"] = [
        _volumes({**p, "size": parse_size(p["size"])}) for p in disk.get("partitions", [])] or \
        default_partitions(disk.get("partition_table", "gpt"),
                           (data.get("customizations") or {}).get("bootloader", "systemd-boot"))
    out["disk"] = disk
    resolved: dict[str, Any] = _resolve_paths(out, base_dir, ())
    return resolved


def _volumes(part: dict[str, Any]) -> dict[str, Any]:
    """LVM and LUKS2 fields of a partition: sizes to bytes; a partition holding a volume
    group has no filesystem of its own unless one was written (validation refuses it)."""
    if ("volume_group" in part or part.get("type") == "lvm") and "filesystem" not in part:
        part["filesystem"] = "none"
    if isinstance(part.get("encryption"), dict):
        part["encryption"] = _encryption(part["encryption"])
    group = part.get("volume_group")
    if isinstance(group, dict):
        part["volume_group"] = {**group, "logical_volumes": [
            {**lv, "size": parse_size(lv["size"]),
             **({"encryption": _encryption(lv["encryption"])} if "encryption" in lv else {})}
            for lv in group.get("logical_volumes", [])]}
    return part


def _encryption(enc: dict[str, Any]) -> dict[str, Any]:
    if "pbkdf_memory" in enc:
        return {**enc, "pbkdf_memory": parse_size(enc["pbkdf_memory"])}
    return enc


def default_partitions(table: str, bootloader: str) -> list[dict[str, Any]]:
    """The layout of a spec without ``disk.partitions``: ESP + ext4 root on UEFI, else root."""
    root = {"name": "root", "type": "root", "size": None, "filesystem": "ext4",
            "mountpoint": "/"}
    if table == "gpt" and bootloader != "none":
        esp = {"name": "esp", "type": "esp", "size": 512 * 1024 * 1024, "filesystem": "vfat",
               "mountpoint": "/boot/efi"}
        return [esp, root]
    return [root]


def _resolve_paths(value: Any, base_dir: Path, path: PathKey) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_paths(v, base_dir, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_paths(v, base_dir, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, str) and any(_matches(p, path) for p in PATH_FIELDS):
        given = Path(value).expanduser()
        return given if given.is_absolute() else base_dir / given
    return value


def to_spec(data: dict[str, Any], base_dir: Path, into: type[SpecT]) -> SpecT:
    """The typed spec (``into``: :class:`~imagecomposer.spec.model.Spec`) of checked data."""
    spec: SpecT = CONVERTER.structure(normalize(data, base_dir), into)
    return spec

