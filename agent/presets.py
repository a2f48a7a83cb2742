"""Named presets: the files in `configs/`, and the aliases that configs/aliases.yaml declares.

A bare NAME is `configs/NAME.yaml` when that file exists, else an alias: a list of preset names
and `dotted.key=value` settings applied in order, in place of the name (as `--config` and `--set`
would be). Aliases keep older preset names working where one preset now serves several tasks
(`gem_hopper` is `gem` with `task=hopper`). A name with a suffix or a slash is a path.
"""

from __future__ import annotations

from pathlib import Path

from agent.config_schema import ConfigError, load_yaml_file

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULTS_NAME = "defaults"  # configs/defaults.yaml: every key (agent/config_schema.py)
ALIASES_NAME = "aliases"  # configs/aliases.yaml: the aliases, not a preset
ALIASES_PATH = CONFIG_DIR / f"{ALIASES_NAME}.yaml"


def preset_names() -> list[str]:
    """Names of the preset files in `configs/` (not defaults.yaml, not aliases.yaml)."""
    skip = {DEFAULTS_NAME, ALIASES_NAME}
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem not in skip)


def aliases() -> dict[str, list[str]]:
    """{alias: its presets and key=value settings, in order} from configs/aliases.yaml."""
    table = load_yaml_file(ALIASES_PATH) if ALIASES_PATH.exists() else {}
    files = set(preset_names())
    for name, items in table.items():
        where = f"{ALIASES_PATH}: alias '{name}'"
        if name in files or name in (DEFAULTS_NAME, ALIASES_NAME):
            raise ConfigError(f"{where} has the name of a file in {CONFIG_DIR}")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where} must be a list of preset names and key=value settings")
        for item in items:
            if "=" not in item and item not in files:
                raise ConfigError(f"{where} names '{item}', which is no file in {CONFIG_DIR}")
    return table


def resolve_config_path(name_or_path: str) -> Path:
    """A bare NAME means `configs/NAME.yaml`; anything with a suffix or a slash is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        path = candidate
    else:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if name_or_path == ALIASES_NAME:
        raise ConfigError(f"config '{ALIASES_NAME}' is the table of aliases, not a preset")
    if not path.is_file():
        available = ", ".join(preset_names())
        raise ConfigError(
            f"config '{name_or_path}' not found ({path}); presets: {available} "
            "(and the aliases that `python run.py presets` lists)"
        )
    return path


def expand(name_or_path: str) -> Path | list[str]:
    """The file that a preset name or path denotes, or the items of the alias it names."""
    bare = "/" not in name_or_path and Path(name_or_path).suffix not in (".yaml", ".yml")
    if bare and not (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
        items = aliases().get(name_or_path)
        if items is not None:
            return list(items)
    return resolve_config_path(name_or_path)


def purpose(path: Path) -> str:
    """A preset's one-line purpose: the first line of its leading comment."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def describe_presets() -> list[str]:
    """One line per preset (`name  purpose`), then one per alias (`name  = what it stands for`)."""
    rows = [(name, purpose(CONFIG_DIR / f"{name}.yaml")) for name in preset_names()]
    table = aliases()
    width = max(len(name) for name in [*(n for n, _ in rows), *table])
    lines = ["Presets (configs/NAME.yaml; --config NAME, repeatable, later ones win):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    lines.append("Aliases (configs/aliases.yaml: presets and key=value settings, in order):")
    lines += [f"  {name:<{width}}  = {' + '.join(items)}" for name, items in table.items()]
    return lines
