"""One training run as a plain function of its config: `train(cfg, logdir) -> result`.

A sweep calls it many times. The run resumes from the newest checkpoint in `logdir` when there is
one (parameters, optimiser states, RNG key, step counter: the sampler draws from the RNG key in the
state, so resumed runs sample exactly the batches an uninterrupted run would).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax

import envs
from agent import checkpoint
from agent.config import (
    Config,
    ConfigError,
    dump_config,
    first_difference,
    load_config,
    load_yaml_file,
)
from agent.evaluation import evaluate
from agent.logger import Logger, MetricStream
from agent.methods import is_online, make_agent
from agent.replay import from_offline
from envs.datasets import load_dataset

CHECKPOINT_DIR = "checkpoints"
RESULT_FILE = "result.json"


def check_schedule(cfg: Config) -> None:
    """Every interval must be a whole number of fused update calls."""
    chunk = cfg.train.updates_per_call
    if chunk <= 0:
        raise ConfigError(f"train.updates_per_call must be positive, got {chunk}")
    for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
        value = cfg.train[key]
        if value < 0 or value % chunk:
            raise ConfigError(
                f"train.{key}={value} must be a non-negative multiple of "
                f"train.updates_per_call={chunk}"
            )
    if cfg.eval.video_every % chunk:
        raise ConfigError(
            f"eval.video_every={cfg.eval.video_every} must be a multiple of "
            f"train.updates_per_call={chunk}"
        )


def prepare_logdir(cfg: Config, logdir: Path) -> None:
    """Save the resolved config, or check that an existing run in `logdir` used the same one."""
    logdir.mkdir(parents=True, exist_ok=True)
    saved_path = logdir / "config.yaml"
    if saved_path.exists():
        saved = load_yaml_file(saved_path)
        key = first_difference(saved, cfg.to_dict())
        if key is not None:
            raise ConfigError(
                f"{logdir} holds a run with a different config (key '{key}'); "
                "rerun with the same config to resume, or choose another --logdir"
            )
    else:
        dump_config(cfg, saved_path)


def trim_metrics(logdir: Path, step: int) -> None:
    """Drop metric lines written after checkpoint `step` by a run that was then interrupted."""
    path = logdir / "metrics.jsonl"
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def restore(agent, cfg: Config, logdir: Path):
    """The newest checkpoint's (step, state), or (0, a fresh state)."""
    state = agent.init_state(jax.random.PRNGKey(cfg.seed))
    found = checkpoint.load_latest(logdir / CHECKPOINT_DIR, state)
    if found is None:
        return 0, state
    step, state = found
    return step, state


def resume(agent, cfg: Config, logdir: Path):
    """(step, state, None) to continue from the newest checkpoint (or from scratch), or
    (step, state, result) when the run in `logdir` is already complete."""
    step, state = restore(agent, cfg, logdir)
    if step:
        print(f"resumed from step {step}", flush=True)
        trim_metrics(logdir, step)
    if step >= cfg.train.steps and (logdir / RESULT_FILE).exists():
        print(f"run in {logdir} is already complete ({cfg.train.steps} steps)", flush=True)
        return step, state, json.loads((logdir / RESULT_FILE).read_text())
    return step, state, None


def save_on_interrupt(logdir: Path, step: int, state, cfg: Config, logger) -> None:
    """Ctrl-C: keep the work of every finished chunk, so the rerun resumes from here."""
    checkpoint.save(logdir / CHECKPOINT_DIR, step, state, cfg.train.keep_checkpoints)
    logger.message(f"interrupted at step {step}; rerun the same command to resume")


def after_chunk(cfg: Config, agent, state, logger, logdir: Path, step: int) -> None:
    """Periodic evaluation (with video when due) and checkpoint, then the progress display."""
    t = cfg.train
    if t.eval_every and step % t.eval_every == 0 and step < t.steps:
        record = bool(cfg.eval.video_every) and step % cfg.eval.video_every == 0
        evaluate_and_log(cfg, agent, state, logger, step, cfg.eval.episodes, record)
    if step % t.checkpoint_every == 0 or step == t.steps:
        checkpoint.save(logdir / CHECKPOINT_DIR, step, state, t.keep_checkpoints)
    logger.advance(step)


def train(cfg: Config, logdir: Path, quiet: bool = False) -> dict:
    """Train `cfg.method` on `cfg.task`, evaluating and checkpointing as configured.

    Returns the final evaluation metrics (also written to LOGDIR/result.json).
    """
    if is_online(cfg.method):
        from agent.online import train_online

        return train_online(cfg, logdir, quiet)
    check_schedule(cfg)
    spec = envs.get_task(cfg.task)
    logdir = Path(logdir)
    prepare_logdir(cfg, logdir)
    data = load_dataset(cfg.task, cfg.dataset)
    replay = from_offline(data)
    agent = make_agent(cfg, spec.obs_dim, spec.act_dim, data)
    if hasattr(agent, "prepare"):  # agents with a world model train or load it here
        stream = MetricStream(logdir, "world_model")
        agent.prepare(logdir, stream)
        stream.close()
    step, state, result = resume(agent, cfg, logdir)
    if result is not None:
        return result
    logger = Logger(logdir, cfg.train.steps, initial_step=step, quiet=quiet)
    try:
        state = _loop(cfg, agent, state, replay, step, logger, logdir)
        return final_evaluation(cfg, agent, state, logger, logdir, int(state.step))
    finally:
        logger.close()


def _loop(cfg, agent, state, replay, step, logger, logdir):
    t = cfg.train
    last_time, last_step = time.perf_counter(), step
    while step < t.steps:
        try:
            new_state, metrics = agent.train_chunk(state, replay)
            jax.block_until_ready(new_state)
        except KeyboardInterrupt:
            save_on_interrupt(logdir, step, state, cfg, logger)
            raise
        state = new_state
        step += t.updates_per_call
        if step % t.log_every == 0:
            jax.block_until_ready(metrics)
            now = time.perf_counter()
            metrics = {
                **metrics,
                "train/updates_per_second": (step - last_step) / (now - last_time),
            }
            logger.scalars(step, metrics)
            last_time, last_step = now, step
        after_chunk(cfg, agent, state, logger, logdir, step)
    return state


def evaluate_and_log(cfg, agent, state, logger, step, episodes, record) -> dict:
    """Evaluate the agent's deterministic policy; log the metrics (and video when `record`)."""
    metrics, frames = evaluate(
        lambda obs: agent.act(state, obs),
        cfg.task,
        episodes,
        cfg.seed,
        record=record,
        frame_size=cfg.eval.video_size,
    )
    logger.scalars(step, metrics)
    if record:
        logger.video(step, frames)
    return metrics


def final_evaluation(cfg, agent, state, logger, logdir: Path, step: int) -> dict:
    """The final evaluation at `step`, logged and written to LOGDIR/result.json."""
    record = bool(cfg.eval.video_every)
    metrics = evaluate_and_log(cfg, agent, state, logger, step, cfg.eval.final_episodes, record)
    result = {"step": step, "episodes": cfg.eval.final_episodes, **metrics}
    tmp = logdir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(logdir / RESULT_FILE)
    logger.message(
        f"final evaluation ({cfg.eval.final_episodes} episodes): "
        f"return {metrics['eval/return']:.1f} +- {metrics['eval/return_std']:.1f}, "
        f"normalized score {metrics['eval/normalized_score']:.1f}"
    )
    return result


def evaluate_logdir(logdir: Path, episodes: int | None = None) -> dict:
    """Evaluate the newest checkpoint of the run in `logdir`, rebuilt from its saved config."""
    logdir = Path(logdir)
    config_path = logdir / "config.yaml"
    if not config_path.exists():
        raise ConfigError(f"{logdir} holds no run (no config.yaml)")
    cfg = load_config([str(config_path)])
    spec = envs.get_task(cfg.task)
    agent = make_agent(cfg, spec.obs_dim, spec.act_dim, None)
    template = agent.init_state(jax.random.PRNGKey(cfg.seed))
    found = checkpoint.load_latest(logdir / CHECKPOINT_DIR, template)
    if found is None:
        raise ConfigError(f"{logdir} holds no checkpoint yet ({logdir / CHECKPOINT_DIR} is empty)")
    step, state = found
    count = episodes or cfg.eval.final_episodes
    metrics, _ = evaluate(lambda obs: agent.act(state, obs), cfg.task, count, cfg.seed)
    return {"step": step, "episodes": count, **metrics}
