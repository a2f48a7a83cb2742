"""The dataset's posterior latents under a frozen world model, filtered once per episode.

In the LEQ phase the RSSM does not change, so filtering the replay windows again at every step
(LEQ_DV3's form) recomputes the same encoder and GRU work and starts every window from the
zero state, whose first latents have not seen enough frames to hold a velocity. Instead every
episode is filtered once from its first frame, o_0 .. o_n after a_0 .. a_{n-1}, and each frame
keeps its GRU state h and posterior logits; a transition row i of the dataset reads its frame
`frame[i]` and the next one, `frame[i] + 1`. A LEQ step then draws rows and posterior samples
z ~ q(z | h, o) from the cache, without touching a pixel.

Frames are laid out episode after episode (an episode of n rows holds n + 1 frames), so
frame[i] = i + (index of row i's episode).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agent.distributions import straight_through_sample
from agent.replay import trajectory_bounds
from agent.returns import discounted_returns_to_go
from agent.world_model.rssm import IMAGE, RssmLatent

EPISODES_PER_CALL = 16  # episodes filtered by one compiled call (padded to the longest)


class LatentCache(NamedTuple):
    h: jax.Array  # [frames, deter]
    logits: jax.Array  # [frames, stoch, classes] posterior logits
    frame: jax.Array  # [rows] int32: the frame of row i's observation (its next: frame + 1)
    actions: jax.Array  # [rows, act_dim]
    rewards: jax.Array  # [rows]
    masks: jax.Array  # [rows]
    returns: jax.Array  # [rows] the data's discounted return-to-go (`monte_carlo_returns`)


class CachedTransitions(NamedTuple):
    """Rows drawn from the cache: s_t, a_t, r_t, m_t and s_{t+1} as posterior samples."""

    start: RssmLatent  # [N]
    actions: jax.Array  # [N, A]
    rewards: jax.Array  # [N]
    masks: jax.Array  # [N]
    next: RssmLatent  # [N]
    returns: jax.Array  # [N] the data's Monte-Carlo returns from s_t


def frame_layout(episode_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame of each row [R], first row of each episode [E], rows per episode [E]) for the
    episode-after-episode layout of the module docstring."""
    starts, lengths = trajectory_bounds(episode_ends)
    episode_of_row = np.repeat(np.arange(len(starts)), lengths)
    frame = np.arange(len(episode_of_row)) + episode_of_row
    return frame.astype(np.int32), starts, lengths


def monte_carlo_returns(
    rewards: np.ndarray, masks: np.ndarray, episode_ends: np.ndarray, discount: float
) -> np.ndarray:
    """G_t = r_t + discount m_t G_{t+1} inside each trajectory (G = r at its last row): the
    return the data's own behaviour collected, what a critic of that behaviour would predict
    (an underestimate near a time limit, where the data stop). The shared recursion
    (`discounted_returns_to_go`), a terminal (m_t = 0) ending its trajectory."""
    ends = np.maximum(np.asarray(episode_ends, np.float32), 1.0 - np.asarray(masks, np.float32))
    returns = discounted_returns_to_go(
        jnp.asarray(rewards, jnp.float32), jnp.asarray(ends), discount
    )
    return np.asarray(returns)


def _episode_inputs(data: dict, starts: np.ndarray, lengths: np.ndarray, steps: int):
    """Frames [E, steps + 1, ...] and actions [E, steps, A] of the episodes, each padded after its
    end by repeating its last frame (and zero actions); the padding's latents are discarded."""
    offsets = np.arange(steps)[None, :]
    rows = starts[:, None] + np.minimum(offsets, lengths[:, None] - 1)
    last = starts + lengths - 1
    observed = np.asarray(data["observations"][IMAGE][rows.reshape(-1)])
    observed = observed.reshape(*rows.shape, *observed.shape[1:])
    final = np.asarray(data["next_observations"][IMAGE][last])[:, None]
    # frame k of an episode is o_k: row k's observation for k < n, the last row's next one at n
    at_end = offsets[..., None, None, None] >= lengths[:, None, None, None, None]
    frames = np.where(at_end, final, observed)
    frames = np.concatenate([frames, final], axis=1)
    actions = np.asarray(data["actions"][rows.reshape(-1)]).reshape(*rows.shape, -1)
    actions = np.where(offsets[..., None] < lengths[:, None, None], actions, 0.0)
    return frames, actions.astype(np.float32)


def build_latent_cache(world: Any, params: Any, data: dict, key: jax.Array) -> LatentCache:
    """Filter every episode of `data` (replay rows, NumPy or device arrays, in order) with the
    frozen `world` from its first frame; calls of EPISODES_PER_CALL episodes use the keys
    fold_in(key, call). The data's returns are discounted by the continue head's discount,
    1 - 1 / rssm.cont_horizon."""
    frame, starts, lengths = frame_layout(np.asarray(data["episode_ends"]))
    steps = int(lengths.max())
    filter_episodes = jax.jit(
        lambda p, images, actions, k: world.observe_sequence(p, images, actions, k)[:2]
    )
    h = np.zeros((len(frame) + len(starts), world.cfg.deter), np.float32)
    logits = np.zeros((len(h), world.cfg.stoch, world.cfg.classes), np.float32)
    for call, first in enumerate(range(0, len(starts), EPISODES_PER_CALL)):
        chosen = np.arange(first, first + EPISODES_PER_CALL) % len(starts)  # pad the last call
        images, actions = _episode_inputs(data, starts[chosen], lengths[chosen], steps)
        latents, post = filter_episodes(params, images, actions, jax.random.fold_in(key, call))
        for j, e in enumerate(chosen[: len(starts) - first]):
            count = lengths[e] + 1
            at = frame[starts[e]]
            h[at : at + count] = np.asarray(latents.h[j, :count])
            logits[at : at + count] = np.asarray(post[j, :count])
    rewards, masks = np.asarray(data["rewards"]), np.asarray(data["masks"])
    discount = 1.0 - 1.0 / world.cfg.cont_horizon
    returns = monte_carlo_returns(rewards, masks, np.asarray(data["episode_ends"]), discount)
    return LatentCache(
        jnp.asarray(h),
        jnp.asarray(logits),
        jnp.asarray(frame),
        jnp.asarray(np.asarray(data["actions"]), jnp.float32),
        jnp.asarray(rewards, jnp.float32),
        jnp.asarray(masks, jnp.float32),
        jnp.asarray(returns),
    )


def sample_transitions(cache: LatentCache, key: jax.Array, count: int) -> CachedTransitions:
    """`count` rows drawn uniformly, their latents z ~ q(z | h, o) drawn afresh. Jittable."""
    row_key, start_key, next_key = jax.random.split(key, 3)
    rows = jax.random.randint(row_key, (count,), 0, cache.frame.shape[0])
    frame = cache.frame[rows]

    def latent(at, k):
        return RssmLatent(cache.h[at], straight_through_sample(k, cache.logits[at]))

    return CachedTransitions(
        latent(frame, start_key),
        cache.actions[rows],
        cache.rewards[rows],
        cache.masks[rows],
        latent(frame + 1, next_key),
        cache.returns[rows],
    )
