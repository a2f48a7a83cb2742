"""One training run as a plain function of its config: `train(cfg, logdir) -> result`.

One loop serves offline and online methods, one seed or several seeds vmapped in one program
(agent/runner/seeds.py: the compiled programs carry the seed axis, the loop logs, evaluates and
reports every seed as it does one). The runner owns the step counter, the replay, the data
source (a dataset, or a simulator it steps), evaluation, logging and the checkpoint layout
(the RunState of agent/runner/build.py).

What `train.steps` counts: gradient steps for offline methods (pre-training phases included);
environment steps for online methods, whose `train.*` intervals are environment steps too.

A run resumes from the newest intact checkpoint in `logdir`. Every random draw is a function of
(rng, purpose, counter) (`agent/programs.py`), so a resumed run draws exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from agent import checkpoint
from agent import replay as replay_lib
from agent.config import Config
from agent.encoders import image_fields
from agent.methods import agent_class
from agent.programs import Programs
from agent.protocol import WARMUP, Agent, Spec
from agent.runner import rundir
from agent.runner.build import (
    RunState,
    build_checked,
    place_run,
    programs_for,
    restore,
    shardings,
    typed_counters,
)
from agent.runner.collector import Collector
from agent.runner.divergence import check_metrics, check_state
from agent.runner.evaluation import evaluate, policy_fn
from agent.runner.interrupts import InterruptLatch
from agent.runner.jax_setup import configure_jax
from agent.runner.progress import EVAL_SECONDS_PER_STEP, PhaseEta
from agent.runner.run_lock import run_lock
from agent.runner.run_logs import RunLogs
from agent.runner.rundir import CHECKPOINT_DIR, RESULT_FILE, WORLD_MODEL_DIR
from agent.runner.schedule import (
    chunk_length,
    crossed,
    evaluations_left,
    steps_per_phase,
)
from agent.runner.seeds import (
    aggregate,
    check_seeds,
    draws_on_host,
    seed_dir,
    seed_list,
    seed_slice,
    vmapped,
)
from agent.runner.snapshots import save_snapshot
from agent.runner.sources import EpisodeRunner, config_task
from agent.runner.world_models import save_world_model

REPORT_SALT = 0x5E7  # keys of Agent.report: fold_in(fold_in(rng, salt), step)
PHASE_DATA_SALT = 0xDA7A  # the key of Agent.phase_data: fold_in(rng, salt)


def train(cfg: Config, logdir: Path, quiet: bool = False) -> dict:
    """Train `cfg.method` on `cfg.task` (its `train.seeds` seeds as one vmapped program when
    there are several), evaluating and checkpointing as configured.

    Returns the final evaluation metrics (also written to LOGDIR/result.json). One process at a
    time trains into `logdir` (`run_lock`)."""
    configure_jax(cfg.jax)
    logdir = Path(logdir)
    with run_lock(logdir):
        return _train_locked(cfg, logdir, quiet)


def _train_locked(cfg: Config, logdir: Path, quiet: bool) -> dict:
    method = agent_class(cfg.method)
    online, seeds = method.online, vmapped(cfg)
    if seeds:
        check_seeds(cfg, online, vmaps_seeds=method.vmaps_seeds)
    placement = shardings(cfg)  # before the data: a device-count mismatch is a config error
    agent, replay, spec = build_checked(cfg, logdir, online)
    if seeds:
        check_seeds(cfg, online, draws_on_host(agent, replay))
    programs, replay = programs_for(cfg, agent, replay, placement)
    run = place_run(cfg, restore(cfg, agent, spec, logdir), placement)
    step = int(run.counters["step"])
    if step:
        print(f"resumed from step {step}", flush=True)
    result = rundir.read_result(logdir)
    if step >= cfg.train.steps and result is not None:
        print(f"run in {logdir} is already complete ({cfg.train.steps} steps)", flush=True)
        return result
    loop = Loop(cfg, agent, spec, logdir, quiet, programs, replay)
    try:
        run = loop.online(run) if agent.online else loop.offline(run)
        trained = agent.trained_world_model(run.agent) if not seeds else None
        if trained is not None:
            save_world_model(*trained, logdir / WORLD_MODEL_DIR)
            loop.logs.message(f"world model saved to {logdir / WORLD_MODEL_DIR}")
        return loop.final_evaluation(run)
    finally:
        loop.close()


class Loop:
    """The training loop's host side: chunks, logging, evaluation, reports, checkpoints."""

    def __init__(
        self,
        cfg: Config,
        agent: Agent,
        spec: Spec,
        logdir: Path,
        quiet: bool,
        programs: Programs,
        replay=None,
    ) -> None:
        self.cfg, self.agent, self.spec, self.logdir = cfg, agent, spec, logdir
        self.programs, self.replay, self.quiet = programs, replay, quiet
        self.stacked = programs.seeds
        self.seeds = seed_list(cfg) if self.stacked else [cfg.seed]
        self.logs: RunLogs | None = None
        self.eta: PhaseEta | None = None
        self.closers: list = []
        self._phase_cache: tuple[str | None, Any] = (None, None)

    def _start(self, step: int, chunk: int) -> None:
        """The logs from `step` on, and the ETA of the phases and evaluations ahead."""
        cfg, agent = self.cfg, self.agent
        seeds = self.seeds if self.stacked else None
        self.logs = RunLogs(self.logdir, cfg.train.steps, step, self.quiet, seeds)
        phases = steps_per_phase(agent, step, cfg.train.steps, chunk)
        episodes = 0
        if agent.has_policy:
            periodic = evaluations_left(cfg, step) - 1
            episodes = (periodic * cfg.eval.episodes + cfg.eval.final_episodes) * len(self.seeds)
        prior = self.spec.max_episode_steps * EVAL_SECONDS_PER_STEP
        self.eta = PhaseEta(phases, agent.phase_costs, episodes, prior)
        ahead = ", ".join(f"{phase} {steps}" for phase, steps in phases.items())
        unit = "environment steps" if agent.online else "steps"
        evaluations = f", then {episodes} evaluation episodes in all" if episodes else ""
        self.logs.message(f"training: {ahead} {unit}{evaluations}")

    def close(self) -> None:
        for close in self.closers:
            close()
        if self.logs is not None:
            self.logs.close()

    def _check_finite(self, step: int, per_seed: list[dict]) -> None:
        """Stop the run (`Diverged`) at a logged metric that is NaN or infinite."""
        for seed, metrics in zip(self.seeds, per_seed, strict=True):
            named = {f"seed {seed}: {k}" if self.stacked else k: v for k, v in metrics.items()}
            check_metrics(step, named, self.logdir / CHECKPOINT_DIR)

    def _per_seed(self, tree) -> list:
        """A stacked pytree as one tree per seed (one seed: [tree])."""
        if not self.stacked:
            return [tree]
        return [seed_slice(tree, i) for i in range(len(self.seeds))]

    # ------------------------------------------------------------------------ offline ----
    def offline(self, run: RunState) -> RunState:
        t = self.cfg.train
        step = int(run.counters["step"])
        self._start(step, t.updates_per_call)
        replay = self.replay
        feed = self._host_feed(replay, step) if isinstance(replay, replay_lib.HostReplay) else None
        clock = Clock(step)
        while step < t.steps:
            try:
                run, metrics, length = self._offline_updates(run, step, feed)
                step += length
                if crossed(step, length, t.log_every):
                    rate = clock.rate(step, "updates_per_second")
                    per_seed = self._per_seed(jax.device_get(metrics))
                    self.logs.metrics(step, per_seed, rate)
                    self._check_finite(step, per_seed)
                self._after_chunk(run, step, length)
            except KeyboardInterrupt:
                self._save_on_interrupt(run)  # the last finished chunk, wherever ^C landed
                raise
        return run

    def _offline_updates(self, run: RunState, step: int, feed) -> tuple[RunState, dict, int]:
        """One chunk of updates from `step`: the new run state, its metrics and its length."""
        start = time.perf_counter()
        phase = self.agent.phase(step)
        length = chunk_length(self.cfg, self.agent, step, phase)
        phase_data = self._phase_data(phase, run)
        if phase_data is not None:
            program, data = self.programs.chunk(phase, length), phase_data
        elif feed is None:
            program, data = self.programs.chunk(phase, length), self.replay
        else:
            program, data = self.programs.chunk(phase, length, fed=True), feed(step, length)
        state, metrics = program(run.agent, data, run.rng, step)
        jax.block_until_ready(state)
        self.eta.record(phase, length, time.perf_counter() - start)
        counters = {**run.counters, "step": np.int64(step + length)}
        return run._replace(agent=state, counters=counters), metrics, length

    def _phase_data(self, phase: str, run: RunState) -> Any:
        """Agent.phase_data of `phase`, built at the phase's first chunk in this process and
        kept while the phase, and the following phases with its `phase_data_key`, last
        (vmapped seeds read the replay)."""
        data_key = self.agent.phase_data_key(phase)
        if self._phase_cache[0] != data_key:
            data = None
            if not self.stacked:
                key = jax.random.fold_in(run.rng, PHASE_DATA_SALT)
                data = self.agent.phase_data(phase, run.agent, self.replay, key)
            self._phase_cache = (data_key, data)
        return self._phase_cache[1]

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
        chunk = agent.env_steps_per_chunk
        self._start(step, chunk)
        collector = Collector(self.programs, self.spec, cfg.seed)
        clock = Clock(step)
        while step < cfg.train.steps:
            try:
                start = time.perf_counter()
                rows = collector.collect(runner, run.agent, step, chunk)
                # The write consumes run.replay (its buffer is donated), so Ctrl-C waits for the
                # chunk to finish and for `run` to hold its result.
                with InterruptLatch() as latch:
                    run, metrics = self._online_updates(run, runner, rows, step + chunk)
                # filed under the phase of its updates, which cost most (and compile first)
                self.eta.record(agent.phase(step + chunk), chunk, time.perf_counter() - start)
                step += chunk
                if crossed(step, chunk, cfg.train.log_every):
                    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    metrics.update(runner.pop_finished())
                    self.logs.metrics(step, [metrics], clock.rate(step, "env_steps_per_second"))
                    self._check_finite(step, [metrics])
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
        return RunState(state, replay, typed_counters(counters), run.rng), metrics

    def _save_snapshot(self, run: RunState, step: int, chunk: int) -> None:
        every = self.agent.snapshot_every
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
        self.logs.advance(step, self.eta.text())

    def _save_on_interrupt(self, run: RunState) -> None:
        """Ctrl-C: keep the work of every finished chunk, so the rerun resumes from here."""
        step = int(run.counters["step"])
        check_state(step, run.agent, self.logdir / CHECKPOINT_DIR)
        checkpoint.save(self.logdir / CHECKPOINT_DIR, step, run, self.cfg.train.keep_checkpoints)
        self.logs.message(f"interrupted at step {step}; rerun the same command to resume")

    def evaluate_and_log(self, run: RunState, step: int, episodes: int, record: bool) -> list:
        """Evaluate each seed's deterministic policy on its own episodes; log the metrics (and
        the video of its first episode when `record`). -> one metrics dict per seed."""
        cfg, start, results = self.cfg, time.perf_counter(), []
        for i, (seed, state) in enumerate(zip(self.seeds, self._per_seed(run.agent), strict=True)):
            act = policy_fn(self.programs, state)
            metrics, frames = evaluate(
                act, config_task(cfg), episodes, seed, record=record, frame_size=cfg.eval.video_size
            )
            results.append(metrics)
            if record:
                self.logs.video(step, i, frames)
        self.logs.metrics(step, results)
        if self.eta is not None:
            self.eta.record_eval(episodes * len(self.seeds), time.perf_counter() - start)
        return results

    def report_and_log(self, run: RunState, step: int) -> list:
        """Each seed's own report (a world model's open-loop predictions), logged."""
        reports = []
        pairs = zip(self._per_seed(run.agent), self._per_seed(run.rng), strict=True)
        for i, (state, rng) in enumerate(pairs):
            key = jax.random.fold_in(jax.random.fold_in(rng, REPORT_SALT), step)
            scalars, videos = self.agent.report(state, self.replay, key)
            reports.append({k: float(v) for k, v in scalars.items()})
            for name, frames in videos.items():
                self.logs.video(step, i, np.asarray(frames), name=name)
        if reports[0]:
            self.logs.metrics(step, reports)
        return reports

    def final_evaluation(self, run: RunState) -> dict:
        """The final evaluation (or report), logged and written to LOGDIR/result.json (and to
        LOGDIR/seed<S>/result.json per seed, with the mean and std over seeds in LOGDIR's)."""
        cfg, step = self.cfg, int(run.counters["step"])
        head = {"step": step}
        if self.agent.has_policy:
            head["episodes"] = cfg.eval.final_episodes
            # A pixel task's frames are its observations, so recording them costs nothing.
            record = bool(cfg.eval.video_every) or bool(image_fields(self.spec))
            eta = self.eta.text() if self.eta is not None else None
            self.logs.message(
                f"final evaluation: {cfg.eval.final_episodes} episodes"
                + (f" per seed ({len(self.seeds)} seeds)" if self.stacked else "")
                + (f", eta {eta}" if eta else "")
            )
            per_seed = self.evaluate_and_log(run, step, cfg.eval.final_episodes, record)
        else:
            per_seed = [{} for _ in self.seeds]
        for metrics, report in zip(per_seed, self.report_and_log(run, step), strict=True):
            metrics.update(report)
        if self.stacked:
            for seed, metrics in zip(self.seeds, per_seed, strict=True):
                path = seed_dir(self.logdir, seed) / RESULT_FILE
                rundir.write_json_atomic(path, {**head, **metrics})
            result = {**head, "seeds": self.seeds, **aggregate(per_seed), "per_seed": per_seed}
        else:
            result = {**head, **per_seed[0]}
        rundir.write_json_atomic(self.logdir / RESULT_FILE, result)
        self.logs.message(self._final_line(result))
        return result

    def _final_line(self, result: dict) -> str:
        episodes = self.cfg.eval.final_episodes
        if not self.agent.has_policy:
            shown = {k: v for k, v in result.items() if isinstance(v, float)}
            return "final report: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
        if self.stacked:
            return (
                f"final evaluation of {len(self.seeds)} seeds ({episodes} episodes each): "
                f"normalized score {result['eval/normalized_score']:.1f} +- "
                f"{result['eval/normalized_score_seed_std']:.1f} over seeds"
            )
        return (
            f"final evaluation ({episodes} episodes): "
            f"return {result['eval/return']:.1f} +- {result['eval/return_std']:.1f}, "
            f"normalized score {result['eval/normalized_score']:.1f}"
        )


class Clock:
    """Rates between two logged steps."""

    def __init__(self, step: int) -> None:
        self.time, self.step = time.perf_counter(), step

    def rate(self, step: int, name: str) -> dict:
        now = time.perf_counter()
        value = (step - self.step) / max(now - self.time, 1e-9)
        self.time, self.step = now, step
        return {f"train/{name}": value}
