"""The settings as one table, read and written: `config.toml` overrides the defaults,
`STREAMD_<SECTION>_<NAME>` (or `STREAMD_<NAME>` for top-level settings) overrides the file,
and CLI flags override both. The README's table and the default `config.toml` are made from
the same rows."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from streamd.config.sections import Config
from streamd.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    section: str | None
    name: str
    type: type
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        parts = ["STREAMD", *([self.section] if self.section else []), self.name]
        return "_".join(parts).upper()

    @property
    def toml_key(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(hints[f.name])
    }


def settings() -> Iterator[Setting]:
    """Every setting, in the order of the table."""
    sections = _section_types()
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.name in sections:
            continue
        yield Setting(None, f.name, hints[f.name], _default(f), f.metadata["help"])
    for section, cls in sections.items():
        sub_hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield Setting(section, f.name, sub_hints[f.name], _default(f), f.metadata["help"])


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    assert not isinstance(f.default_factory, dataclasses._MISSING_TYPE)
    return f.default_factory()


def _coerce(s: Setting, value: Any, source: str) -> Any:
    kind = s.type
    try:
        if get_origin(kind) is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise TypeError("expected a list")
            return [str(v) for v in value]
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is int and isinstance(value, float):
            raise TypeError("expected an integer")
        if get_origin(kind) in (Union, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {s.toml_key} from {source}: {value!r}", str(exc)) from exc


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the TOML file, then the environment, then `overrides` (toml keys)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}", str(exc)) from exc
    known = {s.toml_key: s for s in settings()}
    sections = _section_types()
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            for sub, sub_value in value.items():
                if f"{key}.{sub}" not in known:
                    raise ConfigError(f"unknown setting {key}.{sub} in {path}")
                values[f"{key}.{sub}"] = _coerce(known[f"{key}.{sub}"], sub_value, str(path))
        elif key in known:
            values[key] = _coerce(known[key], value, str(path))
        else:
            raise ConfigError(f"unknown setting {key} in {path}")
    for s in known.values():
        if s.env_var in env:
            values[s.toml_key] = _coerce(s, env[s.env_var], s.env_var)
    for key, value in (overrides or {}).items():
        if value is not None:
            if key not in known:
                raise ConfigError(f"unknown setting {key}")
            values[key] = _coerce(known[key], value, "command line")
    top = {k: v for k, v in values.items() if "." not in k}
    subs = {
        name: cls(**{k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(name + ".")})
        for name, cls in sections.items()
    }
    return Config(**top, **subs)


def settings_markdown() -> str:
    """The settings table for the README, from the same source as the defaults."""
    rows = ["| setting | environment | default | what it does |", "|---|---|---|---|"]
    for s in settings():
        default = ", ".join(s.default) if isinstance(s.default, list) else s.default
        rows.append(f"| `{s.toml_key}` | `{s.env_var}` | `{default}` | {s.help} |")
    return "\n".join(rows) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def settings_toml() -> str:
    """The default config.toml: every setting, its default and its help text."""
    lines = [
        "# streamd settings. Each can also be set from the environment, e.g.",
        "# STREAMD_PORT=9000 or STREAMD_TRANSCODE_LADDER=720p:2800k,360p:800k.",
        "# Regenerate with: streamd settings --toml > config.toml",
        "",
    ]
    section = None
    for s in settings():
        if s.section != section:
            section = s.section
            lines += ["", f"[{section}]"]
        lines += [f"# {s.help}", f"{s.name} = {_toml_value(s.default)}"]
    return "\n".join(lines) + "\n"
