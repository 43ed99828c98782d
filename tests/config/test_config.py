"""Global configuration: search order, precedence, origins, errors with positions."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imagecomposer.config import (
    Config,
    apply_overrides,
    default_config_text,
    find_config_file,
    load_config,
    render_config,
    spec_overrides,
)
from imagecomposer.foundation.errors import ConfigError, InvalidConfig


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment with an empty HOME and cwd, so no real config file is found."""
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return {"HOME": str(tmp_path / "home")}


def test_defaults_without_any_file(home: dict[str, str]) -> None:
    loaded = load_config(environ=home)
    assert loaded.config == Config()
    assert loaded.path is None
    assert set(loaded.origins.values()) == {"default"}
    assert loaded.origins["core.cache_dir"] == "default"
    assert loaded.config.providers["debian"].mirror == "auto"


def test_default_config_text_is_valid_yaml_holding_the_defaults(
        tmp_path: Path, home: dict[str, str]) -> None:
    text = default_config_text()
    assert "# " in text and "max_concurrent_builds" in text
    YAML(typ="safe").load(text)
    path = tmp_path / "c.yml"
    path.write_text(text)
    loaded = load_config(path, environ=home)
    assert loaded.config == Config()
    line = text.splitlines().index("  max_concurrent_builds: 4               # `build a.yml "
                                   "b.yml` runs this many at once") + 1
    assert loaded.origins["core.max_concurrent_builds"] == f"{path}:{line}"
    # the directories are left to each user's default (root or not), commented out
    assert loaded.origins["core.cache_dir"] == "default" and "# cache_dir:" in text
    for name in ("package", "image", "tree", "initramfs", "metadata"):  # every cache's limits
        for key in ("enabled", "max_size_gb", "retention_days"):
            assert loaded.origins[f"storage.{name}_cache.{key}"].startswith(f"{path}:")


def test_search_order(tmp_path: Path, home: dict[str, str]) -> None:
    xdg = Path(home["HOME"]) / ".config" / "imagecomposer" / "config.yml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("core: {parallel: 2}\n")
    assert find_config_file(environ=home) == xdg
    elsewhere = tmp_path / "xdg-config" / "imagecomposer" / "config.yml"  # $XDG_CONFIG_HOME
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text("core: {parallel: 6}\n")
    assert find_config_file(environ={**home, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
                            ) == elsewhere
    local = Path.cwd() / "imagecomposer.yml"
    local.write_text("core: {parallel: 3}\n")
    assert find_config_file(environ=home) == local
    named = tmp_path / "named.yml"
    named.write_text("core: {parallel: 4}\n")
    assert find_config_file(environ={**home, "IMAGECOMPOSER_CONFIG": str(named)}) == named
    explicit = tmp_path / "explicit.yml"
    explicit.write_text("core: {parallel: 5}\n")
    env = {**home, "IMAGECOMPOSER_CONFIG": str(named)}
    assert load_config(explicit, environ=env).config.core.parallel == 5
    assert load_config(environ=env).config.core.parallel == 4
    assert load_config(environ=home).config.core.parallel == 3


def test_named_files_must_exist(tmp_path: Path, home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="given with --config"):
        load_config(tmp_path / "nope.yml", environ=home)
    with pytest.raises(ConfigError, match=r"\$IMAGECOMPOSER_CONFIG"):
        load_config(environ={**home, "IMAGECOMPOSER_CONFIG": str(tmp_path / "nope.yml")})


def test_precedence_and_origins(tmp_path: Path, home: dict[str, str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("core:\n  cache_dir: ./cache\n  parallel: 2\n  work_dir: /w\n"
                    "logging: {level: warning}\n")
    env = {**home, "IMAGECOMPOSER_PARALLEL": "6", "IMAGECOMPOSER_LOG_LEVEL": "debug"}
    loaded = load_config(path, environ=env, overrides={"core.work_dir": "/cli"})
    core = loaded.config.core
    assert core.cache_dir == tmp_path / "cache"  # relative to the config file
    assert core.parallel == 6 and loaded.config.logging.level == "debug"
    assert core.work_dir == Path("/cli")
    assert loaded.origins["core.cache_dir"] == f"{path}:2"
    assert loaded.origins["core.parallel"] == "env IMAGECOMPOSER_PARALLEL"
    assert loaded.origins["logging.level"] == "env IMAGECOMPOSER_LOG_LEVEL"
    assert loaded.origins["core.work_dir"] == "command line"
    assert loaded.origins["core.max_concurrent_builds"] == "default"
    # spec between environment and command line
    spec_level = apply_overrides(loaded, spec_overrides(False, True), "spec")
    assert spec_level.config.storage.package_cache.enabled is False
    assert spec_level.config.storage.image_cache.enabled is True
    assert spec_level.origins["storage.package_cache.enabled"] == "spec"


def test_environment_directories(home: dict[str, str]) -> None:
    loaded = load_config(environ={**home, "IMAGECOMPOSER_CACHE_DIR": "/c",
                                  "IMAGECOMPOSER_WORK_DIR": "/w"})
    assert loaded.config.core.cache_dir == Path("/c")
    assert loaded.config.package_cache_dir == Path("/c/packages")
    assert loaded.config.core.work_dir == Path("/w")


def test_bad_environment_value(home: dict[str, str]) -> None:
    with pytest.raises(InvalidConfig, match=r"core\.parallel: must be a number"):
        load_config(environ={**home, "IMAGECOMPOSER_PARALLEL": "many"})
    with pytest.raises(InvalidConfig, match=r"logging\.level: invalid value 'loud'"):
        load_config(environ={**home, "IMAGECOMPOSER_LOG_LEVEL": "loud"})


def test_unknown_override_key_suggests(home: dict[str, str]) -> None:
    loaded = load_config(environ=home)
    with pytest.raises(InvalidConfig, match=r"unknown configuration key 'core\.paralel' "
                                            r"\(did you mean 'core\.parallel'\?\)"):
        apply_overrides(loaded, {"core.paralel": 3}, "command line")


def test_file_errors_are_positioned_and_all_reported(tmp_path: Path, home: dict[str, str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("core:\n  max_concurent_builds: 2\n  parallel: lots\n"
                    "providers:\n  ubuntu: {kind: apt}\n"
                    "credentials:\n  - {url_prefix: 'https://r.invalid/', username: u, "
                    "password: hunter2}\n")
    with pytest.raises(InvalidConfig) as caught:
        load_config(path, environ=home)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:3: core.max_concurent_builds: unknown field 'max_concurent_builds' "
        "(did you mean 'max_concurrent_builds'?)",
        f"{path}:3:13: core.parallel: must be an integer, not a string",
        f"{path}:5:18: providers.ubuntu.kind: invalid value 'apt': must be one of deb, rpm",
        f"{path}:7:53: credentials[0].password: passwords are not stored in the "
        "configuration; use password_env or password_file",
    ]
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("Validation error: 4 problems")


def test_providers_and_credentials(tmp_path: Path, home: dict[str, str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("providers:\n  debian: {mirror: 'http://mirror.invalid/debian'}\n"
                    "  ubuntu: {kind: deb, mirror: 'http://ubuntu.invalid/ubuntu', "
                    "keyring: keys/ubuntu.gpg, check_valid_until: false}\n"
                    "credentials:\n  - {url_prefix: 'https://repo.invalid/', username: ci, "
                    "password_env: REPO_PASSWORD}\n")
    config = load_config(path, environ=home).config
    debian = config.providers["debian"]
    assert debian.mirror == "http://mirror.invalid/debian"
    assert debian.keyring == Path("/usr/share/keyrings/debian-archive-keyring.gpg")  # kept
    ubuntu = config.providers["ubuntu"]
    assert ubuntu.keyring == tmp_path / "keys" / "ubuntu.gpg"
    assert ubuntu.check_valid_until is False and ubuntu.security_mirror == "auto"
    assert config.credentials[0].password_env == "REPO_PASSWORD"


def test_render_config_shows_origins(tmp_path: Path, home: dict[str, str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("core:\n  parallel: 3\n")
    loaded = load_config(path, environ={**home, "IMAGECOMPOSER_WORK_DIR": "/w"},
                         overrides={"storage.image_cache.max_count": "9"})
    text = render_config(loaded)
    assert f"  parallel: 3  # {path}:2\n" in text
    assert "  work_dir: /w  # env IMAGECOMPOSER_WORK_DIR\n" in text
    assert "    max_count: 9  # command line\n" in text
    assert "  cleanup_on_failure: true  # default\n" in text
    # the rendered text is itself a valid config holding the same values
    rendered = tmp_path / "rendered.yml"
    rendered.write_text(text)
    assert load_config(rendered, environ=home).config == loaded.config


def test_empty_config_file_means_defaults(tmp_path: Path, home: dict[str, str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("# nothing\n")
    assert load_config(path, environ=home).config == Config()
