"""The run folder: the saved config, metrics trimmed on resume, the result and the data facts.

LOGDIR/config.yaml        the resolved config (a rerun with another config is refused)
LOGDIR/context.json       what the run learned from its data before training (sizes, reward
                          scaling), so evaluation can rebuild the agent without the data
LOGDIR/metrics.jsonl      one JSON object per logged step; tb/ TensorBoard events
LOGDIR/checkpoints/       ckpt_<step>/ {agent state, replay (online), counters, RNG}
LOGDIR/world_model/       the trained world model (same checkpoint format)
LOGDIR/result.json        the final evaluation
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import (
    Config,
    ConfigError,
    dump_config,
    fill_missing,
    first_difference,
    load_yaml_file,
)
from agent.failures import json_safe, reported_write

CHECKPOINT_DIR = "checkpoints"
RESULT_FILE = "result.json"
CONTEXT_FILE = "context.json"
WORLD_MODEL_DIR = "world_model"
SNAPSHOT_DIR = "snapshots"


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a crash never leaves half a file; a failed
    write (a full disk) raises `WriteFailed` and leaves the previous file as it was."""
    tmp = path.with_name(path.name + ".tmp")
    with reported_write(path):
        try:
            tmp.write_text(text)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)


def write_json_atomic(path: Path, value: dict) -> None:
    """`value` as JSON, non-finite numbers as strings ('nan'), so the file is always valid JSON."""
    write_text_atomic(path, json.dumps(json_safe(value), indent=1))


def prepare_logdir(cfg: Config, logdir: Path) -> None:
    """Save the resolved config, or check that an existing run in `logdir` used the same one."""
    logdir.mkdir(parents=True, exist_ok=True)
    saved_path = logdir / "config.yaml"
    if saved_path.exists():
        # Keys added to the config since the run started, and speed settings, take their
        # current values.
        saved, added = fill_missing(load_yaml_file(saved_path), cfg.to_dict())
        key = first_difference(saved, cfg.to_dict())
        if key is not None:
            raise ConfigError(
                f"{logdir} holds a run with a different config (key '{key}'); "
                "rerun with the same config to resume, or choose another --logdir"
            )
        if added:
            taken = ", ".join(added)
            line = f"config: keys new or speed settings changed since this run started: {taken}"
            print(line, flush=True)
            with reported_write(saved_path):
                dump_config(cfg, saved_path)
    else:
        with reported_write(saved_path):
            dump_config(cfg, saved_path)


def trim_metrics(logdir: Path, step: int) -> None:
    """Drop metric lines written after checkpoint `step` by a run that was then interrupted."""
    path = logdir / "metrics.jsonl"
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def read_result(logdir: Path) -> dict | None:
    path = logdir / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else None
