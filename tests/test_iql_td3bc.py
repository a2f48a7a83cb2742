"""IQL's and TD3+BC's losses against slow references (loops, brute-force formulas), and their
presets' debug runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent.iql import losses as iql
from agent.losses import twin_critic_loss
from agent.td3bc import losses as td3bc

RNG = np.random.default_rng(0)
B, K, A = 16, 2, 3


def _loop_expectile(u, tau):
    total = 0.0
    for x in u:
        total += (tau if x >= 0 else 1.0 - tau) * x * x
    return total / len(u)


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9])
def test_expectile_loss_matches_a_loop(tau):
    u = RNG.normal(size=B)
    np.testing.assert_allclose(iql.expectile_loss(jnp.asarray(u), tau), _loop_expectile(u, tau),
                               rtol=1e-5)  # fmt: skip


def test_the_value_regresses_onto_the_minimum_of_the_target_critics_upper_expectile():
    q, v = RNG.normal(size=(B, K)), RNG.normal(size=B)
    want = _loop_expectile([min(q[b]) - v[b] for b in range(B)], 0.7)
    np.testing.assert_allclose(iql.value_loss(jnp.asarray(q), jnp.asarray(v), 0.7), want, rtol=1e-5)
    # The minimiser over a constant V is the 0.7-expectile: above the mean of the targets.
    targets = jnp.asarray(RNG.normal(size=4096))
    grid = jnp.linspace(-1, 1, 2001)
    losses = jax.vmap(lambda c: iql.expectile_loss(targets - c, 0.7))(grid)
    best = float(grid[jnp.argmin(losses)])
    assert float(jnp.mean(targets)) + 0.2 < best < float(jnp.mean(targets)) + 0.5


def test_critic_targets_and_loss_match_a_loop():
    r, m, next_v = RNG.normal(size=B), RNG.integers(0, 2, B).astype(float), RNG.normal(size=B)
    q = RNG.normal(size=(B, K))
    y = iql.critic_targets(jnp.asarray(r), jnp.asarray(m), jnp.asarray(next_v), 0.99)
    want_y = [r[b] + 0.99 * m[b] * next_v[b] for b in range(B)]
    np.testing.assert_allclose(y, want_y, rtol=1e-5)
    want = sum(sum((q[b, k] - want_y[b]) ** 2 for b in range(B)) / B for k in range(K))
    np.testing.assert_allclose(twin_critic_loss(jnp.asarray(q), y), want, rtol=1e-5)


def test_awr_weights_are_clipped_exponentiated_advantages_and_constant():
    q, v = RNG.normal(size=(B, K)) * 3, RNG.normal(size=B)
    w = iql.awr_weights(jnp.asarray(q), jnp.asarray(v), 3.0, 20.0)
    want = [min(np.exp(3.0 * (min(q[b]) - v[b])), 20.0) for b in range(B)]
    np.testing.assert_allclose(w, want, rtol=1e-5)
    assert np.any(np.asarray(w) == 20.0) and np.any(np.asarray(w) < 20.0)
    grad = jax.grad(lambda v: jnp.sum(iql.awr_weights(jnp.asarray(q), v, 3.0, 20.0)))(
        jnp.asarray(v)
    )
    np.testing.assert_array_equal(grad, 0.0)


def test_actor_loss_is_the_weighted_negative_log_likelihood():
    w, logp = RNG.uniform(0, 5, B), RNG.normal(size=B)
    want = -sum(w[b] * logp[b] for b in range(B)) / B
    np.testing.assert_allclose(iql.actor_loss(jnp.asarray(w), jnp.asarray(logp)), want, rtol=1e-5)


def test_td3bc_actor_loss_and_its_gradient_match_the_formula():
    q1, pi, a = RNG.normal(size=B) * 10, RNG.uniform(-1, 1, (B, A)), RNG.uniform(-1, 1, (B, A))
    loss, lam = td3bc.actor_loss(jnp.asarray(q1), jnp.asarray(pi), jnp.asarray(a), 2.5)
    want_lam = 2.5 / (sum(abs(x) for x in q1) / B)
    bc = sum((pi[b, i] - a[b, i]) ** 2 for b in range(B) for i in range(A)) / (B * A)
    np.testing.assert_allclose(lam, want_lam, rtol=1e-5)
    np.testing.assert_allclose(loss, -want_lam * q1.mean() + bc, rtol=1e-5)
    # lambda is a constant: d loss / d Q_1 = -lambda / B exactly (no term through |Q|).
    g_q = jax.grad(lambda q: td3bc.actor_loss(q, jnp.asarray(pi), jnp.asarray(a), 2.5)[0])(
        jnp.asarray(q1)
    )
    np.testing.assert_allclose(g_q, np.full(B, -want_lam / B), rtol=1e-5)
    g_pi = jax.grad(lambda p: td3bc.actor_loss(jnp.asarray(q1), p, jnp.asarray(a), 2.5)[0])(
        jnp.asarray(pi)
    )
    np.testing.assert_allclose(g_pi, 2 * (pi - a) / (B * A), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["iql_hopper", "td3bc_hopper"])
def test_preset_debug_runs_train_and_report_a_score(preset, tmp_path, data_dir):
    from agent.config import load_config
    from agent.runner.loop import train

    cfg = load_config([preset, "debug"], [f"dataset.dir={data_dir}"])
    result = train(cfg, tmp_path / "run", quiet=True)
    assert np.isfinite(result["eval/normalized_score"])
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any("train/critic_loss" in line for line in metrics)
