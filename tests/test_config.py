"""Settings: one table of defaults and help, overridden by config.toml, then environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.config import Config, load_config, settings, settings_markdown, settings_toml
from streamd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_has_a_default_and_help() -> None:
    rows = list(settings())
    assert len(rows) > 10
    for s in rows:
        assert s.help.endswith("."), s.name
        assert s.default is not None, s.name


def test_defaults() -> None:
    config = load_config(None, env={})
    assert config.port == 8080
    assert config.data_dir == Path("data")
    assert config.transcode.ladder == ["1080p:5000k", "720p:2800k", "480p:1400k", "360p:800k"]
    assert config.transcode.segment_duration_s == 2.0


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('port = 9000\n[transcode]\nsegment_duration_s = 4\npreset = "fast"\n')
    config = load_config(
        toml,
        env={
            "STREAMD_TRANSCODE_PRESET": "medium",
            "STREAMD_TRANSCODE_LADDER": "720p:2800k, 360p:800k",
            "STREAMD_DATA_DIR": "/srv/video",
            "STREAMD_CACHE_MAX_BYTES": "1000",
        },
        overrides={"port": 7000, "host": None},
    )
    assert config.port == 7000
    assert config.transcode.segment_duration_s == 4.0
    assert config.transcode.preset == "medium"
    assert config.transcode.ladder == ["720p:2800k", "360p:800k"]
    assert config.data_dir == Path("/srv/video")
    assert config.cache.max_bytes == 1000


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("colour = 1\n", {}),
        ("[transcode]\nspeed = 1\n", {}),
        ('port = "eighty"\n', {}),
        ("", {"STREAMD_PORT": "x"}),
        ("port = 80.5\n", {}),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError):
        load_config(toml, env=env)


def test_shipped_config_toml_is_the_defaults() -> None:
    assert (ROOT / "config.toml").read_text() == settings_toml()
    assert load_config(ROOT / "config.toml", env={}) == Config()


def test_readme_settings_table_is_current() -> None:
    assert settings_markdown() in (ROOT / "README.md").read_text()
