"""What a config may hold: `configs/defaults.yaml` read as a schema.

defaults.yaml declares each key once: its default (the YAML value), its allowed values and its
meaning (the comment). A key's comment starts with its allowed values, ended by ";" (or they are
the whole comment): a range ('>= 1', '> 0', '<= b', '< b', '[a, b]', '(a, b)', '[a, b)',
'(a, b]'; a square bracket includes its bound) or choices ('a | b | c'). `read_schema` reads both;
`check_values` checks a merged config against them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError


class ConfigError(ValueError):
    """A user mistake in a config file or an override; the message is one line."""


def yaml_io() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return yaml


def load_yaml_file(path: Path) -> dict:
    """The mapping at the top of a YAML file ({} for an empty one); ConfigError otherwise."""
    try:
        data = yaml_io().load(Path(path).read_text())
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------ allowed values ----
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_ONE_SIDED = re.compile(rf"(>=|>|<=|<)\s*{_NUMBER}")
_INTERVAL = re.compile(rf"([\[(])\s*{_NUMBER}\s*,\s*{_NUMBER}\s*([\])])")
_CHOICES = re.compile(r"[\w.-]+(?:\s*\|\s*[\w.-]+)+")


@dataclass(frozen=True)
class Range:
    """The finite reals between `low` and `high`, each bound included when `*_closed`."""

    text: str  # as written in defaults.yaml, e.g. ">= 1" or "(0, 1]"
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


@dataclass(frozen=True)
class Choices:
    """A fixed set of string values."""

    values: tuple[str, ...]

    def __contains__(self, x: Any) -> bool:
        return isinstance(x, str) and x in self.values

    def __str__(self) -> str:
        return " | ".join(self.values)


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


def parse_allowed(text: str, source: str = "allowed values") -> Range | Choices | None:
    """The Range or Choices that `text` denotes, or None when it is neither (plain prose)."""
    text = text.strip()
    if _CHOICES.fullmatch(text):
        return Choices(tuple(v.strip() for v in text.split("|")))
    if _ONE_SIDED.fullmatch(text) or _INTERVAL.fullmatch(text):
        return parse_range(text, source)
    return None


# ---------------------------------------------------------------------- defaults.yaml ----
_KEY_LINE = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<value>[^#]*)(?:#(?P<note>.*))?")


@dataclass(frozen=True)
class Schema:
    """defaults.yaml: the default tree and {dotted key: allowed values} of the keys that have
    them."""

    path: Path
    defaults: dict
    allowed: dict[str, Range | Choices]


def read_schema(path: Path) -> Schema:
    """Read defaults.yaml: the YAML values, and each key's allowed values from its comment.

    Only a key's own line counts (comment lines below it continue its prose). Allowed values
    end at the first ';' of the comment; text before a ';' that is neither a range nor choices is
    an error, so a typo cannot pass as prose.
    """
    defaults = load_yaml_file(path)
    allowed: dict[str, Range | Choices] = {}
    sections: list[tuple[int, str]] = []  # (indent, key) of the open sections
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        match = _KEY_LINE.fullmatch(line.rstrip())
        if not match:
            continue
        indent = len(match["indent"])
        sections = [(i, k) for i, k in sections if i < indent]
        dotted = ".".join([*(k for _, k in sections), match["key"]])
        if not match["value"].strip():
            sections.append((indent, match["key"]))  # a section: its comment is prose
            continue
        spec, sep, _ = (match["note"] or "").partition(";")
        where = f"{path}:{number}: key '{dotted}'"
        parsed = parse_allowed(spec, where) if spec.strip() else None
        if sep and parsed is None:
            raise ConfigError(f"{where}: {spec.strip()!r} is neither a range nor 'a | b' choices")
        if parsed is not None:
            allowed[dotted] = parsed
    known = set(flatten(defaults))
    if stray := sorted(set(allowed) - known):
        raise ConfigError(f"{path}: allowed values read for keys the YAML lacks: {stray}")
    return Schema(Path(path), defaults, allowed)


# ----------------------------------------------------------------------------- checking ----
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


def check_values(
    tree: Mapping,
    defaults: Mapping,
    allowed: Mapping[str, Range | Choices],
    sources: Mapping[str, str] | None = None,
) -> None:
    """Raise ConfigError naming the first value of `tree` outside its key's allowed values, and
    where the value came from (`sources`: {dotted key: file or override}).

    Every numeric key of `defaults` must have a range; a key with a null default is checked only
    where it has allowed values (a null value passes there). Entries of a list are checked one by
    one, and must be integers where the default's entries are.
    """
    values, sources = flatten(tree), sources or {}
    numeric = set(numeric_keys(defaults))
    for key, default in flatten(defaults).items():
        spec = allowed.get(key)
        if spec is None:
            if key in numeric:
                raise ConfigError(f"defaults.yaml declares no range for the numeric key '{key}'")
            continue
        value = values[key]
        if value is None and default is None:
            continue
        origin = f" (set by {sources[key]})" if key in sources else ""
        if isinstance(spec, Choices):
            if value not in spec:
                raise ConfigError(f"{key}={value!r} is not one of: {spec}{origin}")
            continue
        items = value if isinstance(value, list) else [value]
        integral = isinstance(default, list) and all(isinstance(d, int) for d in default)
        for index, item in enumerate(items):
            name = f"{key}[{index}]" if isinstance(value, list) else key
            if not _is_number(item) or (integral and not isinstance(item, int)):
                kind = "an integer" if integral else "a number"
                raise ConfigError(f"{name}={item!r} is not {kind} (range {spec}){origin}")
            if item not in spec:
                raise ConfigError(f"{name}={item!r} is out of range {spec}{origin}")
