"""The critic check's Monte-Carlo returns and comparison scalars against loops."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from agent.leq import critic_check
from agent.returns import discounted_returns_to_go


def test_discounted_returns_to_go_match_a_loop_and_stop_at_every_trajectory_end():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=50).astype(np.float32)
    ends = np.zeros(50, np.float32)
    ends[[9, 23, 24, 49]] = 1.0  # a one-row trajectory included
    want, following = np.zeros(50), 0.0
    for i in reversed(range(50)):
        following = rewards[i] + 0.9 * (1.0 - ends[i]) * following
        want[i] = following
    got = discounted_returns_to_go(jnp.asarray(rewards), jnp.asarray(ends), 0.9)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[24] == rewards[24]  # a trajectory end sees nothing after it


def test_comparison_scalars_match_numpy():
    rng = np.random.default_rng(1)
    g = rng.normal(size=200)
    q = 0.5 * g + rng.normal(size=200) * 0.3 + 1.0
    out = critic_check.critic_against_returns(jnp.asarray(q), jnp.asarray(g))
    np.testing.assert_allclose(out["critic/q_minus_mc_return"], np.mean(q - g), rtol=1e-5)
    np.testing.assert_allclose(out["critic/abs_error_to_mc_return"], np.mean(abs(q - g)), rtol=1e-5)
    np.testing.assert_allclose(
        out["critic/correlation_with_mc_return"], np.corrcoef(q, g)[0, 1], rtol=1e-4
    )
