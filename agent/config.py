"""One config system: YAML defaults, named presets merged in order, dotted command-line overrides.

`configs/defaults.yaml` defines every key. A preset (`configs/NAME.yaml` or a path) may only set
keys that exist there, with values of the same type (null only where the default is null); its
top-level `include: [A, B]` merges presets A then B first, so a preset can be a sum of others.
`--set a.b=value` parses `value` as YAML and checks it the same way. After merging, every numeric
value (and every entry of a numeric list) must lie in the range that `configs/ranges.yaml`
declares for its key (notation in that file; `parse_range`). Every mistake raises `ConfigError`
with one line naming the file or override (where known), key and value, which the CLI prints
before exiting with status 2.
"""

from __future__ import annotations

import copy
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULTS_NAME = "defaults"
RANGES_NAME = "ranges"  # configs/ranges.yaml: the range table, not a preset
RANGES_PATH = CONFIG_DIR / f"{RANGES_NAME}.yaml"


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
    if name_or_path == RANGES_NAME:
        raise ConfigError(f"config '{RANGES_NAME}' is the table of valid ranges, not a preset")
    if not path.is_file():
        available = ", ".join(preset_names())
        raise ConfigError(f"config '{name_or_path}' not found ({path}); available: {available}")
    return path


def preset_names() -> list[str]:
    """Names of the loadable files in `configs/` (defaults and presets; not the range table)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != RANGES_NAME)


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
            raise ConfigError(f"{source}: unknown key '{dotted}'")
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
        value = _yaml().load(io.StringIO(raw)) if raw.strip() else ""
    except YAMLError:
        value = raw
    nested: dict = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_ONE_SIDED = re.compile(rf"(>=|>|<=|<)\s*{_NUMBER}")
_INTERVAL = re.compile(rf"([\[(])\s*{_NUMBER}\s*,\s*{_NUMBER}\s*([\])])")


@dataclass(frozen=True)
class Range:
    """The finite reals between `low` and `high`, each bound included when `*_closed`."""

    text: str  # as written in ranges.yaml, e.g. ">= 1" or "(0, 1]"
    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False

    def __contains__(self, x: float) -> bool:
        if isinstance(x, float) and not math.isfinite(x):
            return False
        above = x >= self.low if self.low_closed else x > self.low
        below = x <= self.high if self.high_closed else x < self.high
        return above and below

    def __str__(self) -> str:
        return self.text


def parse_range(text: str, source: str = "range") -> Range:
    """The Range that `text` denotes: '>= a', '> a', '<= b', '< b' (one bound), or an interval
    '[a, b]', '(a, b)', '[a, b)', '(a, b]' (a square bracket includes its bound)."""
    text = text.strip() if isinstance(text, str) else text
    one = _ONE_SIDED.fullmatch(text) if isinstance(text, str) else None
    both = _INTERVAL.fullmatch(text) if isinstance(text, str) else None
    if one:
        op, bound = one.group(1), float(one.group(2))
        if op.startswith(">"):
            return Range(text, low=bound, low_closed=op == ">=")
        return Range(text, high=bound, high_closed=op == "<=")
    if both:
        low, high = float(both.group(2)), float(both.group(3))
        low_closed, high_closed = both.group(1) == "[", both.group(4) == "]"
        if low < high or (low == high and low_closed and high_closed):
            return Range(text, low, high, low_closed, high_closed)
    raise ConfigError(
        f"{source}: {text!r} is not a valid range (use e.g. '>= 1', '> 0', '(0, 1]', '[0, 1)')"
    )


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf (non-mapping value) of a nested mapping."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_keys(tree: Mapping) -> list[str]:
    """Dotted keys whose value is a number (not a bool) or a non-empty list of numbers."""
    return [
        key
        for key, value in flatten(tree).items()
        if _is_number(value)
        or (isinstance(value, list) and value and all(_is_number(v) for v in value))
    ]


def load_ranges(path: Path | None = None) -> dict[str, Range]:
    """{dotted key: Range} from `configs/ranges.yaml` (or `path`)."""
    path = path or RANGES_PATH
    return {
        str(key): parse_range(text, source=f"{path}: key '{key}'")
        for key, text in load_yaml_file(path).items()
    }


def check_ranges(tree: Mapping, defaults: Mapping, ranges: Mapping[str, Range]) -> None:
    """Raise ConfigError naming the first value of `tree` outside its key's range.

    Every numeric key of `defaults` must have a range; a key with a null default is checked only
    where it has one (a null value passes there). Entries of a list are checked one by one, and
    must be integers where the default's entries are.
    """
    values = flatten(tree)
    numeric = set(numeric_keys(defaults))
    for key, default in flatten(defaults).items():
        allowed = ranges.get(key)
        if allowed is None:
            if key in numeric:
                raise ConfigError(f"{RANGES_PATH} declares no range for the numeric key '{key}'")
            continue
        value = values[key]
        if value is None and default is None:
            continue
        items = value if isinstance(value, list) else [value]
        integral = isinstance(default, list) and all(isinstance(d, int) for d in default)
        for index, item in enumerate(items):
            name = f"{key}[{index}]" if isinstance(value, list) else key
            if not _is_number(item) or (integral and not isinstance(item, int)):
                kind = "an integer" if integral else "a number"
                raise ConfigError(f"{name}={item!r} is not {kind} (range {allowed})")
            if item not in allowed:
                raise ConfigError(f"{name}={item!r} is out of range {allowed}")


def _to_config(tree: Mapping) -> Config:
    return Config({k: _to_config(v) if isinstance(v, Mapping) else v for k, v in tree.items()})


INCLUDE_KEY = "include"  # a preset's list of presets merged before its own keys


def _merge_preset(tree: dict, name: str, defaults: Mapping, chain: tuple[str, ...]) -> dict:
    """`tree` updated by preset `name`: first its `include` list (recursively), then its keys."""
    path = resolve_config_path(name)
    if str(path) in chain:
        cycle = " -> ".join([*chain, str(path)])
        raise ConfigError(f"{path}: '{INCLUDE_KEY}' forms a cycle ({cycle})")
    data = load_yaml_file(path)
    included = data.pop(INCLUDE_KEY, [])
    if isinstance(included, str):
        included = [included]
    if not isinstance(included, list) or not all(isinstance(n, str) for n in included):
        raise ConfigError(f"{path}: '{INCLUDE_KEY}' must be a list of preset names")
    for inner in included:
        tree = _merge_preset(tree, inner, defaults, chain=(*chain, str(path)))
    return merge(tree, data, source=str(path), reference=defaults)


def load_config(names: Iterable[str] = ("default",), overrides: Iterable[str] = ()) -> Config:
    """defaults.yaml, then each preset in order (its `include`s first), then each `--set`
    override; then every numeric value is checked against configs/ranges.yaml."""
    defaults = load_yaml_file(resolve_config_path(DEFAULTS_NAME))
    tree = defaults
    for name in names:
        tree = _merge_preset(tree, name, defaults, chain=())
    for text in overrides:
        tree = merge(tree, parse_override(text), source=f"--set {text}", reference=defaults)
    check_ranges(tree, defaults, load_ranges())
    return _to_config(tree)


def dump_config(cfg: Mapping, path: Path) -> None:
    """Write the resolved config as YAML (atomically, so a crash never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as handle:
        _yaml().dump(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg), handle)
    tmp.replace(path)


def fill_missing(saved: Mapping, current: Mapping, prefix: str = "") -> tuple[dict, list[str]]:
    """(saved with the keys it lacks taken from current, the dotted keys so added): a run saved
    before a config key existed resumes with that key's current value."""
    merged, added = dict(saved), []
    for key, value in current.items():
        dotted = f"{prefix}{key}"
        if key not in saved:
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
