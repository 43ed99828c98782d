"""Loading the global configuration: defaults < file < environment < spec < command line.

The file is found by :func:`find_config_file`; without one the embedded defaults of
:mod:`imagecomposer.config.model` apply. The file goes through the same positioned YAML and
JSON Schema machinery as build specs, so its errors say ``file:line:column: key: what``.
:class:`LoadedConfig` remembers where each value came from (``origins``) for
``imagecomposer config show``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.config.model import Config
from imagecomposer.foundation.convert import CONVERTER
from imagecomposer.foundation.errors import ConfigError, InvalidConfig, Problem
from imagecomposer.foundation.yamldoc import schemacheck
from imagecomposer.foundation.yamldoc.limits import LimitExceeded, read_document
from imagecomposer.foundation.yamldoc.positions import (
    YamlSyntaxError,
    compose,
    limit_problem,
    source_map,
    to_plain,
)
from imagecomposer.foundation.yamldoc.sourcemap import PathKey, SourceMap, format_path, parse_path
from imagecomposer.foundation.yamldoc.suggest import did_you_mean

SCHEMA_PACKAGE = "imagecomposer.config"
DEFAULT = "default"
COMMAND_LINE = "command line"
SPEC = "spec"

ENVIRONMENT: dict[str, str] = {
    "IMAGECOMPOSER_CACHE_DIR": "core.cache_dir",
    "IMAGECOMPOSER_WORK_DIR": "core.work_dir",
    "IMAGECOMPOSER_LOG_LEVEL": "logging.level",
    "IMAGECOMPOSER_PARALLEL": "core.parallel",
    "IMAGECOMPOSER_SEAL_KEY": "storage.seal_key",
    "IMAGECOMPOSER_SHARED_STORE": "storage.shared_store",
    "IMAGECOMPOSER_SHARED_STORE_URL": "storage.shared_store_url",
}
# Fields holding paths: relative values are resolved against the config file's directory.
PATH_KEYS = ("core.cache_dir", "core.work_dir", "logging.file", "providers.*.keyring",
             "credentials[*].password_file", "core.allowed_paths[*]", "storage.seal_key",
             "storage.shared_store")


@attrs.frozen
class LoadedConfig:
    """The effective configuration and, per dotted key, where its value came from.

    Origins are ``default``, ``FILE:LINE``, ``env NAME``, ``spec`` or ``command line``.
    """

    config: Config
    origins: dict[str, str]
    data: dict[str, Any] = attrs.field(eq=False, repr=False)
    path: Path | None = None


def find_config_file(path: Path | None = None, environ: Mapping[str, str] = os.environ,
                     cwd: Path | None = None) -> Path | None:
    """The config file to use, in search order; None when there is none (defaults only).

    An explicitly named file (``--config`` or ``$IMAGECOMPOSER_CONFIG``) must exist.
    """
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"configuration file '{path}' not found (given with --config)")
        return path
    named = environ.get("IMAGECOMPOSER_CONFIG")
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"configuration file '{named}' not found (named by "
                              f"$IMAGECOMPOSER_CONFIG)")
        return Path(named)
    for candidate in search_path(environ, cwd):
        if candidate.is_file():
            return candidate
    return None


def search_path(environ: Mapping[str, str] = os.environ, cwd: Path | None = None) -> list[Path]:
    home = Path(environ.get("HOME") or Path.home())
    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [(cwd or Path.cwd()) / "imagecomposer.yml", xdg / "imagecomposer" / "config.yml",
            Path("/etc/imagecomposer/config.yml")]


def leaves(data: Mapping[str, Any], prefix: PathKey = ()) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every setting; lists are single values."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield format_path((*prefix, key)), value


def _is_path_key(dotted: str) -> bool:
    parts = parse_path(dotted)
    for pattern in PATH_KEYS:
        want = parse_path(pattern.replace("[*]", "").replace(".*", ""))
        if pattern == "providers.*.keyring":
            ok = len(parts) == 3 and parts[0] == "providers" and parts[2] == "keyring"
        elif pattern == "credentials[*].password_file":
            ok = len(parts) == 3 and parts[0] == "credentials" and parts[2] == "password_file"
        elif pattern.endswith("[*]"):
            ok = parts[:-1] == want and len(parts) == len(want) + 1 and \
                isinstance(parts[-1], int)
        else:
            ok = parts == want
        if ok:
            return True
    return False


def _absolutize(data: Any, base: Path, prefix: PathKey = ()) -> Any:
    if isinstance(data, dict):
        return {k: _absolutize(v, base, (*prefix, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_absolutize(v, base, (*prefix, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and _is_path_key(format_path(prefix)):
        given = Path(data).expanduser()
        return str(given if given.is_absolute() else base / given)
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _structure(data: dict[str, Any], where: SourceMap | None = None) -> Config:
    problems = schemacheck.check(data, schemacheck.compiled(SCHEMA_PACKAGE),
                                 schemacheck.load_schema(SCHEMA_PACKAGE),
                                 where or SourceMap(default_file="<configuration>"))
    if problems:
        raise InvalidConfig(problems)
    config: Config = CONVERTER.structure(data, Config)
    return config


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    name = str(path)
    try:
        text = read_document(path)
    except LimitExceeded as exc:
        raise InvalidConfig([limit_problem(exc, name)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file '{path}' cannot be read: {exc}") from None
    try:
        root = compose(text, name)
    except YamlSyntaxError as exc:
        raise InvalidConfig(exc.problems) from None
    if root is None:
        return {}, {}
    if not isinstance(root.value, dict):
        raise InvalidConfig([Problem("the configuration must be a mapping", name,
                                     root.pos.line, root.pos.column)])
    problems: list[Problem] = []
    creds = root.get("credentials")
    for i, entry in enumerate(creds.value if creds is not None and creds.is_seq else []):
        secret = entry.get("password")
        if secret is not None:
            pos = secret.key_pos or secret.pos
            problems.append(Problem("passwords are not stored in the configuration; use "
                                    "password_env or password_file", name, pos.line,
                                    pos.column, f"credentials[{i}].password"))
            del entry.value["password"]
    schema = schemacheck.load_schema(SCHEMA_PACKAGE)
    schemacheck.coerce_strings(root, schema)
    where = source_map(root, name)
    data = to_plain(root)
    problems += schemacheck.check(data, schemacheck.compiled(SCHEMA_PACKAGE), schema, where)
    if problems:
        raise InvalidConfig(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    origins: dict[str, str] = {}
    for dotted, _ in leaves(data):
        pos = where.pos(dotted)
        origins[dotted] = f"{name}:{pos.line}" if pos is not None else name
    return _absolutize(data, path.parent.absolute()), origins


def load_config(path: Path | None = None, *, environ: Mapping[str, str] = os.environ,
                overrides: Mapping[str, object] | None = None) -> LoadedConfig:
    """The effective configuration: defaults, the config file, the environment, overrides.

    ``path`` is ``--config``; ``overrides`` are command-line settings by dotted key
    (``{"core.parallel": 4}``). Raises InvalidConfig with every problem of the file.
    """
    data: dict[str, Any] = CONVERTER.unstructure(Config())
    origins = {key: DEFAULT for key, _ in leaves(data)}
    found = find_config_file(path, environ)
    if found is not None:
        file_data, file_origins = _read_file(found)
        data = _merge(data, file_data)  # a provider in the file merges over the default one
        origins.update(file_origins)
        for key, _ in leaves(data):
            origins.setdefault(key, DEFAULT)
    loaded = LoadedConfig(_structure(data), origins, data, found)
    env = {ENVIRONMENT[name]: value for name, value in environ.items()
           if name in ENVIRONMENT and value != ""}
    for key, value in env.items():
        name = next(n for n, k in ENVIRONMENT.items() if k == key)
        loaded = apply_overrides(loaded, {key: value}, f"env {name}")
    if overrides:
        loaded = apply_overrides(loaded, overrides, COMMAND_LINE)
    return loaded


def _coerce(value: object, schema: Mapping[str, Any], key: str, origin: str) -> object:
    """Strings from the environment or the command line, read as the schema's type."""
    if not isinstance(value, str):
        return str(value) if isinstance(value, Path) else value
    kinds: Any = schema.get("type") or [b.get("type") for b in schema.get("anyOf", [])]
    kinds = kinds if isinstance(kinds, list) else [kinds]
    lowered = value.strip().lower()
    if "null" in kinds and lowered in ("null", "none", ""):
        return None
    try:
        if "integer" in kinds:
            return int(value)
        if "number" in kinds:
            return float(value)
    except ValueError:
        raise InvalidConfig([Problem(f"must be a number, not {value!r}", origin, None, None,
                                     key)]) from None
    if "boolean" in kinds:
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InvalidConfig([Problem(f"must be true or false, not {value!r}", origin, None,
                                     None, key)])
    return value


def apply_overrides(loaded: LoadedConfig, overrides: Mapping[str, object],
                    origin: str) -> LoadedConfig:
    """``loaded`` with dotted keys set (``{"core.parallel": "4"}``), recorded as ``origin``."""
    schema = schemacheck.load_schema(SCHEMA_PACKAGE)
    data = CONVERTER.unstructure(loaded.config)
    origins = dict(loaded.origins)
    problems: list[Problem] = []
    for key, value in overrides.items():
        parts = parse_path(key)
        sub = schemacheck.subschema(schema, parts) if parts else None
        if sub is None or (sub.get("type") == "object" and parts[0] != "providers"):
            known = [k for k, _ in leaves(data)]
            problems.append(Problem(f"unknown configuration key '{key}'"
                                    f"{did_you_mean(key, known)}", origin, None, None, key))
            continue
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        coerced = _coerce(value, sub, key, origin)
        if isinstance(coerced, str) and _is_path_key(key):
            coerced = str(Path(coerced).expanduser().absolute())
        target[parts[-1]] = coerced
        origins[key] = origin
    if problems:
        raise InvalidConfig(problems)
    where = SourceMap(default_file=origin)
    return LoadedConfig(_structure(data, where), origins, data, loaded.path)


def spec_overrides(use_package_cache: bool, use_image_cache: bool) -> dict[str, object]:
    """The spec's ``build.cache`` as config overrides (origin "spec").

    A spec can only switch a cache off: a ``true`` in the spec (the default) leaves the
    configuration's choice alone.
    """
    out: dict[str, object] = {}
    if not use_package_cache:
        out["storage.package_cache.enabled"] = False
    if not use_image_cache:
        out["storage.image_cache.enabled"] = False
    return out
