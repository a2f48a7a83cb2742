"""Tests of LEQ's math: returns (§3.3), losses (§3.2, §3.4), imagination, action gradients.

The action-gradient problem is small (B=16, H=5) and built once per dtype; the expensive
functions are jitted once at module level so the file stays fast.
"""

from __future__ import annotations

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent.leq import action_gradients, imagination, losses, networks, returns
from agent.losses import dpg_surrogate
from agent.returns import lambda_returns

OBS, ACT, B, H = 4, 2, 16, 5
GAMMA, LAM = 0.97, 0.9
MEMBERS = 3


# ----------------------------------------------------------------------------- returns


def _random_trajectory(seed: int, horizon: int, batch: int, terminate: bool):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(horizon, batch))
    q = rng.normal(size=(horizon + 1, batch)) * 3.0
    dones = rng.random((horizon, batch)) < (0.3 if terminate else 0.0)
    alive = np.ones((horizon + 1, batch))
    for t in range(horizon):
        alive[t + 1] = alive[t] * (1.0 - dones[t])
    return rewards, q, dones, alive


def _n_step(rewards, q, alive, t, n, gamma):
    """G^(n)_t = sum_{i<n} gamma^i m_{t+i} r_{t+i} + gamma^n m_{t+n} Q_{t+n}; G^(0)_t = Q_t."""
    if n == 0:
        return q[t]
    total = sum(gamma**i * alive[t + i] * rewards[t + i] for i in range(n))
    return total + gamma**n * alive[t + n] * q[t + n]


def test_n_step_and_one_step_targets():
    rewards, q, dones, alive = _random_trajectory(1, 6, 32, True)
    horizon = rewards.shape[0]
    want = np.stack([_n_step(rewards, q, alive, t, horizon - t, GAMMA) for t in range(horizon)])
    got = returns.n_step_returns(jnp.asarray(rewards), jnp.asarray(q), jnp.asarray(alive), GAMMA)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    one = returns.one_step_targets(jnp.asarray(rewards), jnp.asarray(q), jnp.asarray(dones), GAMMA)
    np.testing.assert_allclose(one, rewards + GAMMA * (1.0 - dones) * q[1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lambda", "multi_step"])
def test_recursive_returns_reproduce_each_kind(kind):
    rewards, q, dones, alive = _random_trajectory(2, 6, 32, True)
    args = [jnp.asarray(x) for x in (rewards, q, alive)]
    alpha, beta = returns.return_coefficients(kind, rewards.shape[0], LAM)
    got = returns.recursive_returns(*args, GAMMA, alpha, beta)
    want = returns.returns_for_kind(kind, *args, jnp.asarray(dones), GAMMA, LAM)
    np.testing.assert_allclose(got[:-1], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[-1], q[-1])


# ----------------------------------------------------------------------------- losses


def test_critic_loss_terms_match_numpy():
    rng = np.random.default_rng(4)
    horizon, batch, tau, beta = 5, 8, 0.2, 0.25
    _, _, _, alive = _random_trajectory(5, horizon, batch, True)
    targets, q_pred, q_ema = (rng.normal(size=(horizon, batch)) for _ in range(3))
    r, nd, nq, qd, qd_ema = (rng.normal(size=batch) for _ in range(5))
    nd = (nd > 0).astype(float)

    w = np.array([GAMMA**t for t in range(horizon)])[:, None] * alive[:-1]
    np.testing.assert_allclose(losses.imagined_loss_weights(jnp.asarray(alive), GAMMA), w)
    u = targets - q_pred
    l_model = np.mean(w * np.where(u < 0, 1 - tau, tau) * u**2)
    got = losses.model_critic_loss(targets, q_pred, w, tau)
    np.testing.assert_allclose(got, l_model, rtol=1e-5)
    sym = losses.model_critic_loss(targets, q_pred, w, tau, expectile=False)
    np.testing.assert_allclose(sym, np.mean(w * 0.5 * u**2), rtol=1e-5)

    y_env = r + GAMMA * nd * nq
    np.testing.assert_allclose(losses.env_targets(r, nd, nq, GAMMA), y_env, rtol=1e-6)
    l_env = np.mean(0.5 * (y_env - qd) ** 2)
    np.testing.assert_allclose(losses.env_critic_loss(y_env, qd), l_env, rtol=1e-5)
    r_env = np.mean((qd_ema - qd) ** 2)
    np.testing.assert_allclose(losses.ema_regulariser(qd_ema, qd), r_env, rtol=1e-5)
    r_model = np.mean(w * (q_ema - q_pred) ** 2)
    np.testing.assert_allclose(losses.ema_regulariser(q_ema, q_pred, w), r_model, rtol=1e-5)
    total = (1 - beta) * l_env + beta * l_model + beta * r_model + (1 - beta) * r_env
    got = losses.critic_loss(l_env, l_model, r_env, r_model, beta)
    np.testing.assert_allclose(got, total, rtol=1e-6)
    weighted = (1 - beta) * (l_env + 0.3 * r_env) + beta * (l_model + 0.3 * r_model)
    got = losses.critic_loss(l_env, l_model, r_env, r_model, beta, ema_weight=0.3)
    np.testing.assert_allclose(got, weighted, rtol=1e-6)


def test_policy_step_weights():
    q = jnp.array([[0.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    ret = jnp.array([[1.0, 0.0], [0.0, -1.0]])  # ties go to 1 - tau
    omega = losses.policy_step_weights(ret, q, 0.1)
    np.testing.assert_allclose(omega, [[0.1, 0.9], [0.9, 0.9], [0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(losses.policy_step_weights(ret, q, 0.1, expectile=False), 0.5)


# ----------------------------------------------------------------------------- imagination


def test_imagination_masks_and_clipping():
    """Rollouts continue after termination; alive stays 0 once dead; the model sees clip(a).

    The world step's continue flag is 1 - done, and `dones` comes back as the float
    1 - continue."""

    def world_step(obs, action, key):
        next_obs = obs + 1.0
        done = next_obs[:, 0] > jnp.array([0.5, 1.5, 10.0])  # fires at t = 0, 1, never
        return next_obs, jnp.sum(action, -1), 1.0 - done.astype(jnp.float32)

    start = jnp.zeros((3, 2))
    actor = lambda s: jnp.full((s.shape[0], 1), 3.0)  # outside [-1, 1]
    ro = imagination.imagine(actor, world_step, start, jax.random.PRNGKey(0), 4)
    np.testing.assert_allclose(ro["obs"][:, 0, 0], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(ro["rewards"], 1.0)  # clipped action reached the model
    np.testing.assert_allclose(ro["actions"], 3.0)  # the critic sees the unclipped action
    want_done = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0]], np.float32)
    assert ro["dones"].dtype == jnp.float32
    np.testing.assert_array_equal(ro["dones"], want_done)
    want_alive = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]], float)
    np.testing.assert_allclose(ro["alive"], want_alive)
    assert ro["obs"].shape == (5, 3, 2) and ro["actions"].shape == (5, 3, 1)


def test_imagination_with_a_continue_probability():
    """A world model may return continue in [0, 1] (e.g. an RSSM's continue head): the masks
    are the running products m_{t+1} = m_t c_t and dones = 1 - c_t."""
    cont = jnp.array([0.5, 1.0, 0.0])

    def world_step(latent, action, key):
        return latent + 1.0, jnp.sum(action, -1), cont

    start = jnp.zeros((3, 2))
    actor = lambda s: jnp.full((s.shape[0], 1), 0.5)
    ro = imagination.imagine(actor, world_step, start, jax.random.PRNGKey(0), 3)
    np.testing.assert_allclose(ro["dones"], np.broadcast_to(1.0 - np.asarray(cont), (3, 3)))
    want_alive = np.array([[1, 1, 1], [0.5, 1, 0], [0.25, 1, 0], [0.125, 1, 0]])
    np.testing.assert_allclose(ro["alive"], want_alive)
    np.testing.assert_allclose(ro["rewards"], 0.5)


def test_clip_action_gradient_passes_at_bounds():
    grad = jax.grad(lambda a: jnp.sum(imagination.clip_action(a)))(
        jnp.array([-2.0, -1.0, 1.0, 3.0])
    )
    np.testing.assert_allclose(grad, [0.0, 1.0, 1.0, 0.0])


# ----------------------------------------------------------------------------- action gradients


def _dense_params(seed, sizes, dtype, members=None):
    """Random MLP weights, drawn with numpy (eager jax.random would compile per shape)."""
    rng = np.random.default_rng(seed)
    lead = () if members is None else (members,)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(size=(*lead, n_in, n_out)) / np.sqrt(n_in)
        params.append((jnp.asarray(w, dtype), jnp.full((*lead, n_out), 0.1, dtype)))
    return params


def _mlp(params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        x = jnp.tanh(x) if i < len(params) - 1 else x
    return x


def actor_apply(params, obs):
    return jnp.tanh(_mlp(params, obs))


def make_problem(dtype):
    """Random ensemble-like model (one member per element per step, Gaussian noise), tanh actor,
    MLP critic, and a termination (s'_0 > 0.4) that fires in the middle of rollouts; the world
    step returns continue = 1 - done, as the ensemble's `imagine_step` does."""
    model = _dense_params(0, (OBS + ACT, 32, 32, OBS + 1), dtype, MEMBERS)
    actor = _dense_params(1, (OBS, 32, ACT), dtype)
    critic = _dense_params(2, (OBS + ACT, 32, 1), dtype)

    def world_step(obs, action, key):
        k_member, k_noise = jax.random.split(key)
        member = jax.random.randint(k_member, obs.shape[:-1], 0, MEMBERS)
        x = jnp.concatenate([obs, action], -1)
        for i, (w, b) in enumerate(model):
            x = jnp.einsum("bi,bio->bo", x, w[member]) + b[member]
            x = jnp.tanh(x) if i < len(model) - 1 else x
        y = x + 0.1 * jax.random.normal(k_noise, x.shape, x.dtype)
        next_obs = obs + 0.5 * y[:, :OBS] + 0.2
        done = next_obs[:, 0] > 0.4
        return next_obs, y[:, OBS], 1.0 - done.astype(dtype)

    actor_fn = lambda s: actor_apply(actor, s)
    critic_fn = lambda s, a: _mlp(critic, jnp.concatenate([s, a], -1))[..., 0]
    start = 0.5 * np.random.default_rng(3).normal(size=(B, OBS)) - np.array([0.3, 0, 0, 0])
    start = jnp.asarray(start, dtype)
    return actor_fn, critic_fn, world_step, start


def actor_params(dtype):
    return _dense_params(1, (OBS, 32, ACT), dtype)


@functools.cache
def _gradients(impl_name: str, kind: str, x64: bool):
    dtype = jnp.float64 if x64 else jnp.float32
    actor_fn, critic_fn, world_step, start = make_problem(dtype)
    impl = getattr(action_gradients, impl_name)
    fn = jax.jit(lambda s, k: impl(actor_fn, critic_fn, world_step, s, k, H, GAMMA, LAM, kind))
    out = fn(start, jax.random.PRNGKey(7))
    return jax.tree_util.tree_map(np.asarray, out)


@pytest.mark.parametrize("kind", ["lambda", "multi_step"])
def test_production_gradients_equal_reference_float32(kind):
    prod = _gradients("production", kind, False)
    ref = _gradients("reference", kind, False)
    alive = ref.rollout["alive"]
    # The problem must exercise terminations in the middle of rollouts.
    first_dead = (alive == 0).argmax(0)
    assert np.any((first_dead > 1) & (first_dead < H)) and alive[-1].any() and not alive[-1].all()
    assert prod.grads.shape == (H + 1, B, ACT)
    np.testing.assert_allclose(prod.returns, ref.returns, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prod.q_values, ref.q_values, rtol=1e-5, atol=1e-6)
    scale = np.abs(ref.grads).max()
    np.testing.assert_allclose(prod.grads, ref.grads, rtol=1e-4, atol=1e-5 * scale)


def test_production_gradients_equal_reference_float64():
    with jax.enable_x64(True):
        prod = _gradients("production", "lambda", True)
        ref = _gradients("reference", "lambda", True)
    assert prod.grads.dtype == np.float64
    np.testing.assert_allclose(prod.grads, ref.grads, rtol=1e-10, atol=1e-12)


def test_fused_policy_gradient_equals_surrogate_gradient():
    """production_policy_grad's parameter gradient == grad of the shared dpg_surrogate."""
    _, critic_fn, world_step, start = make_problem(jnp.float32)
    theta, tau = actor_params(jnp.float32), 0.2

    def both(theta, s, k):
        args = (critic_fn, world_step, s, k, H, GAMMA, LAM)
        fused = action_gradients.production_policy_grad(actor_apply, theta, *args, tau)
        ag = action_gradients.production(lambda o: actor_apply(theta, o), *args)
        omega = losses.policy_step_weights(ag.returns, ag.q_values, tau)
        states = ag.rollout["obs"]
        surrogate = lambda p: dpg_surrogate(actor_apply(p, states), ag.grads, omega)
        loss, grads = jax.value_and_grad(surrogate)(theta)
        return fused, ag, loss, grads

    fused, ag, loss, grads = jax.jit(both)(theta, start, jax.random.PRNGKey(7))
    np.testing.assert_allclose(fused.action_grads.grads, ag.grads, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fused.loss, loss, rtol=1e-5)
    for got, want in zip(
        jax.tree_util.tree_leaves(fused.param_grads), jax.tree_util.tree_leaves(grads), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_gradients_are_total_derivatives():
    """Central finite differences of G_t in delta_t agree with the reference (float64)."""
    eps, steps = 1e-6, (0, 2, H)
    with jax.enable_x64(True):
        actor_fn, critic_fn, world_step, start = make_problem(jnp.float64)
        key = jax.random.PRNGKey(7)

        def returns_at(delta):
            ro = imagination.imagine(actor_fn, world_step, start, key, H, delta)
            q = critic_fn(ro["obs"], ro["actions"])
            g = lambda_returns(ro["rewards"], q, ro["alive"], GAMMA, LAM)
            return jnp.concatenate([g, q[-1:]]), ro["alive"]

        deltas = np.zeros((2 * len(steps) + 1, H + 1, B, ACT))
        for i, t in enumerate(steps):
            deltas[2 * i, t, :, 1], deltas[2 * i + 1, t, :, 1] = eps, -eps
        values, alive = jax.jit(jax.vmap(returns_at))(jnp.asarray(deltas))
        values, alive = np.asarray(values), np.asarray(alive)
        ref = _gradients("reference", "lambda", True)
    for i, t in enumerate(steps):
        # Skip elements whose termination pattern the perturbation flipped (a jump, not a slope).
        same = np.all(alive[2 * i] == alive[-1], 0) & np.all(alive[2 * i + 1] == alive[-1], 0)
        fd = (values[2 * i, t] - values[2 * i + 1, t]) / (2 * eps)
        np.testing.assert_allclose(fd[same], ref.grads[t, same, 1], rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # compiles both gradient paths through the ensemble (~4 s)
def test_production_matches_reference_with_world_model_ensemble():
    """The project's ensemble in its "balanced" mode (a random permutation routes batch rows to
    elites) still keeps batch elements independent, which `reference` relies on. The world step
    is the model's own `imagine_step` (termination function given at construction)."""
    from agent import world_model as wm
    from envs.tasks.termination import hopper_termination

    config = wm.EnsembleConfig(
        num_members=3,
        num_elites=2,
        hidden_sizes=(16, 16),
        weight_decays=(0.0, 0.0, 0.0),
        max_logvar_init=-6.0,  # small model noise, so some rollouts survive the horizon
        elite_sampling="balanced",
    )
    model = wm.EnsembleWorldModel(11, 3, config, hopper_termination)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    actor_fn, critic_fn = _small_nets(11, 3)
    start = jnp.concatenate([jnp.full((B, 1), 1.2), 0.05 * jnp.ones((B, 10))], -1)
    step = functools.partial(model.imagine_step, params)

    def both(s, k):
        args = (actor_fn, critic_fn, step, s, k, 3, GAMMA, LAM)
        return action_gradients.production(*args), action_gradients.reference(*args)

    prod, ref = jax.jit(both)(start, jax.random.PRNGKey(1))
    alive = ref.rollout["alive"]
    assert alive[-1].any(), alive
    scale = float(jnp.abs(ref.grads).max())
    np.testing.assert_allclose(prod.grads, ref.grads, rtol=1e-4, atol=1e-5 * scale)


def _small_nets(obs_dim, act_dim):
    actor = _dense_params(4, (obs_dim, 16, act_dim), jnp.float32)
    critic = _dense_params(5, (obs_dim + act_dim, 16, 1), jnp.float32)
    actor_fn = lambda s: jnp.tanh(_mlp(actor, s))
    critic_fn = lambda s, a: _mlp(critic, jnp.concatenate([s, a], -1))[..., 0]
    return actor_fn, critic_fn


# ----------------------------------------------------------------------------- networks


def test_networks_shapes_and_normalisation():
    obs_dim, act_dim = 5, 2
    mean, std = jnp.arange(obs_dim + act_dim, dtype=jnp.float32), jnp.full(obs_dim + act_dim, 2.0)
    critic, actor = networks.make_critic((32, 32)), networks.make_actor(act_dim, (32, 32))
    obs, act = jnp.ones((4, 3, obs_dim)), jnp.zeros((4, 3, act_dim))
    cp = jax.jit(critic.init)(jax.random.PRNGKey(0), obs, act, mean, std)
    ap = jax.jit(actor.init)(jax.random.PRNGKey(1), obs, mean, std)
    assert jax.jit(critic.apply)(cp, obs, act, mean, std).shape == (4, 3)
    mu, log_std = jax.jit(actor.apply)(ap, obs, mean, std)
    assert mu.shape == (4, 3, act_dim) and log_std.shape == (act_dim,)
    np.testing.assert_allclose(log_std, 0.0)
    assert set(cp) == {"dense_0", "ln_0", "dense_1", "ln_1", "out"}
    assert set(ap) == {"dense_0", "dense_1", "mean", "~"}  # "~": the top-level log_std

    # Orthogonal init with gain sqrt(2): W^T W = 2 I for a tall matrix.
    w = np.asarray(next(v["w"] for k, v in ap.items() if k.endswith("dense_1")))
    np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(32), atol=1e-4)
    a = jax.jit(networks.stochastic_action)(mu, log_std, jax.random.PRNGKey(2))  # not op by op
    assert a.shape == mu.shape and float(jnp.abs(a).max()) <= 1.0
    assert networks.symlog(jnp.array(-(np.e - 1))) == pytest.approx(-1.0)
    assert isinstance(critic, hk.Transformed)
