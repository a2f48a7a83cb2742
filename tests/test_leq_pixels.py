"""LEQ from pixels: losses against slow references, and a debug run that resumes (the
continue-masked lambda-return is tested in tests/test_shared_maths.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent.distributions import twohot, twohot_bins
from agent.leq_pixels import losses
from agent.leq_pixels.return_scale import return_scale, update_return_scale
from agent.returns import continue_lambda_returns

# One compiled program per call, not op by op (eager dispatch dominated these checks' time).
update_return_scale = jax.jit(update_return_scale, static_argnums=3)
return_scale = jax.jit(return_scale)
twohot = jax.jit(twohot)


def test_return_scale_tracks_percentiles_and_never_scales_up():
    returns = jnp.arange(101.0)
    low, high = update_return_scale(jnp.zeros(()), jnp.zeros(()), returns, 1.0)
    assert float(low) == pytest.approx(5.0) and float(high) == pytest.approx(95.0)
    assert float(return_scale(low, high)) == pytest.approx(90.0)
    low, high = update_return_scale(jnp.zeros(()), jnp.zeros(()), returns * 1e-3, 0.5)
    assert float(low) == pytest.approx(0.0025) and float(return_scale(low, high)) == 1.0


def test_imagined_critic_loss_against_a_loop():
    bins = twohot_bins(11, limit=5.0)
    rng = np.random.default_rng(1)
    h, n = 3, 2
    logits = rng.normal(size=(h, n, 11))
    returns, q_mean, slow = rng.normal(size=(3, h, n))
    weights = rng.uniform(size=(h, n))
    tau, slowreg = 0.1, 1.0
    got = jax.jit(losses.imagined_critic_loss, static_argnums=(5, 6))(
        jnp.asarray(logits), jnp.asarray(returns), jnp.asarray(q_mean), jnp.asarray(slow),
        jnp.asarray(weights), tau, slowreg, bins,
    )  # fmt: skip
    total = 0.0
    for t in range(h):
        for b in range(n):
            logp = logits[t, b] - np.log(np.exp(logits[t, b]).sum())
            w = tau if q_mean[t, b] < returns[t, b] else 1 - tau
            lp_ret = float(np.asarray(twohot(jnp.asarray(returns[t, b]), bins)) @ logp)
            lp_slow = float(np.asarray(twohot(jnp.asarray(slow[t, b]), bins)) @ logp)
            total += -weights[t, b] * (w * lp_ret + slowreg * lp_slow)
    assert float(got) == pytest.approx(total / (h * n), rel=1e-5)


def test_actor_loss_is_reinforce_with_expectile_weights():
    rng = np.random.default_rng(2)
    shape = (3, 4)
    log_prob, entropy, returns, q_mean, baseline = rng.normal(size=(5, *shape))
    weights = rng.uniform(size=shape)
    scale, tau, eta = 2.0, 0.2, 3e-4
    rest = (*map(jnp.asarray, (entropy, returns, q_mean, baseline, weights)), jnp.asarray(scale))
    # the loss and its gradient in one compiled program, not op by op
    loss_and_grad = jax.jit(jax.value_and_grad(lambda lp: losses.actor_loss(lp, *rest, tau, eta)))
    got, grad = loss_and_grad(jnp.asarray(log_prob))
    w = np.where(returns > q_mean, tau, 1 - tau)
    expected = np.mean(weights * -(log_prob * w * (returns - baseline) / scale + eta * entropy))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # the gradient reaches log pi only, scaled by the (constant) weighted advantage
    np.testing.assert_allclose(
        grad, -weights * w * (returns - baseline) / scale / log_prob.size, rtol=1e-5
    )


def test_tanh_gaussian_log_prob_against_change_of_variables():
    u = jnp.array([[0.3, -1.2]])
    mean, std = jnp.array([[0.1, -0.5]]), jnp.array([[0.5, 0.9]])

    @jax.jit  # one program, not op by op
    def change_of_variables(u, mean, std):
        normal = -0.5 * ((u - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)
        return jnp.sum(normal - jnp.log(1 - jnp.tanh(u) ** 2), axis=-1)

    expected = change_of_variables(u, mean, std)
    got = jax.jit(losses.tanh_gaussian_log_prob)(u, mean, std)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_data_targets_fold_the_continue_discount():
    y = losses.data_targets(
        jnp.array([1.0, 1.0]), jnp.array([1.0, 0.0]), jnp.array([10.0, 10.0]), 333.0
    )
    np.testing.assert_allclose(y, [1.0 + 10.0 * (1 - 1 / 333), 1.0], rtol=1e-6)


@pytest.mark.slow
def test_leq_pixels_debug_run_trains_both_stages_and_resumes_bit_identical(
    tmp_path, pixel_data_dir
):
    from tests.conftest import pixel_debug_run_and_resume

    sets = ["train.steps=20", "train.updates_per_call=5", "train.log_every=5"]
    sets += ["train.checkpoint_every=10", "train.eval_every=0", "leq_pixels.model_steps=10"]
    sets += ["eval.final_episodes=1"]
    result, straight, _ = pixel_debug_run_and_resume(
        "leq_pixels_cartpole_swingup", pixel_data_dir, tmp_path, sets, kill_after=10
    )
    assert np.isfinite(result["eval/return"])
    assert (straight / "world_model").is_dir()  # reusable with world_model.path
    assert list((straight / "videos").glob("*.gif"))  # pixel tasks record the final episode


def test_dpg_action_gradients_are_each_steps_own_total_derivative():
    from agent.leq_pixels import dpg
    from agent.world_model.rssm import RssmLatent, RssmWorldModel
    from agent.world_model.rssm_config import RssmConfig

    cfg = RssmConfig(deter=8, hidden=8, stoch=2, classes=3, prior_heads=2, cnn_depth=2)
    world = RssmWorldModel(cfg, 2, (8, 8, 3))
    params = jax.jit(world.init)(jax.random.PRNGKey(0))  # one program, not op by op
    w_act = jax.random.normal(jax.random.PRNGKey(1), (cfg.feature_dim, 2)) * 0.3
    w_q = jax.random.normal(jax.random.PRNGKey(2), (cfg.feature_dim + 2,))
    act_fn = lambda f: jnp.tanh(f @ w_act)
    q_fn = lambda f, a: jnp.concatenate([f, a], -1) @ w_q
    start = RssmLatent(
        jax.random.normal(jax.random.PRNGKey(3), (3, 8)) * 0.5,
        jax.nn.one_hot(jnp.array([[0, 1], [2, 0], [1, 1]]), 3),
    )
    key, horizon = jax.random.PRNGKey(4), 3
    found = jax.jit(
        lambda p, s, k: dpg.action_gradients(world, p, act_fn, q_fn, s, k, horizon, 0.9)
    )(params, start, key)
    assert found.grads.shape == (horizon + 1, 3, 2)

    def return_at(t, d_t):  # G_t with only step t's action perturbed, re-rolled from scratch
        delta = jnp.zeros((horizon + 1, 3, 2)).at[t].set(d_t)
        keys = jax.random.split(key, horizon)
        latent, qs, rs, cs = start, [], [], []
        for s in range(horizon + 1):
            f = world.features(params, latent)
            a = jnp.clip(act_fn(f) + delta[s], -1.0, 1.0)
            qs.append(q_fn(f, a))
            if s < horizon:
                latent, r, c = world.imagine_step(params, latent, a, keys[s])
                rs.append(r)
                cs.append(c)
        q = jnp.stack(qs)
        g = continue_lambda_returns(jnp.stack(rs), jnp.stack(cs), q, 0.9)
        full = jnp.concatenate([g, q[-1:]], axis=0)
        return jnp.sum(full[t])

    reference = jax.jit(jax.grad(return_at, argnums=1))  # t traced: one compilation for all t
    for t in range(horizon + 1):
        expected = reference(t, jnp.zeros((3, 2)))
        np.testing.assert_allclose(found.grads[t], expected, rtol=1e-4, atol=1e-6)


def test_dpg_surrogate_gradient_is_the_weighted_action_gradient():
    from agent.leq_pixels.dpg import dpg_surrogate

    rng = np.random.default_rng(3)
    actions, grads = jnp.asarray(rng.normal(size=(2, 4, 3, 2)))
    returns, q = jnp.asarray(rng.normal(size=(2, 4, 3)))
    got = jax.jit(jax.grad(lambda a: dpg_surrogate(a, grads, returns, q, 0.2)))(actions)
    omega = np.where(np.asarray(returns) > np.asarray(q), 0.2, 0.8)
    omega[-1] = 0.5
    np.testing.assert_allclose(got, -omega[..., None] * np.asarray(grads) / 3, rtol=1e-6)
