"""A finished or interrupted run, rebuilt from its folder without its data: `run.py eval`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from agent.config import ConfigError, load_config
from agent.methods import agent_class
from agent.programs import Programs
from agent.protocol import Agent
from agent.runner.build import RunState, fresh_run, latest_run
from agent.runner.evaluation import evaluate, policy_fn
from agent.runner.rundir import CHECKPOINT_DIR, CONTEXT_FILE
from agent.runner.seeds import aggregate, seed_list, seed_slice, vmapped
from agent.runner.sources import config_task, online_context, task_spec
from agent.runner.world_models import build_world_model


def load_run(logdir: Path) -> tuple[Agent, RunState]:
    """The agent and newest intact RunState of the run in `logdir`, rebuilt without its data."""
    logdir = Path(logdir)
    config_path = logdir / "config.yaml"
    if not config_path.exists():
        raise ConfigError(f"{logdir} holds no run (no config.yaml)")
    cfg = load_config([str(config_path)])
    cls = agent_class(cfg.method)
    task = config_task(cfg)
    spec = task_spec(task)
    facts = {}
    if not cls.online:
        if not (logdir / CONTEXT_FILE).exists():
            raise ConfigError(f"{logdir} has no {CONTEXT_FILE}: it was written by an older version")
        facts = json.loads((logdir / CONTEXT_FILE).read_text())
    # The checkpoint holds the real normaliser; the identity one only shapes the template.
    context = dataclasses.replace(online_context(task, spec), **facts)
    if cls.uses_world_model:
        context = dataclasses.replace(context, world=build_world_model(cfg, spec, context))
    agent = cls(cfg, spec, context)
    run = latest_run(logdir, fresh_run(cfg, agent, spec))
    if run is None:
        raise ConfigError(f"{logdir} holds no checkpoint yet ({logdir / CHECKPOINT_DIR} is empty)")
    return agent, run


def evaluate_logdir(logdir: Path, episodes: int | None = None) -> dict:
    """Evaluate the newest checkpoint of the run in `logdir`, rebuilt from its saved config."""
    agent, run = load_run(logdir)
    cfg, programs = agent.cfg, Programs(agent)
    count = episodes or cfg.eval.final_episodes
    head = {"step": int(run.counters["step"]), "episodes": count}
    if not vmapped(cfg):
        metrics, _ = evaluate(policy_fn(programs, run.agent), config_task(cfg), count, cfg.seed)
        return {**head, **metrics}
    per_seed = [
        evaluate(policy_fn(programs, seed_slice(run.agent, i)), config_task(cfg), count, seed)[0]
        for i, seed in enumerate(seed_list(cfg))
    ]
    return {**head, "seeds": seed_list(cfg), **aggregate(per_seed), "per_seed": per_seed}
