"""One config system: YAML defaults, named presets merged in order, dotted command-line overrides.

`configs/defaults.yaml` declares every key once: its default, its allowed values (a range or
choices, at the start of its comment) and its meaning (agent/config_schema.py). A preset
(`configs/NAME.yaml`, an alias of configs/aliases.yaml, or a path; agent/presets.py) may only set
keys that exist there, with values of the same type (null only where the default is null); its
top-level `include: [A, B]` merges presets A then B first, so a preset can be a sum of others.
`--set a.b=value` parses `value` as YAML and checks it the same way. After merging, every value
must lie within its key's allowed values. Every mistake raises `ConfigError` with one line naming
the key, the value and the file or override it came from, which the CLI prints before exiting
with status 2.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError

from agent.config_schema import (
    ConfigError,
    check_values,
    flatten,
    load_yaml_file,
    read_schema,
    yaml_io,
)
from agent.presets import CONFIG_DIR, DEFAULTS_NAME, expand, preset_names, resolve_config_path

__all__ = [
    "CONFIG_DIR",
    "Config",
    "ConfigError",
    "dump_config",
    "fill_missing",
    "first_difference",
    "load_config",
    "load_yaml_file",
    "merge",
    "parse_override",
    "preset_names",
    "resolve_config_path",
]

# Keys that moved: the unknown-key error says where to. A config that names its method and still
# has train.batch_size (a run folder's config.yaml from before the move) is upgraded on loading:
# the value goes to <method>.batch_size for the methods that read it, and is dropped for the
# others, which never read it (`upgrade_moved_keys`).
MOVED_KEYS = {"train.batch_size": "<method>.batch_size, e.g. bc.batch_size"}
TRAIN_BATCH_SIZE_READERS = ("bc", "iql", "td3bc", "vem", "leq")


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


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check `value` against the type of `default`; ints are accepted where floats are expected."""
    if default is None:
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


def merge(
    base: Mapping,
    override: Mapping,
    source: str,
    prefix: str = "",
    reference: Mapping | None = None,
) -> dict:
    """Return `base` updated by `override`, rejecting keys and types that `base` does not define.

    Types come from `reference` (default `base`), which has the same keys: `load_config` passes
    defaults.yaml, so a key that is null there stays optional after a preset has set it.
    """
    reference = base if reference is None else reference
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in merged:
            moved = f" (now {MOVED_KEYS[dotted]})" if dotted in MOVED_KEYS else ""
            raise ConfigError(f"{source}: unknown key '{dotted}'{moved}")
        if isinstance(merged[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: key '{dotted}' is a section, got {value!r}")
            merged[key] = merge(merged[key], value, source, f"{dotted}.", reference[key])
        else:
            merged[key] = _coerce(dotted, value, reference[key], source)
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
        value = yaml_io().load(io.StringIO(raw)) if raw.strip() else ""
    except YAMLError:
        value = raw
    nested: dict = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def _to_config(tree: Mapping) -> Config:
    return Config({k: _to_config(v) if isinstance(v, Mapping) else v for k, v in tree.items()})


INCLUDE_KEY = "include"  # a preset's list of presets merged before its own keys


def upgrade_moved_keys(data: Mapping) -> dict:
    """`data` with train.batch_size moved to <method>.batch_size where `data` names its method
    (see MOVED_KEYS); anything else is returned as it is."""
    data = dict(data)
    train, method = data.get("train"), data.get("method")
    if not isinstance(train, Mapping) or "batch_size" not in train or not isinstance(method, str):
        return data
    train = dict(train)
    value = train.pop("batch_size")
    data["train"] = train
    section = data.get(method)
    if method in TRAIN_BATCH_SIZE_READERS and "batch_size" not in (section or {}):
        data[method] = {**(section or {}), "batch_size": value}
    return data


class _Loader:
    """Merges presets and overrides onto defaults.yaml, remembering which source set each key."""

    def __init__(self) -> None:
        self.schema = read_schema(resolve_config_path(DEFAULTS_NAME))
        self.tree: dict = copy.deepcopy(self.schema.defaults)
        self.sources: dict[str, str] = {}

    def apply(self, data: Mapping, source: str) -> None:
        self.tree = merge(self.tree, data, source=source, reference=self.schema.defaults)
        self.sources.update(dict.fromkeys(flatten(data), source))

    def preset(self, name: str, chain: tuple[str, ...] = ()) -> None:
        """Preset `name`: an alias's items in order, or a file's `include` list, then its keys."""
        target = expand(name)
        if isinstance(target, list):
            for item in target:
                if "=" in item:
                    self.apply(parse_override(item), source=f"alias {name}: {item}")
                else:
                    self.preset(item, chain)
            return
        if str(target) in chain:
            cycle = " -> ".join([*chain, str(target)])
            raise ConfigError(f"{target}: '{INCLUDE_KEY}' forms a cycle ({cycle})")
        data = load_yaml_file(target)
        included = data.pop(INCLUDE_KEY, [])
        if isinstance(included, str):
            included = [included]
        if not isinstance(included, list) or not all(isinstance(n, str) for n in included):
            raise ConfigError(f"{target}: '{INCLUDE_KEY}' must be a list of preset names")
        for inner in included:
            self.preset(inner, chain=(*chain, str(target)))
        self.apply(upgrade_moved_keys(data), source=str(target))


def load_config(names: Iterable[str] = ("default",), overrides: Iterable[str] = ()) -> Config:
    """defaults.yaml, then each preset in order (its `include`s first), then each `--set`
    override; then every value is checked against its key's allowed values."""
    loader = _Loader()
    for name in names:
        loader.preset(name)
    for text in overrides:
        loader.apply(parse_override(text), source=f"--set {text}")
    check_values(loader.tree, loader.schema.defaults, loader.schema.allowed, loader.sources)
    return _to_config(loader.tree)


def dump_config(cfg: Mapping, path: Path) -> None:
    """Write the resolved config as YAML (atomically, so a crash never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as handle:
        yaml_io().dump(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg), handle)
    tmp.replace(path)


# Keys that set how fast a run goes, not what it computes (beyond float rounding): a run resumes,
# and a sweep record still matches, when only these changed since it started.
SPEED_SETTINGS = frozenset({"gem.refresh_chunk", "rssm.formulation"})


def fill_missing(saved: Mapping, current: Mapping, prefix: str = "") -> tuple[dict, list[str]]:
    """(saved with the keys it lacks, and its SPEED_SETTINGS, taken from current; the dotted keys
    so taken): a run saved before a config key existed resumes with that key's current value; a
    key that has moved since is moved first (`upgrade_moved_keys`)."""
    saved = saved if prefix else upgrade_moved_keys(saved)
    merged, added = dict(saved), []
    for key, value in current.items():
        dotted = f"{prefix}{key}"
        if key not in saved or (dotted in SPEED_SETTINGS and saved[key] != value):
            merged[key] = value
            added.append(dotted)
        elif isinstance(value, Mapping) and isinstance(saved[key], Mapping):
            merged[key], more = fill_missing(saved[key], value, prefix=f"{dotted}.")
            added += more
    return merged, added


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
