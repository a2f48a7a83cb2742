"""Several seeds of one config trained as one vmapped program (`train.seeds: N`).

Seeds cfg.seed .. cfg.seed + N - 1 each keep what a separate run of theirs would have: the root
key PRNGKey(seed), hence their own initialisation and data order (the counter-based keys of
agent/programs.py), and their own evaluation episodes. Every array of the agent's state gets a
leading seed axis and the chunk programs are vmapped over it (`Programs(agent, seeds=True)`),
so N seeds end where N separate runs end (within float tolerance; tests/test_seeds.py). The
training loop is the one of a single run (agent/runner/loop.py); what the seeds share: the
dataset and what the runner prepares from it before training (statistics, and a world model
fitted once with cfg.seed's key, or the one at world_model.path).

With `train.shard: seeds` the seed axis is split over the local devices (a 1-D jax mesh; N
must be a multiple of the device count) and the dataset is replicated on each.

    LOGDIR/seed<S>/         metrics.jsonl, tb/, videos/, result.json of seed S
    LOGDIR/metrics.jsonl    the mean over seeds of every logged metric (and the progress bar)
    LOGDIR/result.json      per-seed final results, and their mean and std over seeds
    LOGDIR/checkpoints/     one checkpoint of the stacked state (exact resume, as for one run)

Offline methods whose replay lives on the device only: an online method's seeds each step a
simulator (use `run.py sweep` for them) and a host-fed replay draws batches per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from agent import replay as replay_lib
from agent.config import Config, ConfigError

AGGREGATED = ("eval/return", "eval/normalized_score")


def vmapped(cfg: Config) -> bool:
    """True when the run trains its seeds as one vmapped program (even a single one, sharded)."""
    return cfg.train.seeds > 1 or cfg.train.shard == "seeds"


def seed_list(cfg: Config) -> list[int]:
    return [cfg.seed + i for i in range(cfg.train.seeds)]


def seed_dir(logdir: Path, seed: int) -> Path:
    return Path(logdir) / f"seed{seed}"


def seed_slice(tree: Any, i: int) -> Any:
    """Seed i's part of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def check_seeds(
    cfg: Config, online: bool, host_batches: bool = False, vmaps_seeds: bool = True
) -> None:
    """ConfigError unless the method's seeds can share one program (offline, device batches,
    no world model of its own per run: `Agent.vmaps_seeds`)."""
    if online:
        raise ConfigError(
            f"train.seeds={cfg.train.seeds}: method '{cfg.method}' is online (each seed steps its "
            "own simulator); run its seeds with `run.py sweep --seeds ...`"
        )
    if not vmaps_seeds:
        raise ConfigError(
            f"train.seeds={cfg.train.seeds}: method '{cfg.method}' trains or caches a world model "
            "per run, which vmapped seeds do not; run its seeds with `run.py sweep --seeds ...`"
        )
    if host_batches:
        raise ConfigError(
            f"train.seeds={cfg.train.seeds}: method '{cfg.method}' here draws its batches on the "
            "host; set replay.placement=device, or run the seeds with `run.py sweep`"
        )


def draws_on_host(agent: Any, replay: Any) -> bool:
    """True when the run's batches are drawn on the host or its steps run as a host loop."""
    return isinstance(replay, replay_lib.HostReplay) or agent.host_loop_chunks


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of every metric, and the std over seeds of the return and score."""
    out = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
    for key in AGGREGATED:
        if key in per_seed[0]:
            out[f"{key}_seed_std"] = float(np.std([m[key] for m in per_seed]))
    return out
