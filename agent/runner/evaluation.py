"""Policy evaluation in the real simulator: episodes run in lockstep, one batched policy call per
step, with the D4RL normalised score and an optional recording of the first episode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from agent.programs import Programs
from agent.protocol import EVAL
from envs import TaskSpec

EVAL_SEED_OFFSET = 10_000  # keeps evaluation resets apart from data-collection seeds
EVAL_SEED = 0  # evaluation policies are deterministic; their key is never used


def policy_fn(programs: Programs, state: Any) -> Callable[[Any], np.ndarray]:
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


def evaluate(
    act: Callable[[np.ndarray], np.ndarray],
    task: TaskSpec,
    episodes: int,
    seed: int,
    record: bool = False,
    frame_size: int = 64,
) -> tuple[dict[str, float], np.ndarray]:
    """Mean return and normalised score of `act` over `episodes` episodes.

    Environment i is reset with seed EVAL_SEED_OFFSET + 100 * seed + i, so an evaluation is
    reproducible and never touches the training RNG. Returns (metrics, frames of episode 0).
    """
    environments = [task.make(render=record and i == 0) for i in range(episodes)]
    obs = _stack(
        [env.reset(seed=EVAL_SEED_OFFSET + 100 * seed + i)[0] for i, env in enumerate(environments)]
    )
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, np.int64)
    active = np.ones(episodes, bool)
    frames = [_frame(environments[0], frame_size)] if record else []
    while active.any():
        actions = act(obs)
        for i in np.flatnonzero(active):
            next_obs, reward, terminated, truncated, _ = environments[i].step(actions[i])
            _assign(obs, i, next_obs)
            returns[i] += reward
            lengths[i] += 1
            if record and i == 0:
                frames.append(_frame(environments[0], frame_size))
            if terminated or truncated:
                active[i] = False
    for env in environments:
        env.close()
    scores = np.array([task.normalized_score(r) for r in returns])
    metrics = {
        "eval/return": float(returns.mean()),
        "eval/return_std": float(returns.std()),
        "eval/normalized_score": float(scores.mean()),
        "eval/normalized_score_std": float(scores.std()),
        "eval/episode_length": float(lengths.mean()),
    }
    video = np.stack(frames) if frames else np.zeros((0, frame_size, frame_size, 3), np.uint8)
    return metrics, video


def _stack(observations: list) -> np.ndarray | dict[str, np.ndarray]:
    """One batch of the environments' observations: float32 [B, d] for flat states, a dict of
    stacked fields (e.g. uint8 frames) for dict observations."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations).astype(np.float32)


def _assign(batch: np.ndarray | dict, i: int, obs) -> None:
    """batch[i] = obs, field by field for dict observations."""
    if isinstance(batch, dict):
        for k, v in obs.items():
            batch[k][i] = v
    else:
        batch[i] = obs


def _frame(env, size: int) -> np.ndarray:
    frame = np.asarray(env.render(), dtype=np.uint8)
    if frame.shape[0] != size or frame.shape[1] != size:
        from PIL import Image

        frame = np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
    return frame
