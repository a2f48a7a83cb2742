"""One config system: YAML defaults, named presets merged in order, dotted command-line overrides.

`configs/defaults.yaml` defines every key. A preset (`configs/NAME.yaml` or a path) may only set
keys that exist there, with values of the same type. `--set a.b=value` parses `value` as YAML and
checks it the same way. Every mistake raises `ConfigError` with one line naming the file, key and
value, which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULTS_NAME = "defaults"


class ConfigError(ValueError):
    """A user mistake in a config file or an override; the message is one line."""


class Config(dict):
    """A nested dict whose keys can also be read as attributes: `cfg.train.steps`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return {
            k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()
        }


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return yaml


def resolve_config_path(name_or_path: str) -> Path:
    """A bare NAME means `configs/NAME.yaml`; anything with a suffix or a slash is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        path = candidate
    else:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"config '{name_or_path}' not found ({path}); available: {available}")
    return path


def load_yaml_file(path: Path) -> dict:
    try:
        data = _yaml().load(path.read_text())
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check `value` against the type of `default`; ints are accepted where floats are expected."""
    if default is None or value is None:
        # A null default means "optional scalar" (a path, a cap): any scalar or list is allowed.
        if isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a scalar, got a mapping")
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(
        f"{source}: key '{key}' expects {_type_name(default)}, got {value!r} ({_type_name(value)})"
    )


def merge(base: Mapping, override: Mapping, source: str, prefix: str = "") -> dict:
    """Return `base` updated by `override`, rejecting keys and types that `base` does not define."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in merged:
            raise ConfigError(f"{source}: unknown key '{dotted}'")
        if isinstance(merged[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: key '{dotted}' is a section, got {value!r}")
            merged[key] = merge(merged[key], value, source, prefix=f"{dotted}.")
        else:
            merged[key] = _coerce(dotted, value, merged[key], source)
    return merged


def parse_override(text: str) -> dict:
    """Turn `a.b.c=value` into {'a': {'b': {'c': value}}}, parsing value as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected dotted.key=value")
    dotted, raw = text.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set '{text}': empty key segment")
    try:
        value = _yaml().load(io.StringIO(raw)) if raw.strip() else ""
    except YAMLError:
        value = raw
    nested: dict = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def _to_config(tree: Mapping) -> Config:
    return Config({k: _to_config(v) if isinstance(v, Mapping) else v for k, v in tree.items()})


def load_config(names: Iterable[str] = ("default",), overrides: Iterable[str] = ()) -> Config:
    """defaults.yaml, then each preset in order, then each `--set` override."""
    tree = load_yaml_file(resolve_config_path(DEFAULTS_NAME))
    for name in names:
        path = resolve_config_path(name)
        tree = merge(tree, load_yaml_file(path), source=str(path))
    for text in overrides:
        tree = merge(tree, parse_override(text), source=f"--set {text}")
    return _to_config(tree)


def dump_config(cfg: Mapping, path: Path) -> None:
    """Write the resolved config as YAML (atomically, so a crash never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as handle:
        _yaml().dump(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg), handle)
    tmp.replace(path)


def first_difference(a: Mapping, b: Mapping, prefix: str = "") -> str | None:
    """The dotted key of the first difference between two config trees, or None if equal."""
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        if key not in a or key not in b:
            return dotted
        va, vb = a[key], b[key]
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            found = first_difference(va, vb, prefix=f"{dotted}.")
            if found:
                return found
        elif va != vb:
            return dotted
    return None
