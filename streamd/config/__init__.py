"""Settings: the sections and their defaults (`sections`), and the table they make, read
from `config.toml` and the environment and written for the README (`table`)."""

from streamd.config.sections import (
    WEBM_MODES,
    AuthConfig,
    CacheConfig,
    Config,
    HlsConfig,
    HttpConfig,
    IngestConfig,
    LanguagesConfig,
    ProtectionConfig,
    RetentionConfig,
    TranscodeConfig,
    UploadConfig,
    setting,
)
from streamd.config.table import (
    Setting,
    load_config,
    settings,
    settings_markdown,
    settings_toml,
)

__all__ = [
    "WEBM_MODES",
    "AuthConfig",
    "CacheConfig",
    "Config",
    "HlsConfig",
    "HttpConfig",
    "IngestConfig",
    "LanguagesConfig",
    "ProtectionConfig",
    "RetentionConfig",
    "Setting",
    "TranscodeConfig",
    "UploadConfig",
    "load_config",
    "setting",
    "settings",
    "settings_markdown",
    "settings_toml",
]
