"""One training run as a plain function of its config: `train(cfg, logdir) -> result`.

One loop serves offline and online methods. The runner owns the step counter, the replay, the
data source (a dataset, or a simulator it steps), evaluation, logging and the checkpoint layout

    RunState = {agent: the agent's state, replay: the online replay (None offline: the dataset
                is rebuilt from its file), counters: step, updates, episode counters,
                rng: the run's root key}

What `train.steps` counts: gradient steps for offline methods (pre-training phases included);
environment steps for online methods, whose `train.*` intervals are environment steps too.

A run resumes from the newest intact checkpoint in `logdir`. Every random draw is a function of
(rng, purpose, counter) (`agent/programs.py`), so a resumed run draws exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from agent import checkpoint
from agent import replay as replay_lib
from agent.config import Config, ConfigError, load_config
from agent.encoders import image_fields
from agent.logger import Logger
from agent.methods import agent_class
from agent.programs import Programs
from agent.protocol import EVAL, EXPLORE, WARMUP, Agent
from agent.runner import rundir
from agent.runner.devices import batch_shardings
from agent.runner.divergence import check_metrics, check_state
from agent.runner.evaluation import evaluate
from agent.runner.interrupts import InterruptLatch
from agent.runner.jax_setup import configure_jax
from agent.runner.run_lock import run_lock
from agent.runner.rundir import CHECKPOINT_DIR, CONTEXT_FILE, RESULT_FILE, WORLD_MODEL_DIR
from agent.runner.sources import (
    EpisodeRunner,
    config_task,
    dataset_arrays,
    offline_context,
    online_context,
    place_replay,
    task_spec,
)
from agent.runner.world_models import build_world_model, prepare_world_model, save_world_model

INIT_STREAM = 0
EXPLORE_SALT = 0x6E3  # exploration keys: fold_in(fold_in(PRNGKey(seed), salt), env step)
REPORT_SALT = 0x5E7  # keys of Agent.report: fold_in(fold_in(rng, salt), step)
EVAL_SEED = 0  # evaluation policies are deterministic; their key is never used


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


# ------------------------------------------------------------------------------ checks ----
def check_schedule(cfg: Config, chunk: int, unit: str) -> None:
    """Every interval must be a whole number of chunks (`unit` names the chunk's config key)."""
    intervals = {f"train.{k}": cfg.train[k] for k in ("steps", "log_every", "eval_every")}
    intervals["train.checkpoint_every"] = cfg.train.checkpoint_every
    intervals["eval.video_every"] = cfg.eval.video_every
    snapshot = cfg[cfg.method].get("snapshot_every") if cfg.method in cfg else None
    if snapshot is not None:
        intervals[f"{cfg.method}.snapshot_every"] = snapshot
    for key, value in intervals.items():
        if value % chunk:
            raise ConfigError(f"{key}={value} must be a multiple of {unit}={chunk}")


# ---------------------------------------------------------------------------- building ----
def build(cfg: Config, logdir: Path):
    """(agent, replay, context) for a run: data loaded, statistics and world model ready."""
    cls = agent_class(cfg.method)
    task = config_task(cfg)
    spec = task_spec(task)
    if cls.online:
        agent, replay = cls(cfg, spec, online_context(task, spec)), None
        if agent.replay_capacity < spec.max_episode_steps:
            raise ConfigError(
                f"{cfg.method}.capacity={agent.replay_capacity} must hold a whole episode "
                f"({spec.max_episode_steps} steps): resuming replays the episode in progress"
            )
        longest = spec.max_episode_steps + int(agent.end_sentinel)
        if agent.horizon_cap is not None and longest > agent.horizon_cap:
            raise ConfigError(
                f"{cfg.method}.max_step={agent.horizon_cap}: {cfg.task}'s episodes reach {longest} "
                "rows (with the sentinel row), longer than the horizon cap, which is not "
                "implemented (set it to null to accept the uncapped sweep)"
            )
    else:
        from envs.datasets import check_segment_lengths, load_task_dataset

        data = load_task_dataset(task, cfg.dataset)
        context = offline_context(task, spec, data)
        if cls.uses_world_model:
            context = prepare_world_model(cfg, spec, context, data, logdir)
        agent = cls(cfg, spec, context)
        check_segment_lengths(data, agent.horizon_cap, cfg.method, agent.end_sentinel)
        replay = place_replay(cfg, dataset_arrays(data), cls.device_replay)
        rundir.write_json_atomic(
            logdir / CONTEXT_FILE,
            {
                "data_size": context.data_size,
                "reward_scale": context.reward_scale,
                "reward_bias": context.reward_bias,
            },
        )
    return agent, replay, spec


def fresh_run(cfg: Config, agent: Agent, spec) -> RunState:
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


def restore(cfg: Config, agent: Agent, spec, logdir: Path) -> RunState:
    """The newest intact checkpoint's RunState, or a fresh one."""
    run = fresh_run(cfg, agent, spec)
    return latest_run(logdir, run) or run


# ------------------------------------------------------------------------------- train ----
def train(cfg: Config, logdir: Path, quiet: bool = False) -> dict:
    """Train `cfg.method` on `cfg.task`, evaluating and checkpointing as configured.

    Returns the final evaluation metrics (also written to LOGDIR/result.json).
    """
    configure_jax(cfg.jax)
    logdir = Path(logdir)
    cls = agent_class(cfg.method)
    chunk = cfg[cfg.method].train_every if cls.online else cfg.train.updates_per_call
    check_schedule(
        cfg, chunk, f"{cfg.method}.train_every" if cls.online else "train.updates_per_call"
    )
    with run_lock(logdir):
        return _train_locked(cfg, cls, chunk, logdir, quiet)


def _train_locked(cfg: Config, cls, chunk: int, logdir: Path, quiet: bool) -> dict:
    rundir.prepare_logdir(cfg, logdir)
    batch_sharding, replicated = batch_shardings(cfg)
    agent, replay, spec = build(cfg, logdir)
    run = restore(cfg, agent, spec, logdir)
    if batch_sharding is not None:
        if agent.online or not isinstance(replay, replay_lib.Replay):
            raise ConfigError(
                f"train.shard=batch: method '{cfg.method}' here samples on the host or online; "
                "data parallel training needs an offline dataset on the device"
            )
        run = run._replace(agent=jax.device_put(run.agent, replicated))
        replay = jax.device_put(replay, replicated)
    step = int(run.counters["step"])
    if step:
        print(f"resumed from step {step}", flush=True)
        rundir.trim_metrics(logdir, step)
    result = rundir.read_result(logdir)
    if step >= cfg.train.steps and result is not None:
        print(f"run in {logdir} is already complete ({cfg.train.steps} steps)", flush=True)
        return result
    loop = Loop(cfg, agent, spec, logdir, quiet, batch_sharding)
    try:
        run = loop.online(run) if agent.online else loop.offline(run, replay)
        trained = agent.trained_world_model(run.agent)
        if trained is not None:
            save_world_model(*trained, logdir / WORLD_MODEL_DIR)
            loop.logger.message(f"world model saved to {logdir / WORLD_MODEL_DIR}")
        return loop.final_evaluation(run)
    finally:
        loop.close()


class Loop:
    """The training loop's host side: chunks, logging, evaluation, checkpoints."""

    def __init__(
        self, cfg: Config, agent: Agent, spec, logdir: Path, quiet: bool, batch_sharding=None
    ) -> None:
        self.cfg, self.agent, self.spec, self.logdir = cfg, agent, spec, logdir
        self.programs = Programs(agent, batch_sharding)
        self.logger: Logger | None = None
        self.quiet = quiet
        self.closers: list = []
        self.replay = None  # the offline dataset's replay, for `Agent.report`

    def _start_logger(self, step: int) -> None:
        self.logger = Logger(self.logdir, self.cfg.train.steps, initial_step=step, quiet=self.quiet)

    def close(self) -> None:
        for close in self.closers:
            close()
        if self.logger is not None:
            self.logger.close()

    # ------------------------------------------------------------------------ offline ----
    def offline(self, run: RunState, replay) -> RunState:
        t = self.cfg.train
        step = int(run.counters["step"])
        self._start_logger(step)
        self.replay = replay
        feed = self._host_feed(replay, step) if isinstance(replay, replay_lib.HostReplay) else None
        clock = Clock(step)
        while step < t.steps:
            try:
                run, metrics, length = self._offline_updates(run, step, feed)
                step += length
                if crossed(step, length, t.log_every):
                    metrics = {**jax.device_get(metrics), **clock.rate(step, "updates_per_second")}
                    self.logger.scalars(step, metrics)
                    check_metrics(step, metrics, self.logdir / CHECKPOINT_DIR)
                self._after_chunk(run, step, length)
            except KeyboardInterrupt:
                self._save_on_interrupt(run)  # the last finished chunk, wherever ^C landed
                raise
        return run

    def _offline_updates(self, run: RunState, step: int, feed) -> tuple[RunState, dict, int]:
        """One chunk of updates from `step`: the new run state, its metrics and its length."""
        phase = self.agent.phase(step)
        length = chunk_length(self.cfg, self.agent, step, phase)
        if feed is None:
            program, data = self.programs.chunk(phase, length), self.replay
        else:
            program, data = self.programs.chunk(phase, length, fed=True), feed(step, length)
        state, metrics = program(run.agent, data, run.rng, step)
        jax.block_until_ready(state)
        counters = {**run.counters, "step": np.int64(step + length)}
        return run._replace(agent=state, counters=counters), metrics, length

    def _host_feed(self, replay: replay_lib.HostReplay, first: int):
        """step, length -> the stacked device batches of those steps, drawn ahead on a thread."""
        seed, agent = self.cfg.seed, self.agent

        def draw(step: int) -> dict:
            return agent.host_batch(agent.phase(step), replay, replay_lib.host_rng(seed, step))

        prefetcher = replay_lib.Prefetcher(draw, first)
        self.closers.append(prefetcher.close)

        def feed(step: int, length: int) -> dict:
            batches = [prefetcher.get(s) for s in range(step, step + length)]
            return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *batches)

        return feed

    # ------------------------------------------------------------------------- online ----
    def online(self, run: RunState) -> RunState:
        cfg, agent = self.cfg, self.agent
        step = int(run.counters["step"])
        runner = EpisodeRunner(cfg, run.counters)
        self.closers.append(runner.close)
        runner.replay_episode(run.replay)
        self._start_logger(step)
        chunk = agent.env_steps_per_chunk
        collector = Collector(self.programs, self.spec, cfg.seed)
        clock = Clock(step)
        while step < cfg.train.steps:
            try:
                rows = collector.collect(runner, run.agent, step, chunk)
                # The write consumes run.replay (its buffer is donated), so Ctrl-C waits for the
                # chunk to finish and for `run` to hold its result.
                with InterruptLatch() as latch:
                    run, metrics = self._online_updates(run, runner, rows, step + chunk)
                step += chunk
                if crossed(step, chunk, cfg.train.log_every):
                    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    metrics.update(runner.pop_finished())
                    metrics.update(clock.rate(step, "env_steps_per_second"))
                    self.logger.scalars(step, metrics)
                    check_metrics(step, metrics, self.logdir / CHECKPOINT_DIR)
                self._save_snapshot(run, step, chunk)
                self._after_chunk(run, step, chunk)
            except KeyboardInterrupt:
                # The episode in progress is replayed from the checkpoint's replay on resume.
                self._save_on_interrupt(run)
                raise
            if latch.pending:
                self._save_on_interrupt(run)
                raise KeyboardInterrupt
        return run

    def _online_updates(self, run: RunState, runner, rows, step: int) -> tuple[RunState, dict]:
        """Write the collected `rows` into the replay, then one chunk of updates (none while the
        replay warms up); `step` counts the environment steps after this chunk."""
        agent = self.agent
        replay = self.programs.add(run.replay, rows)
        state, metrics, updates = run.agent, {}, int(run.counters["updates"])
        phase = agent.phase(step)
        if phase != WARMUP:
            program = self.programs.chunk(phase, agent.updates_per_chunk)
            state, metrics = program(state, replay, run.rng, updates)
            updates += agent.updates_per_chunk
        jax.block_until_ready(state)
        counters = {"step": np.int64(step), "updates": np.int64(updates), **runner.counters()}
        return RunState(state, replay, _typed(counters), run.rng), metrics

    def _save_snapshot(self, run: RunState, step: int, chunk: int) -> None:
        every = self.cfg[self.cfg.method].get("snapshot_every", 0)
        params = self.agent.snapshot_params(run.agent)
        if every and params is not None and crossed(step, chunk, every):
            save_snapshot(self.logdir, step, jax.device_get(params))

    # ------------------------------------------------------------------------- shared ----
    def _after_chunk(self, run: RunState, step: int, length: int) -> None:
        """Periodic evaluation (with video when due) and checkpoint, then the progress display."""
        t, e = self.cfg.train, self.cfg.eval
        evaluate_now = crossed(step, length, t.eval_every) and step < t.steps
        save_now = crossed(step, length, t.checkpoint_every) or step == t.steps
        if evaluate_now or save_now:
            check_state(step, run.agent, self.logdir / CHECKPOINT_DIR)
        if evaluate_now:
            if self.agent.has_policy:
                record = crossed(step, length, e.video_every)
                self.evaluate_and_log(run, step, e.episodes, record)
            self.report_and_log(run, step)
        if save_now:
            checkpoint.save(self.logdir / CHECKPOINT_DIR, step, run, t.keep_checkpoints)
        self.logger.advance(step)

    def _save_on_interrupt(self, run: RunState) -> None:
        """Ctrl-C: keep the work of every finished chunk, so the rerun resumes from here."""
        step = int(run.counters["step"])
        check_state(step, run.agent, self.logdir / CHECKPOINT_DIR)
        checkpoint.save(self.logdir / CHECKPOINT_DIR, step, run, self.cfg.train.keep_checkpoints)
        self.logger.message(f"interrupted at step {step}; rerun the same command to resume")

    def evaluate_and_log(self, run: RunState, step: int, episodes: int, record: bool) -> dict:
        """Evaluate the agent's deterministic policy; log the metrics (and video when `record`)."""
        cfg = self.cfg
        act = policy_fn(self.programs, run.agent)
        metrics, frames = evaluate(
            act,
            config_task(cfg),
            episodes,
            cfg.seed,
            record=record,
            frame_size=cfg.eval.video_size,
        )
        self.logger.scalars(step, metrics)
        if record:
            self.logger.video(step, frames)
        return metrics

    def report_and_log(self, run: RunState, step: int) -> dict:
        """The agent's own report (a world model's open-loop predictions), logged."""
        key = jax.random.fold_in(jax.random.fold_in(run.rng, REPORT_SALT), step)
        scalars, videos = self.agent.report(run.agent, self.replay, key)
        scalars = {k: float(v) for k, v in scalars.items()}
        if scalars:
            self.logger.scalars(step, scalars)
        for name, frames in videos.items():
            self.logger.video(step, np.asarray(frames), name=name)
        return scalars

    def final_evaluation(self, run: RunState) -> dict:
        """The final evaluation, logged and written to LOGDIR/result.json."""
        cfg, step = self.cfg, int(run.counters["step"])
        if not self.agent.has_policy:
            result = {"step": step, **self.report_and_log(run, step)}
            rundir.write_json_atomic(self.logdir / RESULT_FILE, result)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if k != "step")
            self.logger.message(f"final report: {shown}")
            return result
        # A pixel task's frames are its observations, so recording them costs nothing.
        record = bool(cfg.eval.video_every) or bool(image_fields(self.spec))
        metrics = self.evaluate_and_log(run, step, cfg.eval.final_episodes, record)
        metrics.update(self.report_and_log(run, step))
        result = {"step": step, "episodes": cfg.eval.final_episodes, **metrics}
        rundir.write_json_atomic(self.logdir / RESULT_FILE, result)
        self.logger.message(
            f"final evaluation ({cfg.eval.final_episodes} episodes): "
            f"return {metrics['eval/return']:.1f} +- {metrics['eval/return_std']:.1f}, "
            f"normalized score {metrics['eval/normalized_score']:.1f}"
        )
        return result


class Collector:
    """Acting in the training simulator: uniform random actions in the WARMUP phase, else the
    agent's exploring policy; the key of env step t is fold_in(fold_in(PRNGKey(seed), salt), t)."""

    def __init__(self, programs: Programs, spec, seed: int) -> None:
        self.programs, self.spec = programs, spec
        root = jax.random.fold_in(jax.random.PRNGKey(seed), EXPLORE_SALT)
        self.key = jax.jit(lambda t: jax.random.fold_in(root, t))
        self.random_action = jax.jit(
            lambda t: jax.random.uniform(
                jax.random.fold_in(root, t), (spec.act_dim,), minval=-1.0, maxval=1.0
            )
        )

    def collect(self, runner: EpisodeRunner, state, step: int, count: int) -> dict:
        """`count` environment steps from env step `step`, as host rows in the replay layout."""
        agent = self.programs.agent
        rows = replay_lib.host_rows(self.spec, count)
        for i in range(count):
            t = step + i
            if agent.phase(t) == WARMUP:
                action = self.random_action(t)
            else:
                obs = {k: v[None] for k, v in runner.obs.items()}
                action = self.programs.policy(state, None, obs, EXPLORE, self.key(t))[1][0]
            runner.step(np.asarray(action), rows, i)
        return rows


def _typed(counters: dict) -> dict:
    types = {k: type(v) for k, v in new_counters().items()}
    return {k: types[k](v) for k, v in counters.items()}


def chunk_length(cfg: Config, agent: Agent, step: int, phase: str) -> int:
    """updates_per_call steps from `step`, cut where the phase or the run ends."""
    length = min(cfg.train.updates_per_call, cfg.train.steps - step)
    for i in range(1, length):
        if agent.phase(step + i) != phase:
            return i
    return length


def crossed(step: int, length: int, every: int) -> bool:
    """True when the chunk (step - length, step] reached a multiple of `every` (0: never)."""
    return bool(every) and step // every > (step - length) // every


class Clock:
    """Rates between two logged steps."""

    def __init__(self, step: int) -> None:
        self.time, self.step = time.perf_counter(), step

    def rate(self, step: int, name: str) -> dict:
        now = time.perf_counter()
        value = (step - self.step) / max(now - self.time, 1e-9)
        self.time, self.step = now, step
        return {f"train/{name}": value}


def policy_fn(programs: Programs, state) -> Any:
    """obs [B, ...] (a flat vector batch or a dict of fields) -> deterministic actions.

    One function per evaluation: a recurrent policy's carry starts empty and follows the
    batch from call to call (the batch's episodes start together)."""

    key = jax.random.PRNGKey(EVAL_SEED)
    carry = [None]  # a recurrent policy's memory: episodes evaluated together start together

    def act(obs):
        obs = obs if isinstance(obs, dict) else {"state": np.asarray(obs, np.float32)}
        carry[0], action = programs.policy(state, carry[0], obs, EVAL, key)
        return np.asarray(action)

    return act


def save_snapshot(logdir: Path, step: int, params: dict) -> Path:
    """Write the policy's parameters to LOGDIR/snapshots/actor_<step>.npz (atomically)."""
    folder = logdir / rundir.SNAPSHOT_DIR
    folder.mkdir(exist_ok=True)
    flat = {
        f"{module}/{name}": np.asarray(value)
        for module, leaves in params.items()
        for name, value in leaves.items()
    }
    path = folder / f"actor_{step:08d}.npz"
    tmp = folder / f".tmp_actor_{step:08d}.npz"
    np.savez(tmp, **flat)
    tmp.replace(path)
    return path


# -------------------------------------------------------------------------- evaluation ----
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
    cfg = agent.cfg
    count = episodes or cfg.eval.final_episodes
    act = policy_fn(Programs(agent), run.agent)
    metrics, _ = evaluate(act, config_task(cfg), count, cfg.seed)
    return {"step": int(run.counters["step"]), "episodes": count, **metrics}
