"""Several seeds of one config trained as one vmapped program (`train.seeds: N`).

Seeds cfg.seed .. cfg.seed + N - 1 each keep what a separate run of theirs would have: the root
key PRNGKey(seed), hence their own initialisation and data order (the counter-based keys of
agent/programs.py), and their own evaluation episodes. Every array of the agent's state gets a
leading seed axis and one `jax.vmap` of the chunk program trains them together, so N seeds end
where N separate runs end (within float tolerance; tests/test_seeds.py). What the seeds share:
the dataset and what the runner prepares from it before training (statistics, and a world model
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

import jax
import numpy as np

from agent import checkpoint
from agent import replay as replay_lib
from agent.config import Config, ConfigError
from agent.logger import Logger
from agent.methods import agent_class
from agent.programs import Programs
from agent.runner import rundir
from agent.runner.devices import seed_shardings
from agent.runner.evaluation import evaluate
from agent.runner.jax_setup import configure_jax
from agent.runner.loop import (
    INIT_STREAM,
    Clock,
    RunState,
    build,
    check_schedule,
    chunk_length,
    crossed,
    latest_run,
    new_counters,
    policy_fn,
)
from agent.runner.rundir import CHECKPOINT_DIR, RESULT_FILE
from agent.runner.sources import config_task

AGGREGATED = ("eval/return", "eval/normalized_score")


def seed_list(cfg: Config) -> list[int]:
    return [cfg.seed + i for i in range(cfg.train.seeds)]


def seed_dir(logdir: Path, seed: int) -> Path:
    return Path(logdir) / f"seed{seed}"


def fresh_seeds(cfg: Config, agent, spec) -> RunState:
    """The stacked RunState of fresh runs of every seed: state[i] = init(PRNGKey(seed_i))."""
    rngs = jax.numpy.stack([jax.random.PRNGKey(s) for s in seed_list(cfg)])
    init = jax.vmap(lambda rng: agent.init(jax.random.fold_in(rng, INIT_STREAM), spec))
    return RunState(jax.jit(init)(rngs), None, new_counters(), rngs)


def seed_slice(tree, i: int):
    """Seed i's part of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def _check(cfg: Config, agent, replay) -> None:
    if agent.online:
        raise ConfigError(
            f"train.seeds={cfg.train.seeds}: method '{cfg.method}' is online (each seed steps its "
            "own simulator); run its seeds with `run.py sweep --seeds ...`"
        )
    if isinstance(replay, replay_lib.HostReplay) or agent.host_loop_chunks:
        raise ConfigError(
            f"train.seeds={cfg.train.seeds}: method '{cfg.method}' here draws its batches on the "
            "host; set replay.placement=device, or run the seeds with `run.py sweep`"
        )


def train_seeds(cfg: Config, logdir: Path, quiet: bool = False) -> dict:
    """Train cfg.train.seeds seeds of `cfg` as one vmapped program; -> the aggregate result."""
    configure_jax(cfg.jax)
    logdir = Path(logdir)
    if agent_class(cfg.method).online:
        _check(cfg, agent_class(cfg.method), None)
    check_schedule(cfg, cfg.train.updates_per_call, "train.updates_per_call")
    stacked, replicated = seed_shardings(cfg)
    rundir.prepare_logdir(cfg, logdir)
    agent, replay, spec = build(cfg, logdir)
    _check(cfg, agent, replay)
    if stacked is not None:
        replay = jax.device_put(replay, replicated)
    fresh = fresh_seeds(cfg, agent, spec)
    run = latest_run(logdir, fresh) or fresh
    if stacked is not None:
        placed = jax.device_put((run.agent, run.rng), stacked)
        run = run._replace(agent=placed[0], rng=placed[1])
    trainer = SeedTrainer(cfg, agent, logdir, quiet)
    try:
        if int(run.counters["step"]) >= cfg.train.steps and rundir.read_result(logdir):
            print(f"run in {logdir} is already complete ({cfg.train.steps} steps)", flush=True)
            return rundir.read_result(logdir)
        run = trainer.train(run, replay)
        return trainer.final_evaluation(run)
    finally:
        trainer.close()


class SeedTrainer:
    """The host side of a vmapped-seeds run: chunks, per-seed logs and evaluations, checkpoints."""

    def __init__(self, cfg: Config, agent, logdir: Path, quiet: bool) -> None:
        self.cfg, self.agent, self.logdir, self.quiet = cfg, agent, logdir, quiet
        self.seeds = seed_list(cfg)
        self.programs = Programs(agent)
        self.task = config_task(cfg)
        self.loggers: list[Logger] = []
        self.main: Logger | None = None

    def _start_loggers(self, step: int) -> None:
        total = self.cfg.train.steps
        for seed in self.seeds:
            rundir.trim_metrics(seed_dir(self.logdir, seed), step)
        rundir.trim_metrics(self.logdir, step)
        self.loggers = [
            Logger(seed_dir(self.logdir, s), total, initial_step=step, quiet=True)
            for s in self.seeds
        ]
        self.main = Logger(self.logdir, total, initial_step=step, quiet=self.quiet)

    def close(self) -> None:
        for logger in [*self.loggers, *([self.main] if self.main else [])]:
            logger.close()

    def train(self, run: RunState, replay) -> RunState:
        t = self.cfg.train
        step = int(run.counters["step"])
        if step:
            print(f"resumed from step {step}", flush=True)
        self._start_loggers(step)
        clock = Clock(step)
        while step < t.steps:
            try:
                phase = self.agent.phase(step)
                length = chunk_length(self.cfg, self.agent, step, phase)
                program = self.programs.seeds_chunk(phase, length)
                state, metrics = program(run.agent, replay, run.rng, step)
                jax.block_until_ready(state)
                step += length
                run = run._replace(agent=state, counters={**run.counters, "step": np.int64(step)})
                if crossed(step, length, t.log_every):
                    self._log(step, jax.device_get(metrics), clock.rate(step, "updates_per_second"))
                self._after_chunk(run, step, length)
            except KeyboardInterrupt:
                step = int(run.counters["step"])  # the last finished chunk, wherever ^C landed
                checkpoint.save(self.logdir / CHECKPOINT_DIR, step, run, t.keep_checkpoints)
                self.main.message(f"interrupted at step {step}; rerun the same command to resume")
                raise
        return run

    def _log(self, step: int, metrics: dict, rate: dict) -> None:
        """Seed i's metrics to its folder; their mean over seeds (and the updates per second of
        all seeds together) to the run folder."""
        for i, logger in enumerate(self.loggers):
            logger.scalars(step, {k: float(v[i]) for k, v in metrics.items()})
        self.main.scalars(step, {**{k: float(np.mean(v)) for k, v in metrics.items()}, **rate})

    def _after_chunk(self, run: RunState, step: int, length: int) -> None:
        t, e = self.cfg.train, self.cfg.eval
        if crossed(step, length, t.eval_every) and step < t.steps and self.agent.has_policy:
            self._evaluate(run, step, e.episodes)
        if crossed(step, length, t.checkpoint_every) or step == t.steps:
            checkpoint.save(self.logdir / CHECKPOINT_DIR, step, run, t.keep_checkpoints)
        self.main.advance(step)

    def _evaluate(self, run: RunState, step: int, episodes: int) -> list[dict]:
        """Every seed's deterministic policy on its own evaluation episodes, logged."""
        results = []
        for i, (seed, logger) in enumerate(zip(self.seeds, self.loggers, strict=True)):
            act = policy_fn(self.programs, seed_slice(run.agent, i))
            metrics, _ = evaluate(act, self.task, episodes, seed)
            logger.scalars(step, metrics)
            results.append(metrics)
        self.main.scalars(step, aggregate(results))
        return results

    def final_evaluation(self, run: RunState) -> dict:
        cfg, step = self.cfg, int(run.counters["step"])
        if not self.agent.has_policy:
            raise ConfigError(f"train.seeds: method '{cfg.method}' has no policy to evaluate")
        per_seed = self._evaluate(run, step, cfg.eval.final_episodes)
        for seed, metrics in zip(self.seeds, per_seed, strict=True):
            result = {"step": step, "episodes": cfg.eval.final_episodes, **metrics}
            rundir.write_json_atomic(seed_dir(self.logdir, seed) / RESULT_FILE, result)
        result = {
            "step": step,
            "episodes": cfg.eval.final_episodes,
            "seeds": self.seeds,
            **aggregate(per_seed),
            "per_seed": per_seed,
        }
        rundir.write_json_atomic(self.logdir / RESULT_FILE, result)
        self.main.message(
            f"final evaluation of {len(self.seeds)} seeds ({cfg.eval.final_episodes} episodes "
            f"each): normalized score {result['eval/normalized_score']:.1f} +- "
            f"{result['eval/normalized_score_seed_std']:.1f} over seeds"
        )
        return result


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of every metric, and the std over seeds of the return and score."""
    out = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
    for key in AGGREGATED:
        out[f"{key}_seed_std"] = float(np.std([m[key] for m in per_seed]))
    return out
