"""Building a run and restoring it: the agent with its data and world model, the RunState, and the
newest intact checkpoint.

    RunState = {agent: the agent's state, replay: the online replay (None offline: the dataset
                is rebuilt from its file), counters: step, updates, episode counters,
                rng: the run's root key}

With several seeds in one program (`agent/runner/seeds.py`) the agent state and the rng carry a
leading seed axis; the counters are shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from agent import checkpoint
from agent import replay as replay_lib
from agent.config import Config, ConfigError
from agent.methods import agent_class
from agent.programs import Programs
from agent.protocol import Agent, Spec
from agent.runner import rundir
from agent.runner.devices import batch_shardings, seed_shardings
from agent.runner.rundir import CHECKPOINT_DIR, CONTEXT_FILE
from agent.runner.schedule import check_schedule
from agent.runner.seeds import seed_list, vmapped
from agent.runner.sources import (
    config_task,
    dataset_arrays,
    offline_context,
    online_context,
    place_replay,
    task_spec,
)
from agent.runner.world_models import prepare_world_model

INIT_STREAM = 0


class RunState(NamedTuple):
    agent: Any
    replay: Any  # replay_lib.Replay online, None offline
    counters: dict
    rng: jax.Array


def new_counters() -> dict:
    return {
        "step": np.int64(0),
        "updates": np.int64(0),
        "episode": np.int64(0),
        "episode_steps": np.int64(0),
        "episode_return": np.float64(0.0),
    }


def typed_counters(counters: dict) -> dict:
    """`counters` with each value in the type `new_counters` gives it."""
    types = {k: type(v) for k, v in new_counters().items()}
    return {k: types[k](v) for k, v in counters.items()}


def build(cfg: Config, logdir: Path) -> tuple[Agent, Any, Spec]:
    """(agent, replay, spec) for a run: data loaded, statistics and world model ready."""
    cls = agent_class(cfg.method)
    task = config_task(cfg)
    spec = task_spec(task)
    if cls.online:
        agent = cls(cfg, spec, online_context(task, spec))
        check_online_data(cfg, agent, spec)
        return agent, None, spec
    from envs.datasets import check_segment_lengths, load_task_dataset

    data = load_task_dataset(task, cfg.dataset)
    context = offline_context(task, spec, data)
    if cls.uses_world_model:
        context = prepare_world_model(cfg, spec, context, data, logdir)
    agent = cls(cfg, spec, context)
    needs = agent.data_needs
    check_segment_lengths(data, needs.max_rows, cfg.method, bool(needs.sentinel_rows))
    replay = place_replay(cfg, dataset_arrays(data), cls.device_replay)
    facts = {
        "data_size": context.data_size,
        "reward_scale": context.reward_scale,
        "reward_bias": context.reward_bias,
    }
    rundir.write_json_atomic(logdir / CONTEXT_FILE, facts)
    return agent, replay, spec


def check_online_data(cfg: Config, agent: Agent, spec: Spec) -> None:
    """The replay must hold a whole episode, and the episodes must fit the agent's DataNeeds."""
    if agent.replay_capacity < spec.max_episode_steps:
        raise ConfigError(
            f"{cfg.method}.capacity={agent.replay_capacity} must hold a whole episode "
            f"({spec.max_episode_steps} steps): resuming replays the episode in progress"
        )
    needs = agent.data_needs
    longest = spec.max_episode_steps + needs.sentinel_rows
    if needs.max_rows is not None and longest > needs.max_rows:
        sentinel = " (with the sentinel row)" if needs.sentinel_rows else ""
        raise ConfigError(
            f"{needs.setting}={needs.max_rows}: {cfg.task}'s episodes reach {longest} rows"
            f"{sentinel}, longer than the horizon cap, which is not implemented (set it to null "
            "to accept the uncapped sweep)"
        )


def fresh_run(cfg: Config, agent: Agent, spec: Spec) -> RunState:
    """A new run: state = init(fold_in(PRNGKey(seed), INIT_STREAM)), stacked over the seeds
    (state[i] from seed_i's key) when the run trains several in one program."""
    if vmapped(cfg):
        rngs = jax.numpy.stack([jax.random.PRNGKey(s) for s in seed_list(cfg)])
        init = jax.vmap(lambda rng: agent.init(jax.random.fold_in(rng, INIT_STREAM), spec))
        return RunState(jax.jit(init)(rngs), None, new_counters(), rngs)
    rng = jax.random.PRNGKey(cfg.seed)
    # One compiled program: run op by op, initialisation compiles dozens of tiny kernels.
    state = jax.jit(lambda key: agent.init(key, spec))(jax.random.fold_in(rng, INIT_STREAM))
    replay = replay_lib.empty(spec, agent.replay_capacity) if agent.online else None
    return RunState(state, replay, new_counters(), rng)


def latest_run(logdir: Path, template: RunState) -> RunState | None:
    """The newest intact checkpoint of the run in `logdir` (ConfigError if it does not fit)."""
    try:
        found = checkpoint.load_latest(logdir / CHECKPOINT_DIR, template)
    except ValueError as exc:
        raise ConfigError(f"{exc}; it was written by another version or config") from None
    return None if found is None else found[1]


def restore(cfg: Config, agent: Agent, spec: Spec, logdir: Path) -> RunState:
    """The newest intact checkpoint's RunState, or a fresh one."""
    run = fresh_run(cfg, agent, spec)
    return latest_run(logdir, run) or run


def build_checked(cfg: Config, logdir: Path, online: bool) -> tuple[Agent, Any, Spec]:
    """build(), with the schedule checked before anything is written (online) or before the
    data is loaded (offline: the runner's intervals; the agent's once it exists)."""
    if online:
        agent, replay, spec = build(cfg, logdir)
        check_schedule(cfg, agent)
        rundir.prepare_logdir(cfg, logdir)
        return agent, replay, spec
    check_schedule(cfg)
    rundir.prepare_logdir(cfg, logdir)
    agent, replay, spec = build(cfg, logdir)
    check_schedule(cfg, agent)
    return agent, replay, spec


def shardings(cfg: Config) -> tuple[Any, Any]:
    """(split, replicated) shardings of the run's devices: split is the seed axis of vmapped
    seeds (train.shard=seeds) or the batch axis (train.shard=batch); (None, None) on one."""
    return seed_shardings(cfg) if vmapped(cfg) else batch_shardings(cfg)


def programs_for(cfg: Config, agent: Agent, replay, placement: tuple) -> tuple[Programs, Any]:
    """The run's compiled programs, and the replay placed where they read it (`placement`:
    the `shardings` of the run)."""
    split, replicated = placement
    if vmapped(cfg):
        if replicated is not None:
            replay = jax.device_put(replay, replicated)
        return Programs(agent, seeds=True), replay
    if split is not None:
        if agent.online or not isinstance(replay, replay_lib.Replay):
            raise ConfigError(
                f"train.shard=batch: method '{cfg.method}' here samples on the host or online; "
                "data parallel training needs an offline dataset on the device"
            )
        replay = jax.device_put(replay, replicated)
    return Programs(agent, split), replay


def place_run(cfg: Config, run: RunState, placement: tuple) -> RunState:
    """The run's state on the devices its programs expect: seeds split over them, or the
    parameters replicated for data parallel batches."""
    split, replicated = placement
    if vmapped(cfg) and split is not None:
        state, rng = jax.device_put((run.agent, run.rng), split)
        return run._replace(agent=state, rng=rng)
    if not vmapped(cfg) and replicated is not None:
        return run._replace(agent=jax.device_put(run.agent, replicated))
    return run
