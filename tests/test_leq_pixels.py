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
    # resumed inside the LEQ phase: its latent cache is rebuilt from the checkpoint
    sets += ["train.checkpoint_every=10", "train.eval_every=0", "leq_pixels.model_steps=5"]
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


# --------------------------------------------------------------------- fidelity (LEQ_DV3) ----
def test_entropy_bonus_differentiates_through_the_reparameterised_sample():
    """With no advantage the actor's gradient is the entropy bonus's alone; through the sample
    u = mean + std eps it is dH/dstd = 1/std - 2 tanh(u) eps and dH/dmean = -2 tanh(u). (At a
    stop-gradient sample it would be 1/std - eps^2/std, zero in expectation.)"""
    rng = np.random.default_rng(4)
    shape = (3, 5, 2)  # [H+1, N, A]
    mean = jnp.asarray(rng.normal(size=shape) * 0.5)
    std = jnp.asarray(rng.uniform(0.2, 1.0, size=shape))
    noise = jnp.asarray(rng.normal(size=shape))
    returns = jnp.asarray(rng.normal(size=shape[:2]))
    weights = jnp.asarray(rng.uniform(0.5, 1.0, size=shape[:2]))
    eta = 0.3

    def loss(mean, std):  # baseline = returns: every advantage is zero
        log_prob, entropy = losses.reparameterised_terms(mean, std, noise)
        return losses.actor_loss(
            log_prob, entropy, returns, returns, returns, weights, jnp.ones(()), 0.1, eta
        )

    d_mean, d_std = jax.jit(jax.grad(loss, argnums=(0, 1)))(mean, std)
    u = np.asarray(mean + std * noise)
    per_step = -eta * np.asarray(weights)[..., None] / np.prod(shape[:2])
    np.testing.assert_allclose(d_std, per_step * (1 / np.asarray(std) - 2 * np.tanh(u) * noise),
                               rtol=1e-4, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(d_mean, per_step * -2 * np.tanh(u), rtol=1e-4, atol=1e-7)
    assert np.abs(np.asarray(d_std)).min() > 0


def test_actor_output_layer_starts_at_a_hundredth_of_the_weight_variance():
    from agent.leq_pixels.networks import actor_net

    net = actor_net((64,), 3)
    params = jax.jit(net.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32)))
    out = np.asarray(params["out"]["w"])
    hidden = np.asarray(params["hidden0"]["w"])
    # DreamerV3's outscale 0.01: std = sqrt(0.01 / fan_in), a tenth of the hidden layer's
    assert out.std() * np.sqrt(out.shape[0]) == pytest.approx(0.1, rel=0.2)
    assert hidden.std() * np.sqrt(hidden.shape[0]) == pytest.approx(1.0, rel=0.2)
    feats = jax.random.normal(jax.random.PRNGKey(1), (256, 32))
    mean, std = jax.jit(net.apply)(params, feats)
    assert float(jnp.abs(mean).max()) < 0.5  # nearly the same action everywhere
    np.testing.assert_allclose(std, 0.9 * jax.nn.sigmoid(2.0) + 0.1, atol=0.05)


@pytest.fixture(scope="module")
def tiny_world():
    """A tiny RSSM on 8x8 frames and its initial parameters (compiled once per module)."""
    from agent.world_model.rssm import RssmWorldModel
    from agent.world_model.rssm_config import RssmConfig

    cfg = RssmConfig(deter=8, hidden=8, stoch=2, classes=3, prior_heads=2, cnn_depth=2)
    world = RssmWorldModel(cfg, 2, (8, 8, 3))
    return world, jax.jit(world.init)(jax.random.PRNGKey(0))


def _episode_rows(lengths, seed=0):
    """Replay rows of episodes of these lengths, each row's next frame its successor's."""
    rng = np.random.default_rng(seed)
    obs, nxt, ends = [], [], []
    for n in lengths:
        frames = rng.integers(0, 256, (n + 1, 8, 8, 3), dtype=np.uint8)
        obs.append(frames[:-1]), nxt.append(frames[1:])
        ends.append(np.arange(n) == n - 1)
    count = sum(lengths)
    return {
        "observations": {"image": np.concatenate(obs)},
        "next_observations": {"image": np.concatenate(nxt)},
        "actions": rng.uniform(-1, 1, (count, 2)).astype(np.float32),
        "rewards": rng.normal(size=count).astype(np.float32),
        "masks": np.ones(count, np.float32),
        "episode_ends": np.concatenate(ends).astype(np.float32),
    }


def test_latent_cache_starts_equal_the_window_filter_of_each_whole_episode(monkeypatch, tiny_world):
    """The cached form and LEQ_DV3's window form give the same start states (h and posterior
    logits at every frame) for a window that is a whole episode, filtered with the same key."""
    from agent.leq_pixels import latent_cache
    from agent.world_model.rssm import sequence_from_window

    monkeypatch.setattr(latent_cache, "EPISODES_PER_CALL", 1)  # one key per episode
    world, params = tiny_world
    rows, key, n = _episode_rows([6, 6, 6]), jax.random.PRNGKey(5), 6
    cache = latent_cache.build_latent_cache(world, params, rows, key)
    filter_window = jax.jit(lambda p, i, a, k: world.observe_sequence(p, i, a, k)[:2])
    for e in range(3):
        window = jax.tree.map(lambda x, e=e: jnp.asarray(x[None, e * n : (e + 1) * n]), rows)
        seq = sequence_from_window(window)
        latents, post = filter_window(
            params, seq["images"], seq["actions"], jax.random.fold_in(key, e)
        )
        first = int(cache.frame[e * n])
        np.testing.assert_array_equal(cache.h[first : first + n + 1], latents.h[0])
        np.testing.assert_array_equal(cache.logits[first : first + n + 1], post[0])
        np.testing.assert_array_equal(cache.frame[e * n : (e + 1) * n], first + np.arange(n))


def test_latent_cache_of_unequal_episodes_ignores_the_padding(tiny_world):
    """Episodes filtered together are padded to the longest; a reference that pads with zero
    frames instead, built by a loop, gives the same latents at every real frame, and rows read
    their own frame and the next one."""
    from agent.leq_pixels import latent_cache

    world, params = tiny_world
    lengths = [5, 2, 7]
    rows, key = _episode_rows(lengths, seed=1), jax.random.PRNGKey(6)
    cache = latent_cache.build_latent_cache(world, params, rows, key)
    steps = max(lengths)
    images = np.zeros((len(lengths), steps + 1, 8, 8, 3), np.uint8)
    actions = np.zeros((len(lengths), steps, 2), np.float32)
    start = 0
    for e, n in enumerate(lengths):
        for t in range(n):
            images[e, t] = rows["observations"]["image"][start + t]
            actions[e, t] = rows["actions"][start + t]
        images[e, n] = rows["next_observations"]["image"][start + n - 1]
        start += n
    latents, post = jax.jit(lambda *a: world.observe_sequence(*a)[:2])(
        params, images, actions, jax.random.fold_in(key, 0)
    )
    start = 0
    for e, n in enumerate(lengths):
        for t in range(n):
            frame = int(cache.frame[start + t])
            np.testing.assert_allclose(cache.h[frame], latents.h[e, t], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(
                cache.h[frame + 1], latents.h[e, t + 1], rtol=1e-6, atol=1e-6
            )
            np.testing.assert_allclose(
                cache.logits[frame + 1], post[e, t + 1], rtol=1e-6, atol=1e-6
            )
        start += n


def test_acting_filter_samples_the_posterior_by_default(tiny_world):
    from agent.config import load_config
    from agent.distributions import categorical_mode

    assert load_config([], []).leq_pixels.act == "sample"
    world, params = tiny_world
    obs = {"image": np.random.default_rng(2).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)}
    observe = jax.jit(lambda p, o, k: world.observe(p, None, o, None, k)[1].z)
    mode = jax.jit(lambda p, o: world.observe(p, None, o, None)[1].z)(params, obs)
    key = jax.random.PRNGKey(3)
    sampled = observe(params, obs, key)

    @jax.jit
    def posterior(p, o):
        h = world.observe(p, None, o, None)[1].h
        return world.net.posterior(p, h, world.net.encode(p, o["image"]))

    latent = posterior(params, obs)
    expected = jax.nn.one_hot(jax.random.categorical(key, latent), 3)
    np.testing.assert_allclose(sampled, expected, atol=1e-6)
    np.testing.assert_array_equal(mode, categorical_mode(latent))
    assert not np.array_equal(np.asarray(sampled), np.asarray(mode))


def test_monte_carlo_returns_against_a_loop_per_episode():
    from agent.leq_pixels.latent_cache import monte_carlo_returns

    rng = np.random.default_rng(7)
    rewards = rng.normal(size=9)
    masks = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1], np.float32)  # a terminal at row 2
    ends = np.array([0, 0, 1, 0, 0, 1, 0, 0, 1], np.float32)  # episodes of 3, 3 and 3 rows
    got = monte_carlo_returns(rewards, masks, ends, 0.9)
    for start in (0, 3, 6):
        for t in range(start, start + 3):
            expected, scale = 0.0, 1.0
            for k in range(t, start + 3):
                expected += scale * rewards[k]
                scale *= 0.9 * masks[k]
            assert got[t] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow  # compiles the cache's filter and the warm-start step
def test_critic_warm_start_regresses_the_data_returns_and_touches_nothing_else():
    """leq_pixels.critic_warm_start: its steps come between the model and the LEQ phase, read
    the latent cache, move the critic's Q on the data towards the data's Monte-Carlo returns,
    and leave the actor and the value as they were; it needs the cache (starts: episodes)."""
    from agent import replay as replay_lib
    from agent.config import ConfigError
    from agent.leq_pixels.agent import LEQ, WARM
    from agent.programs import Programs
    from tests.conftest import leaves_equal
    from tests.test_agent_contract import ROWS, SPECS, build_agent, synthetic_rows

    spec = SPECS["image"]
    rows = synthetic_rows(spec, ROWS)
    rows["rewards"][:] = 1.0  # returns of 1 to about 11 over the 12-row episodes
    sets = ("leq_pixels.critic_warm_start=200", "leq_pixels.optimizer=adam",
            "leq_pixels.critic_lr=0.003", "leq_pixels.warmup=0")  # fmt: skip
    _, agent = build_agent("leq_pixels", spec, rows, sets)
    assert [agent.phase(s) for s in (0, 199, 200)] == [WARM, WARM, LEQ]  # the model was given
    with pytest.raises(ConfigError, match="starts=episodes"):
        build_agent("leq_pixels", spec, rows, (*sets, "leq_pixels.starts=windows"))

    replay = replay_lib.full(rows)
    state = agent.init(jax.random.PRNGKey(0), spec)
    cache = agent.phase_data(WARM, state, replay, jax.random.PRNGKey(1))
    program = Programs(agent).chunk(WARM, 200)
    assert not agent.loops_on_host(WARM)
    warm, metrics = program(state, cache, jax.random.PRNGKey(2), 0)
    mc = float(np.mean(cache.returns))
    q_before = agent._q_mean(state.critic, *_data_pairs(agent, cache))
    q_after = agent._q_mean(warm.critic, *_data_pairs(agent, cache))
    assert mc > 3.0 and abs(float(jnp.mean(q_before))) < 0.1  # the critic starts at 0
    # the mean Q on the data closes most of its gap to the mean return (the random frames here
    # carry no position in the episode, so the rows' own returns cannot be told apart)
    gap_before, gap_after = abs(float(jnp.mean(q_before)) - mc), abs(float(jnp.mean(q_after)) - mc)
    assert gap_after < gap_before / 3, (gap_before, gap_after)
    assert leaves_equal(warm.actor, state.actor) and leaves_equal(warm.value, state.value)
    assert not leaves_equal(warm.slow_critic, state.slow_critic)  # it follows the critic
    assert np.isfinite(float(metrics["train/warm_critic_loss"]))


def test_the_warm_start_and_the_leq_phase_share_one_latent_cache():
    """The loop builds phase data once per `phase_data_key`: the model phase's (none), then one
    latent cache that the warm start and the LEQ phase both read (the model is frozen)."""
    from types import SimpleNamespace

    from agent.leq_pixels.agent import LEQ, MODEL, WARM, LEQPixelsAgent
    from agent.runner.loop import Loop

    built = []

    def phase_data(phase, state, replay, key):
        built.append(phase)
        return object()

    agent = SimpleNamespace(
        phase_data=phase_data, phase_data_key=lambda p: LEQPixelsAgent.phase_data_key(None, p)
    )
    loop = SimpleNamespace(agent=agent, stacked=False, replay=None, _phase_cache=(None, None))
    run = SimpleNamespace(rng=jax.random.PRNGKey(0), agent=None)
    data = [Loop._phase_data(loop, phase, run) for phase in (MODEL, WARM, WARM, LEQ, LEQ)]
    assert built == [MODEL, WARM]
    assert data[1] is data[2] is data[3] is data[4] and data[0] is not data[1]


def _data_pairs(agent, cache):
    """Every cached row's feature (at its posterior mode) and the data's action there."""
    from agent.world_model.rssm_net import feature

    logits = cache.logits[cache.frame]
    z = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1])
    return feature(cache.h[cache.frame], z), cache.actions
