"""Turn a raw dict (D4RL layout, see envs/datasets/d4rl_hdf5.py) into OfflineData.

The steps follow the official code (D4RL `qlearning_dataset`, LEQ's `D4RLDataset` and
IQL/LEQ reward normalisation):

1. `qlearning_transitions`: pair each step with its next observation. Without a stored
   `next_observations` key the next state is obs[i + 1], so steps with timeouts[i] = 1 (whose
   obs[i + 1] starts a new trajectory) and the very last step are dropped, exactly as D4RL does.
   With `next_observations` every step is kept.
2. `clip_actions`: LEQ clips actions to [-1 + 1e-5, 1 - 1e-5] (keeps atanh of a tanh policy finite).
3. `episode_ends`: LEQ's `done_float` rule, plus timeouts.
4. `reward_affine`: the affine reward map (scale, bias) of the paper's preprocessing.

Every function is pure: it returns new arrays and never modifies its inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from envs.datasets.offline_data import OfflineData

ACTION_CLIP_EPS = 1e-5
# Two consecutive transitions belong to the same trajectory when the next observation of the
# first equals the observation of the second within this L2 distance (LEQ's threshold).
CONTINUITY_TOL = 1e-6
# Scaled locomotion returns span exactly this much (IQL / LEQ).
RETURN_SPAN = 1000.0
REWARD_NORM_MODES = ("auto", "none")


def qlearning_transitions(raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Return (observations, actions, rewards, next_observations, terminals, timeouts) arrays.

    With `raw["next_observations"]` every step i becomes a transition (obs[i], act[i], rew[i],
    next_obs[i]). Without it, D4RL's `qlearning_dataset` rule applies: for i = 0..N-2 the next
    state is obs[i + 1], and steps with timeouts[i] = 1 are dropped (their obs[i + 1] belongs to
    the next trajectory); the last step is dropped too. Terminal steps are always kept.
    The returned terminals / timeouts are float32 0/1 arrays.
    """
    obs = np.asarray(raw["observations"], dtype=np.float32)
    act = np.asarray(raw["actions"], dtype=np.float32)
    rew = np.asarray(raw["rewards"], dtype=np.float32)
    term = np.asarray(raw["terminals"]).astype(np.float32)
    tout = np.asarray(raw["timeouts"]).astype(np.float32)
    if "next_observations" in raw:
        next_obs = np.asarray(raw["next_observations"], dtype=np.float32)
        keep = np.ones(len(obs), dtype=bool)
    else:
        next_obs = np.concatenate([obs[1:], obs[-1:]], axis=0)  # last row is dropped below
        keep = tout == 0
        keep[-1] = False
    return {
        "observations": obs[keep],
        "actions": act[keep],
        "rewards": rew[keep],
        "next_observations": next_obs[keep],
        "terminals": term[keep],
        "timeouts": tout[keep],
    }


def clip_actions(actions: np.ndarray, eps: float = ACTION_CLIP_EPS) -> np.ndarray:
    """Clip every action component to [-1 + eps, 1 - eps] (LEQ's dataset preprocessing)."""
    return np.clip(actions, -1.0 + eps, 1.0 - eps).astype(np.float32)


def episode_ends(
    observations: np.ndarray,
    next_observations: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    tol: float = CONTINUITY_TOL,
) -> np.ndarray:
    """Float32 0/1 array: 1 where transition i is the last of its trajectory.

    LEQ's `done_float` rule: ||obs[i + 1] - next_obs[i]|| > tol, or terminals[i] = 1. We also end a
    trajectory at timeouts[i] = 1 (a maze dataset can continue seamlessly through a timeout, but
    its segments are still separate trajectories). The last index is always an end.
    """
    n = len(terminals)
    ends = (np.asarray(terminals) > 0) | (np.asarray(timeouts) > 0)
    if n > 1:
        gap = np.linalg.norm(observations[1:] - next_observations[:-1], axis=-1)
        ends[:-1] |= gap > tol
    if n:
        ends[-1] = True
    return ends.astype(np.float32)


def trajectory_returns(rewards: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Undiscounted return of every trajectory, trajectories delimited by `ends` (1 = last step)."""
    if len(rewards) == 0:
        return np.zeros(0, dtype=np.float64)
    last = np.flatnonzero(np.asarray(ends) > 0)
    if last.size == 0 or last[-1] != len(rewards) - 1:
        last = np.append(last, len(rewards) - 1)
    starts = np.concatenate([[0], last[:-1] + 1])
    return np.add.reduceat(np.asarray(rewards, dtype=np.float64), starts)


def _field(data: Mapping[str, Any] | OfflineData, name: str) -> np.ndarray:
    """Read `name` from a mapping or from an object's attribute (OfflineData)."""
    return np.asarray(data[name] if isinstance(data, Mapping) else getattr(data, name))


def is_random_quality(quality: str) -> bool:
    """True for D4RL-style random datasets ("random", "hopper-random-v2", ...)."""
    return "random" in quality.lower().replace("_", "-").split("-")


def reward_affine(
    task_family: str,
    quality: str,
    data: Mapping[str, Any] | OfflineData,
    mode: str = "auto",
) -> tuple[float, float]:
    """The reward map (scale, bias) with r_used = scale * r_raw + bias.

    `data` provides raw `rewards` and `episode_ends` (a mapping or an OfflineData). With
    mode "none" the map is the identity. With mode "auto":
      * locomotion, non-random quality: scale = 1000 / (max - min) of the undiscounted trajectory
        returns, bias 0 (IQL / LEQ);
      * locomotion, random quality: identity (LEQ: the return spread is too small);
      * antmaze: scale 1, bias -1 (reward 0 at the goal, -1 elsewhere);
      * maze2d and dmc: identity.
    When all trajectory returns are equal the scale is undefined: identity, with a warning.
    """
    if mode not in REWARD_NORM_MODES:
        raise ValueError(f"reward_norm must be one of {REWARD_NORM_MODES}, got {mode!r}")
    if mode == "none":
        return 1.0, 0.0
    if task_family == "antmaze":
        return 1.0, -1.0
    if task_family != "locomotion" or is_random_quality(quality):
        return 1.0, 0.0
    returns = trajectory_returns(_field(data, "rewards"), _field(data, "episode_ends"))
    span = float(returns.max() - returns.min()) if returns.size else 0.0
    if span <= 1e-8:
        warnings.warn(
            f"reward_affine: all {returns.size} trajectory returns are equal; rewards unscaled",
            stacklevel=2,
        )
        return 1.0, 0.0
    return RETURN_SPAN / span, 0.0


def return_stats(rewards: np.ndarray, ends: np.ndarray) -> dict[str, float | int]:
    """Count, mean, std, min and max of the undiscounted trajectory returns (raw rewards)."""
    returns = trajectory_returns(rewards, ends)
    if returns.size == 0:
        return {"n_episodes": 0}
    return {
        "n_episodes": int(returns.size),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
    }


def to_offline_data(
    raw: Mapping[str, Any],
    task_family: str,
    quality: str,
    reward_norm: str = "auto",
    info: Mapping[str, Any] | None = None,
) -> OfflineData:
    """Apply steps 1-4 of the module docstring to a validated raw dict and build OfflineData.

    `info` is copied into OfflineData.info, which also receives the number of trajectories and
    the raw return statistics.
    """
    tr = qlearning_transitions(raw)
    ends = episode_ends(
        tr["observations"], tr["next_observations"], tr["terminals"], tr["timeouts"]
    )
    scale, bias = reward_affine(
        task_family, quality, {"rewards": tr["rewards"], "episode_ends": ends}, reward_norm
    )
    rewards = (scale * tr["rewards"].astype(np.float64) + bias).astype(np.float32)
    stats = return_stats(tr["rewards"], ends)
    return OfflineData(
        observations=tr["observations"],
        actions=clip_actions(tr["actions"]),
        rewards=rewards,
        next_observations=tr["next_observations"],
        terminals=tr["terminals"],
        timeouts=tr["timeouts"],
        episode_ends=ends,
        reward_scale=float(scale),
        reward_bias=float(bias),
        info={**(info or {}), **stats, "n_transitions": len(rewards)},
    )
