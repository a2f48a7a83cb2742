"""The shared maths (agent/losses.py, agent/returns.py, agent/networks.py,
agent/actor_critic.py, agent/optimizers.py) against slow references: Python loops, brute-force
closed forms, scipy."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from agent import actor_critic, losses, networks, returns
from agent.optimizers import apply_gradients

RNG = np.random.default_rng(0)

# One compiled program per call, not op by op (eager dispatch dominated these checks' time).
continue_lambda_returns = jax.jit(returns.continue_lambda_returns, static_argnums=(3, 4))


# ----------------------------------------------------------------------------- losses


def _loop_expectile_weight(u, tau):
    return [tau if x > 0 else 1.0 - tau for x in u]


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.7])
def test_expectile_weight_and_loss_match_a_loop(tau):
    u = np.r_[RNG.normal(size=32), 0.0]  # the tie u = 0 goes to 1 - tau
    weights = _loop_expectile_weight(u, tau)
    np.testing.assert_allclose(losses.expectile_weight(jnp.asarray(u), tau), weights, rtol=1e-6)
    want = [w * x * x for w, x in zip(weights, u, strict=True)]
    np.testing.assert_allclose(losses.expectile_loss(jnp.asarray(u), tau), want, rtol=1e-5)


def test_the_expectile_loss_is_minimised_by_the_expectile():
    targets = jnp.asarray(RNG.normal(size=4096))
    grid = jnp.linspace(-1, 1, 2001)

    @jax.jit  # one program for the three taus, not op by op
    def minimiser_and_mean(tau):
        total = jax.vmap(lambda c: jnp.mean(losses.expectile_loss(targets - c, tau)))
        return grid[jnp.argmin(total(grid))], jnp.mean(targets)

    for tau, lo, hi in ((0.7, 0.2, 0.5), (0.3, -0.5, -0.2), (0.5, -0.05, 0.05)):
        minimiser, mean = minimiser_and_mean(tau)
        best = float(minimiser) - float(mean)
        assert lo < best < hi, (tau, best)


def test_twin_critic_loss_and_clipped_double_q_targets_match_loops():
    b, k = 6, 3
    r, m, next_q = (
        RNG.normal(size=b),
        (RNG.uniform(size=b) > 0.3).astype(float),
        RNG.normal(size=(b, k)),
    )
    y = losses.clipped_double_q_targets(jnp.asarray(r), jnp.asarray(m), jnp.asarray(next_q), 0.9)
    np.testing.assert_allclose(y, [r[i] + 0.9 * m[i] * min(next_q[i]) for i in range(b)], rtol=1e-5)
    q = RNG.normal(size=(b, k))
    loop = sum(np.mean([(q[i, c] - float(y[i])) ** 2 for i in range(b)]) for c in range(k))
    assert float(losses.twin_critic_loss(jnp.asarray(q), y)) == pytest.approx(loop, rel=1e-5)


def test_smoothed_target_actions_are_clipped_noise():
    actions = jnp.asarray(RNG.uniform(-1, 1, size=(4096, 3)), jnp.float32)
    smooth = jax.jit(losses.smoothed_target_actions, static_argnums=(2, 3))  # not op by op
    smoothed = smooth(actions, jax.random.PRNGKey(0), 0.2, 0.5)
    noise = np.asarray(smoothed - actions)
    inside = np.abs(np.asarray(smoothed)) < 1.0
    assert np.all(np.abs(noise) <= 0.5 + 1e-6) and np.all(np.abs(np.asarray(smoothed)) <= 1.0)
    assert abs(np.std(noise[inside]) - 0.2) < 0.02  # N(0, 0.2^2), clipped at 0.5


def test_tanh_gaussian_log_prob_is_the_change_of_variables_density():
    """log pi(a) = log N(u) - sum log |d tanh(u)/du|, checked per dimension with scipy."""
    mean = jnp.asarray(RNG.normal(size=(64, 2)))
    log_std = jnp.asarray(RNG.uniform(-1, 0.5, size=(64, 2)))
    sample = jax.jit(losses.sample_tanh_gaussian)  # one program, not op by op
    action, log_prob = sample(mean, log_std, jax.random.PRNGKey(3))
    u = np.arctanh(np.clip(np.asarray(action, np.float64), -1 + 1e-7, 1 - 1e-7))
    density = stats.norm.logpdf(u, np.asarray(mean), np.exp(np.asarray(log_std)))
    jacobian = np.log(1.0 - np.tanh(u) ** 2)
    np.testing.assert_allclose(log_prob, (density - jacobian).sum(-1), rtol=1e-3, atol=1e-3)
    assert np.all(np.abs(np.asarray(action)) < 1.0)


def test_bc_loss_matches_a_loop():
    pred, target = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    loop = np.mean([sum((pred[b, i] - target[b, i]) ** 2 for i in range(3)) for b in range(5)])
    assert float(losses.bc_loss(jnp.asarray(pred), jnp.asarray(target))) == pytest.approx(loop)


def test_policy_step_weights():
    q = jnp.array([[0.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    ret = jnp.array([[1.0, 0.0], [0.0, -1.0]])  # ties go to 1 - tau
    omega = losses.policy_step_weights(ret, q, 0.1)
    np.testing.assert_allclose(omega, [[0.1, 0.9], [0.9, 0.9], [0.5, 0.5]], rtol=1e-6)


def test_dpg_surrogate_gradient_is_the_weighted_dpg():
    """grad_theta L_pi = - sum_t mean_b omega_t g_t . dpi(s_t)/dtheta (a loop over t and b)."""
    rng = np.random.default_rng(6)
    horizon, batch, obs_dim, act = 3, 5, 4, 2
    states = jnp.asarray(rng.normal(size=(horizon + 1, batch, obs_dim)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(horizon + 1, batch, act)), jnp.float32)
    omega = jnp.asarray(rng.choice([0.1, 0.9], size=(horizon + 1, batch)), jnp.float32)
    theta = {"w": jnp.asarray(rng.normal(size=(obs_dim, act)), jnp.float32), "b": jnp.ones(act)}
    policy = lambda p, s: jnp.tanh(s @ p["w"] + p["b"])

    # one compiled gradient each (not op by op); the loop below stays a loop over t and b
    grad = jax.jit(jax.grad(lambda p: losses.dpg_surrogate(policy(p, states), g, omega)))(theta)
    row_grad = jax.jit(jax.grad(lambda p, s, g_tb: jnp.dot(g_tb, policy(p, s))))
    states_np, g_np, omega_np = np.asarray(states), np.asarray(g), np.asarray(omega)
    want = jax.tree.map(lambda x: np.zeros_like(np.asarray(x)), theta)
    for t in range(horizon + 1):
        for b in range(batch):
            row = jax.tree.map(np.asarray, row_grad(theta, states_np[t, b], g_np[t, b]))
            want = jax.tree.map(lambda w, r, t=t, b=b: w - omega_np[t, b] * r / batch, want, row)
    for k in theta:
        np.testing.assert_allclose(grad[k], want[k], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- returns


def _loop_lambda_scan(rewards, a, b, q, lam):
    """y_t = a_t r_t + b_t G_{t+1} (b = the product b d of the scan), G_t = (Q_t + lam k_t y_t)
    / (1 + lam k_t), one row at a time."""
    horizon, rows = rewards.shape
    out = np.zeros((horizon, rows))
    for n in range(rows):
        g, k = q[horizon, n], 1.0
        for t in reversed(range(horizon)):
            y = a[t, n] * rewards[t, n] + b[t, n] * g
            g = (q[t, n] + lam * k * y) / (1 + lam * k)
            k = 1 + lam * k
            out[t, n] = g
    return out


def _closed_form_lambda(rewards, discounts, q, lam):
    """G_t = sum_n lam^n G^(n)_t / sum_n lam^n over n = 0..H-t, with the n-step return
    G^(n)_t = sum_{i<n} (prod_{k<i} d_{t+k}) r_{t+i} + (prod_{k<n} d_{t+k}) Q_{t+n}."""
    horizon, rows = rewards.shape
    out = np.zeros((horizon, rows))
    for n_row in range(rows):
        for t in range(horizon):
            num = den = 0.0
            for n in range(horizon - t + 1):
                ret, disc = 0.0, 1.0
                for i in range(n):
                    ret += disc * rewards[t + i, n_row]
                    disc *= discounts[t + i, n_row]
                num += lam**n * (ret + disc * q[t + n, n_row])
                den += lam**n
            out[t, n_row] = num / den
    return out


def test_lambda_return_scan_matches_a_loop():
    h, n = 5, 4
    r, a, b, d = (RNG.uniform(size=(h, n)) for _ in range(4))
    q = RNG.normal(size=(h + 1, n))
    got = returns.lambda_return_scan(*(jnp.asarray(x) for x in (r, a, b, d, q)), 0.9)
    np.testing.assert_allclose(got, _loop_lambda_scan(r, a, b * d, q, 0.9), rtol=1e-5, atol=1e-6)


def _state_form_brute(rewards, q, alive, gamma, lam):
    """G_t = sum_n lam^n G^(n)_t / sum_n lam^n, n = 0..H-t, with the n-step returns
    G^(n)_t = sum_{i<n} gamma^i m_{t+i} r_{t+i} + gamma^n m_{t+n} Q_{t+n}, G^(0)_t = Q_t."""
    horizon = rewards.shape[0]

    def n_step(t, n):
        if n == 0:
            return q[t]
        total = sum(gamma**i * alive[t + i] * rewards[t + i] for i in range(n))
        return total + gamma**n * alive[t + n] * q[t + n]

    out = np.zeros_like(rewards)
    for t in range(horizon):
        num = sum(lam**n * n_step(t, n) for n in range(horizon - t + 1))
        out[t] = num / sum(lam**n for n in range(horizon - t + 1))
    return out


@pytest.mark.parametrize("terminate", [False, True])
def test_state_form_matches_the_closed_form(terminate):
    h, n, gamma, lam = 7, 64, 0.97, 0.9
    rewards, q = RNG.normal(size=(h, n)), RNG.normal(size=(h + 1, n)) * 3.0
    dones = RNG.random((h, n)) < (0.3 if terminate else 0.0)
    alive = np.cumprod(np.r_[np.ones((1, n)), 1.0 - dones], axis=0)
    if terminate:
        assert 0 < alive[-1].sum() < n
    np.testing.assert_allclose(jax.jit(returns.alive_masks)(jnp.asarray(dones)), alive)
    lambda_returns = jax.jit(returns.lambda_returns, static_argnums=(3, 4))  # not op by op
    got = lambda_returns(*(jnp.asarray(x) for x in (rewards, q, alive)), gamma, lam)
    want = _state_form_brute(rewards, q, alive, gamma, lam)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_latent_form_per_step_matches_the_closed_form():
    h, n = 5, 4
    rewards, continues = RNG.normal(size=(h, n)), RNG.uniform(0.0, 1.0, size=(h, n))
    q = RNG.normal(size=(h + 1, n))
    got = continue_lambda_returns(
        jnp.asarray(rewards), jnp.asarray(continues), jnp.asarray(q), 0.95, "per_step"
    )
    np.testing.assert_allclose(got, _closed_form_lambda(rewards, continues, q, 0.95), rtol=1e-5)


def test_latent_form_cumulative_masks_against_a_loop():
    """§3.3(c) with alive masks M_t = c_1 ... c_t: y_t = M_t r_t+1 + M_t+1 G_t+1."""
    h, n, lam = 4, 3, 0.9
    rewards, continues = RNG.normal(size=(h, n)), RNG.uniform(0.5, 1.0, size=(h, n))
    q = RNG.normal(size=(h + 1, n))
    alive = np.cumprod(np.r_[np.ones((1, n)), continues], axis=0)  # M_0 .. M_H
    expected = _loop_lambda_scan(rewards, alive[:-1], alive[1:], q, lam)
    args = (jnp.asarray(rewards), jnp.asarray(continues), jnp.asarray(q), lam)
    got = continue_lambda_returns(*args, "cumulative")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    per_step = continue_lambda_returns(*args, "per_step")
    assert not np.allclose(got[:-1], per_step[:-1])  # soft continues: the forms differ
    ones = jnp.ones((h, n))
    np.testing.assert_allclose(  # hard continues: they agree
        continue_lambda_returns(args[0], ones, args[2], lam, "cumulative"),
        continue_lambda_returns(args[0], ones, args[2], lam, "per_step"),
        rtol=1e-6,
    )


def test_a_zero_continue_cuts_the_return():
    rewards = jnp.array([[1.0], [5.0], [7.0]])
    continues = jnp.array([[0.0], [1.0], [1.0]])
    q = jnp.array([[2.0], [100.0], [100.0], [100.0]])
    got = continue_lambda_returns(rewards, continues, q, 1.0, "cumulative")
    # G_0 mixes Q_0 = 2 with returns that all stop after r_1 = 1: (2 + 1 + 1 + 1) / 4
    assert float(got[0, 0]) == pytest.approx(5.0 / 4.0)


def test_trajectory_weights_are_the_cumulative_continues():
    c = jnp.array([[0.5, 1.0], [0.5, 0.0], [0.9, 1.0]])
    np.testing.assert_allclose(returns.trajectory_weights(c), [[1.0, 1.0], [0.5, 1.0], [0.25, 0.0]])
    with_last = returns.trajectory_weights(c, with_last=True)
    np.testing.assert_allclose(with_last, [[1.0, 1.0], [0.5, 1.0], [0.25, 0.0], [0.225, 0.0]])


# ----------------------------------------------------------------------------- networks


def test_critics_are_independent_mlps_under_their_names():
    """Checkpoints depend on the names: q<k>/dense_<i> and q<k>/out."""
    net = networks.critics([8, 8], num_critics=3)
    obs, act = jnp.asarray(RNG.normal(size=(5, 4))), jnp.asarray(RNG.normal(size=(5, 2)))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), obs, act)  # one program, not op by op
    assert sorted(params) == sorted(
        f"q{k}/{layer}" for k in range(3) for layer in ("dense_0", "dense_1", "out")
    )
    q = np.asarray(jax.jit(net.apply)(params, obs, act))
    x = jnp.concatenate([obs, act], axis=-1)

    @jax.jit  # one critic by hand, compiled once for the three
    def by_hand(hidden, out, x):
        h = x
        for layer in hidden:
            h = jax.nn.relu(h @ layer["w"] + layer["b"])
        return h @ out["w"] + out["b"]

    for k in range(3):
        hidden = [params[f"q{k}/{layer}"] for layer in ("dense_0", "dense_1")]
        want = by_hand(hidden, params[f"q{k}/out"], x)
        np.testing.assert_allclose(q[:, k], want[:, 0], rtol=1e-5, atol=1e-6)


def test_actors_are_bounded():
    obs = jnp.asarray(RNG.normal(size=(7, 4)) * 10.0)
    det = networks.deterministic_actor([8], 3, layer_norm=True)
    params = jax.jit(det.init)(jax.random.PRNGKey(0), obs)  # one program each, not op by op
    assert sorted(params) == ["dense_0", "ln_0", "out"]
    assert np.all(np.abs(np.asarray(jax.jit(det.apply)(params, obs))) <= 1.0)
    gauss = networks.tanh_gaussian_actor([8], 3)
    mean, log_std = jax.jit(gauss.apply)(jax.jit(gauss.init)(jax.random.PRNGKey(1), obs), obs)
    assert mean.shape == log_std.shape == (7, 3)
    assert np.all((np.asarray(log_std) >= -5.0) & (np.asarray(log_std) <= 2.0))


# ----------------------------------------------------------------------------- updates


class _State(NamedTuple):
    actor_params: jax.Array
    critic_params: jax.Array
    target_actor_params: jax.Array
    target_critic_params: jax.Array
    actor_opt_state: optax.OptState


def test_delayed_updates_run_on_every_period_th_step_and_report_nan_otherwise():
    def update(count):
        return count + 1, (jnp.float32(7.0), jnp.float32(8.0))

    run = jax.jit(lambda step, count: actor_critic.delayed(step, 3, update, count))
    count = jnp.int32(0)
    for step in range(7):
        count, (a, b) = run(jnp.int32(step), count)
        if step % 3 == 0:
            assert (float(a), float(b)) == (7.0, 8.0)
        else:
            assert np.isnan(float(a)) and np.isnan(float(b))
    assert int(count) == 3  # steps 0, 3, 6


def test_update_network_and_soft_targets():
    tx = optax.sgd(0.1)
    one = jnp.float32(1.0)
    state = _State(one, 2 * one, 0 * one, 0 * one, tx.init(one))
    state, loss, norm = actor_critic.update_network(state, "actor", tx, lambda p: p**2)
    assert float(loss) == 1.0 and float(norm) == 2.0  # grad 2 p = 2
    assert float(state.actor_params) == pytest.approx(0.8) and float(state.critic_params) == 2.0
    state = actor_critic.soft_update_targets(state, 0.25)
    assert float(state.target_actor_params) == pytest.approx(0.2)
    assert float(state.target_critic_params) == pytest.approx(0.5)


def test_apply_gradients_is_one_optimiser_step_with_the_gradient_norm():
    params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
    loss_fn = lambda p: jnp.sum(p["a"] ** 2) + p["b"] ** 2  # gradient 2 p
    tx = optax.sgd(0.5)
    new, _, loss, norm = apply_gradients(tx, params, tx.init(params), loss_fn)
    assert float(loss) == pytest.approx(14.0)
    assert float(norm) == pytest.approx(2 * np.sqrt(14.0))
    np.testing.assert_allclose(new["a"], [0.0, 0.0])  # p - 0.5 * 2 p
    assert float(new["b"]) == 0.0
