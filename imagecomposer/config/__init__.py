"""The global configuration (seed: "Global Configuration Options").

>>> loaded = load_config()            # doctest: +SKIP
>>> loaded.config.core.cache_dir      # doctest: +SKIP
"""

from __future__ import annotations

from imagecomposer.config.loader import (
    LoadedConfig,
    apply_overrides,
    find_config_file,
    load_config,
    search_path,
    spec_overrides,
)
from imagecomposer.config.model import Config, Credentials, ProviderConfig
from imagecomposer.config.render import default_config_text, render_config

__all__ = [
    "Config", "Credentials", "LoadedConfig", "ProviderConfig", "apply_overrides",
    "default_config_text", "find_config_file", "load_config", "render_config", "search_path",
    "spec_overrides",
]
