"""The online loop: act in the simulator, store, learn; one run is `train_online(cfg, logdir)`.

Env steps are the run's clock: `train.steps`, `log_every`, `eval_every`, `checkpoint_every` and
`eval.video_every` count environment steps and must be multiples of the agent's chunk
(`gem.train_every`). Every chunk of environment steps is handed to `agent.observe` in one call.

Exact resume. The checkpoint holds the agent state, whose replay holds every transition of the
episode in progress, plus the loop counters (`loop_state`). Training episodes are reset with
seed TRAIN_SEED_OFFSET + 100,000 * seed + episode index and the behaviour actions are functions
of (seed, env step, parameters), so on resume the loop resets the episode in progress with its
seed and replays its stored actions: the simulator is back in the exact state it had (MuJoCo
and dm_control are deterministic), which is checked against the stored last observation.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import envs
from agent.config import Config, ConfigError
from agent.logger import Logger
from agent.methods import make_agent
from agent.replay import row_spec
from agent.train import after_chunk, final_evaluation, prepare_logdir, resume, save_on_interrupt

TRAIN_SEED_OFFSET = 1_000_000  # training resets; evaluation uses 10,000 + 100 * seed + i
SNAPSHOT_DIR = "snapshots"


def loop_state(
    env_steps: int = 0, episode: int = 0, episode_steps: int = 0, episode_return: float = 0.0
) -> dict:
    """The loop counters (kept in the agent state, so checkpointed); no arguments: a new run."""
    return {
        "env_steps": jnp.int32(env_steps),
        "episode": jnp.int32(episode),
        "episode_steps": jnp.int32(episode_steps),
        "episode_return": jnp.float32(episode_return),
    }


def check_online_schedule(cfg: Config, chunk: int, max_episode_steps: int) -> None:
    """Every interval must be a whole number of chunks; the replay must hold a whole episode."""
    t = cfg.train
    intervals = {
        f"train.{k}": t[k] for k in ("steps", "log_every", "eval_every", "checkpoint_every")
    }
    intervals["eval.video_every"] = cfg.eval.video_every
    intervals[f"{cfg.method}.snapshot_every"] = cfg[cfg.method].snapshot_every
    for key, value in intervals.items():
        if value < 0 or value % chunk:
            raise ConfigError(
                f"{key}={value} must be a non-negative multiple of the environment chunk "
                f"{cfg.method}.train_every={chunk}"
            )
    if t.checkpoint_every <= 0 or t.log_every <= 0:
        raise ConfigError("train.checkpoint_every and train.log_every must be positive")
    capacity = cfg[cfg.method].capacity
    if capacity < max_episode_steps:
        raise ConfigError(
            f"{cfg.method}.capacity={capacity} must hold a whole episode "
            f"({max_episode_steps} steps): resuming replays the episode in progress from it"
        )


def reset_seed(seed: int, episode: int) -> int:
    return TRAIN_SEED_OFFSET + 100_000 * seed + episode


class EpisodeRunner:
    """The training simulator and the counters of the episode in progress."""

    def __init__(self, cfg: Config, loop: dict) -> None:
        self.seed = cfg.seed
        self.env = envs.make_env(cfg.task)
        self.episode = int(loop["episode"])
        self.steps = int(loop["episode_steps"])
        self.ret = float(loop["episode_return"])
        self.finished: list[tuple[float, int]] = []  # (return, length) since the last log
        self.obs = self._reset()

    def _reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=reset_seed(self.seed, self.episode))
        return np.asarray(obs, np.float32)

    def replay_episode(self, replay) -> None:
        """Bring the simulator back to the end of the stored episode in progress."""
        if not self.steps:
            return
        data = jax.device_get(replay.data)
        rows = (int(replay.cursor) - self.steps + np.arange(self.steps)) % replay.capacity
        for i in rows:
            self.obs, *_ = self.env.step(data["actions"][i])
        self.obs = np.asarray(self.obs, np.float32)
        if not np.array_equal(self.obs, data["next_observations"][rows[-1]]):
            raise RuntimeError(
                "resume: replaying the stored episode did not reproduce its last observation "
                "(is the simulator deterministic?)"
            )

    def step(self, action: np.ndarray, rows: dict, i: int) -> None:
        """One environment step, written into row i of the chunk."""
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        next_obs = np.asarray(next_obs, np.float32)
        rows["observations"][i] = self.obs
        rows["actions"][i] = action
        rows["rewards"][i] = reward
        rows["next_observations"][i] = next_obs
        rows["masks"][i] = 0.0 if terminated else 1.0  # truncation is not a terminal
        rows["timeouts"][i] = float(truncated and not terminated)
        rows["episode_ends"][i] = float(terminated or truncated)
        self.steps += 1
        self.ret += float(reward)
        self.obs = next_obs
        if terminated or truncated:
            self.finished.append((self.ret, self.steps))
            self.episode, self.steps, self.ret = self.episode + 1, 0, 0.0
            self.obs = self._reset()

    def loop_state(self, env_steps: int) -> dict:
        return loop_state(env_steps, self.episode, self.steps, self.ret)

    def pop_finished(self) -> dict:
        if not self.finished:
            return {}
        returns, lengths = zip(*self.finished, strict=True)
        self.finished = []
        return {
            "train/episode_return": float(np.mean(returns)),
            "train/episode_length": float(np.mean(lengths)),
            "train/episodes": float(self.episode),
        }


def empty_rows(count: int, obs_dim: int, act_dim: int) -> dict:
    """Host arrays for `count` transitions in the replay's row layout."""
    spec = row_spec(obs_dim, act_dim)
    return {k: np.zeros((count, *shape), dtype) for k, (shape, dtype) in spec.items()}


def save_snapshot(logdir: Path, step: int, params: dict) -> Path:
    """Write the actor's parameters to LOGDIR/snapshots/actor_<step>.npz (atomically)."""
    folder = logdir / SNAPSHOT_DIR
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


def train_online(cfg: Config, logdir: Path, quiet: bool = False) -> dict:
    """Run `cfg.method` online on `cfg.task` for train.steps environment steps."""
    spec = envs.get_task(cfg.task)
    section = cfg[cfg.method]
    check_online_schedule(cfg, section.train_every, spec.max_episode_steps)
    logdir = Path(logdir)
    prepare_logdir(cfg, logdir)
    agent = make_agent(cfg, spec.obs_dim, spec.act_dim, None)
    step, state, result = resume(agent, cfg, logdir)
    if result is not None:
        return result
    total = cfg.train.steps
    runner = EpisodeRunner(cfg, jax.device_get(state.loop))
    runner.replay_episode(state.replay)
    logger = Logger(logdir, total, initial_step=step, quiet=quiet)
    try:
        state = _loop(cfg, spec, agent, state, runner, step, logger, logdir)
        return final_evaluation(cfg, agent, state, logger, logdir, total)
    finally:
        runner.env.close()
        logger.close()


def _loop(cfg, spec, agent, state, runner, step, logger, logdir):
    t, section = cfg.train, cfg[cfg.method]
    chunk = section.train_every
    last_time, last_step = time.perf_counter(), step
    while step < t.steps:
        rows = empty_rows(chunk, spec.obs_dim, spec.act_dim)
        try:
            for i in range(chunk):
                runner.step(agent.explore(state, runner.obs, step + i), rows, i)
            learn = step + chunk >= section.learning_starts
            new_state, metrics = agent.observe(state, rows, learn)
            new_state = new_state._replace(loop=runner.loop_state(step + chunk))
            jax.block_until_ready(new_state)
        except KeyboardInterrupt:
            # The episode in progress is replayed from the checkpoint's replay on resume.
            save_on_interrupt(logdir, step, state, cfg, logger)
            raise
        state = new_state
        step += chunk
        if step % t.log_every == 0:
            now = time.perf_counter()
            metrics = {k: float(v) for k, v in metrics.items()}
            metrics.update(runner.pop_finished())
            metrics["train/env_steps_per_second"] = (step - last_step) / (now - last_time)
            logger.scalars(step, metrics)
            last_time, last_step = now, step
        if section.snapshot_every and step % section.snapshot_every == 0:
            save_snapshot(logdir, step, jax.device_get(state.actor_params))
        after_chunk(cfg, agent, state, logger, logdir, step)
    return state
