"""The world model of a run: built from the config, fitted or loaded, saved beside the run.

Its params are stored in the checkpoint format (`agent/checkpoint.py`: checksummed npz plus
meta.json), in LOGDIR/world_model/; `world_model.path` reuses another run's folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax

from agent import checkpoint
from agent.config import Config, ConfigError
from agent.logger import MetricStream
from agent.protocol import Context, Spec
from agent.runner.progress import FitProgress
from agent.runner.rundir import WORLD_MODEL_DIR
from agent.world_model import make_world_model

FIT_SEED_OFFSET = 7919  # the model's own key stream, apart from the agent's


def build_world_model(cfg: Config, spec: Spec, context: Context):
    try:
        return make_world_model(cfg, spec, context)
    except ValueError as exc:
        raise ConfigError(f"world_model: {exc}") from None


def save_world_model(world, params, folder: Path) -> None:
    checkpoint.save(folder, 0, jax.device_get(params), keep=1, extra={"model": world.file_config()})


def load_world_model(world, folder: Path, label: str = "world_model.path"):
    """Params saved by `save_world_model` in `folder`; ConfigError if missing or not matching."""
    if not folder.is_dir():
        raise ConfigError(f"{label}: no world-model folder {folder}")
    if not checkpoint.checkpoint_steps(folder):
        raise ConfigError(f"{label}: {folder} holds no saved world model")
    meta = checkpoint.read_meta(checkpoint.checkpoint_path(folder, 0))
    stored = (meta or {}).get("model")
    if meta is not None and stored != world.file_config():
        raise ConfigError(
            f"{label}: {folder} holds a model built with {stored}, "
            f"this run needs {world.file_config()}"
        )
    found = checkpoint.load_latest(folder, world.init(jax.random.PRNGKey(0)))
    if found is None:
        raise ConfigError(f"{label}: {folder} holds no intact world model")
    return found[1]


def prepare_world_model(cfg: Config, spec: Spec, context: Context, data, logdir: Path) -> Context:
    """The context with the world model and its params: loaded from `world_model.path`, or from
    this run's own folder when resuming, or fitted on `data` and saved there."""
    world = build_world_model(cfg, spec, context)
    own = logdir / WORLD_MODEL_DIR
    if cfg.world_model.path:
        params = load_world_model(world, Path(cfg.world_model.path))
        print(f"world model: loaded {cfg.world_model.path}", flush=True)
    elif checkpoint.checkpoint_steps(own):
        params = load_world_model(world, own, label="this run's world model")
        print(f"world model: reusing {own}", flush=True)
    elif not world.fitted_before_training:
        print(f"world model: the {world.kind} trains in this run's first phase", flush=True)
        params = None
    else:
        print(f"world model: training the {world.kind} (one line per epoch)", flush=True)
        stream = MetricStream(logdir, "world_model")
        try:
            key = jax.random.PRNGKey(cfg.seed + FIT_SEED_OFFSET)
            params = world.fit(data, key, log=stream, progress=FitProgress())
        finally:
            stream.close()
        save_world_model(world, params, own)
        print(f"world model: saved to {own}", flush=True)
    return dataclasses.replace(context, world=world, world_params=params)
