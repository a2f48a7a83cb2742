"""A sweep's finished runs, kept beside its page: one JSON line per run in
PAGE_FOLDER/<root name>/runs.jsonl (docs/RESULTS.md, root runs/offline ->
docs/results/offline/runs.jsonl).

Run folders are large and live outside the repository, so a machine that is replaced loses them.
A record is small (score, wall time, speed, learning curve, resolved config) and is committed
with the page. A sweep given `--page` counts a run whose record holds all its steps, of the same
config, as finished and does not train it again, and its report reads the record where the run
folder is absent: a sweep can span machines, not only sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import Config, ConfigError, fill_missing, first_difference
from agent.runner import rundir

RECORDS_FILE = "runs.jsonl"
RECORD_KEYS = (
    "label", "seed", "task", "method", "step", "score", "wall_s", "speed", "curve", "config"
)  # fmt: skip

Key = tuple[str, int]  # (grid point label, seed)


def read_records(folder: Path) -> dict[Key, dict]:
    """The records in FOLDER/runs.jsonl by (label, seed); {} when there is none."""
    path = Path(folder) / RECORDS_FILE
    if not path.exists():
        return {}
    records = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record_key(record["label"], int(record["seed"]))] = record
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}:{number}: not a sweep run record: {line[:80]}") from None
    return records


def records_folder(root: Path, page: Path) -> Path:
    """Where a sweep with ROOT writes its CSV, plots and records beside PAGE:
    docs/RESULTS.md, runs/offline -> docs/results/offline."""
    return Path(page).parent / Path(page).stem.lower() / Path(root).name


def holds_final_result(record: dict | None, cfg: Config) -> bool:
    """The record is of a run of `cfg` that finished all its steps."""
    return (
        record is not None
        and record.get("score") is not None
        and record["step"] >= cfg.train.steps
        and config_difference(record, cfg) is None
    )


def config_difference(record: dict, cfg: Config) -> str | None:
    """The first config key where the record's run differs from `cfg`, or None; keys added to
    the config since the run take their current values, as when a run folder resumes."""
    current = cfg.to_dict()
    saved, _ = fill_missing(record.get("config") or {}, current)
    return first_difference(saved, current)


def record_key(label: str, seed: int) -> Key:
    """(label, seed): a run's key among the records; a sweep without a grid has one label."""
    return (label or "(config)", seed)


def update_records(folder: Path, rows: list[dict]) -> Path:
    """Add or refresh the record of every finished row (score set), keeping the others; the file
    is rewritten atomically, in the rows' order, then the records no row names."""
    records = read_records(folder)
    fresh = {
        record_key(row["label"], row["seed"]): {k: row[k] for k in RECORD_KEYS}
        for row in rows
        if row["score"] is not None
    }
    keys = [record_key(row["label"], row["seed"]) for row in rows]
    known, named = records | fresh, set(keys)
    ordered = [known[key] for key in keys if key in known]
    ordered += [record for key, record in records.items() if key not in named]
    path = Path(folder) / RECORDS_FILE
    if not ordered and not path.exists():
        return path  # no finished run yet: no empty file beside the page
    text = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in ordered)
    rundir.write_text_atomic(path, text)
    return path
