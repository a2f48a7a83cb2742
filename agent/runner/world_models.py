"""The world model of a run: built from the config, fitted or loaded, saved beside the run.

Its params are stored in the checkpoint format (`agent/checkpoint.py`: checksummed npz plus
meta.json), in LOGDIR/world_model/; `world_model.path` reuses another run's folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import jax
import numpy as np

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


def params_digest(params) -> str:
    """SHA-256 over the leaves' names, dtypes, shapes and bytes: equal for equal params, unlike
    the file's checksum (the npz archive stamps its members with the time of writing)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
        array = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_world_model(world, params, folder: Path) -> None:
    params = jax.device_get(params)
    extra = {"model": world.file_config(), "params_sha256": params_digest(params)}
    checkpoint.save(folder, 0, params, keep=1, extra=extra)


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
        params = _reuse_or_refit(cfg, world, data, own)
    elif not world.fitted_before_training:
        print(f"world model: the {world.kind} trains in this run's first phase", flush=True)
        params = None
    else:
        print(f"world model: training the {world.kind} (one line per epoch)", flush=True)
        params = _fit_and_save(cfg, world, data, own)
        print(f"world model: saved to {own}", flush=True)
    return dataclasses.replace(context, world=world, world_params=params)


def _fit_and_save(cfg: Config, world, data, own: Path):
    """Fit the world model with the run's own key on `data` and save it in `own`."""
    stream = MetricStream(own.parent, "world_model")
    try:
        key = jax.random.PRNGKey(cfg.seed + FIT_SEED_OFFSET)
        params = world.fit(data, key, log=stream, progress=FitProgress())
    finally:
        stream.close()
    save_world_model(world, params, own)
    return params


def _reuse_or_refit(cfg: Config, world, data, own: Path):
    """This run's saved world model; a damaged one is refitted (the fit is a function of the seed
    and the data) and checked against the digest recorded when it was first saved."""
    path = checkpoint.checkpoint_path(own, 0)
    reason = checkpoint.damage_reason(path) if path.is_dir() else None
    if reason is None or not world.fitted_before_training:
        params = load_world_model(world, own, label="this run's world model")
        print(f"world model: reusing {own}", flush=True)
        return params
    recorded = (checkpoint.read_meta(path) or {}).get("params_sha256")
    print(
        f"world model: {path} is damaged ({reason}); refitting it with seed {cfg.seed} on the "
        "run's data",
        flush=True,
    )
    params = _fit_and_save(cfg, world, data, own)
    if recorded is None:
        verdict = "no digest was recorded to compare it with"
    elif recorded == params_digest(params):
        verdict = "it matches the recorded digest"
    else:
        verdict = (
            "it differs from the recorded digest (XLA's CPU code depends on the processor); "
            "the agent resumes on the refitted model"
        )
    print(f"world model: refitted and saved to {own}; {verdict}", flush=True)
    return params
