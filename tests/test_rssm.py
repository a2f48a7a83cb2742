"""The RSSM's distributions and networks against slow references."""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent import distributions as dist
from agent.world_model.rssm import RssmLatent, RssmWorldModel, free_kl, sequence_from_window
from agent.world_model.rssm_config import RssmConfig
from agent.world_model.rssm_net import encoder_stages, gru_update, scale_action
from agent.world_model.rssm_training import init_rssm_training

# One program (not op by op); the same program for every model of TINY's sizes, so the training
# test's initialisation is a hit in the session's compilation cache after the fixture's.
init_training = jax.jit(init_rssm_training, static_argnums=0)

TINY = RssmConfig(
    deter=16, hidden=16, stoch=3, classes=4, prior_heads=3, cnn_depth=4, batch_size=2, length=5
)
IMAGE = (16, 16, 3)


@pytest.fixture(scope="module")
def world():
    model = RssmWorldModel(TINY, 2, IMAGE)
    return model, init_training(model, jax.random.PRNGKey(0)).params  # = model.init(key)


def window(batch=2, length=5, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, length + 1, *IMAGE), dtype=np.uint8)
    return {
        "observations": {"image": frames[:, :-1]},
        "next_observations": {"image": frames[:, 1:]},
        "actions": rng.uniform(-1, 1, (batch, length, 2)).astype(np.float32),
        "rewards": rng.uniform(0, 1, (batch, length)).astype(np.float32),
        "masks": np.ones((batch, length), np.float32),
    }


# --- distributions ---------------------------------------------------------------------


def test_symlog_symexp_invert():
    x = jnp.array([-1e4, -3.0, -0.5, 0.0, 0.2, 7.0, 1e5])
    np.testing.assert_allclose(dist.symexp(dist.symlog(x)), x, rtol=1e-5)
    assert float(dist.symlog(jnp.array(np.e - 1))) == pytest.approx(1.0)


def test_twohot_round_trip_and_weights():
    x = jnp.array([-300.0, -1.5, 0.0, 0.37, 12.0, 4000.0])

    @jax.jit  # one program, not op by op
    def encode_and_decode(x):
        bins = dist.twohot_bins(255)
        enc = dist.twohot(x, bins)
        # a head whose softmax equals the encoding predicts the value back
        return enc, dist.symexp(enc @ bins), dist.twohot_mean(jnp.log(enc + 1e-30), bins)

    enc, decoded, head_mean = map(np.asarray, encode_and_decode(x))
    np.testing.assert_allclose(enc.sum(-1), 1.0, rtol=1e-6)
    assert int((enc > 0).sum(-1).max()) <= 2  # at most two neighbouring bins
    np.testing.assert_allclose(decoded, x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(head_mean, x, rtol=1e-4, atol=1e-5)


def test_twohot_clips_outside_the_bins():
    encode = jax.jit(lambda x: dist.twohot(x, dist.twohot_bins(5, limit=2.0)))  # not op by op
    enc = encode(jnp.array([1e9, -1e9]))
    np.testing.assert_allclose(enc, [[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], atol=1e-6)


def test_unimix_mixes_with_uniform():
    logits = jnp.array([[10.0, 0.0, -5.0, 2.0]])
    probs = jnp.exp(dist.unimix_logits(logits, 0.01))
    expected = 0.99 * jax.nn.softmax(logits) + 0.01 / 4
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert float(probs.min()) >= 0.01 / 4 - 1e-7


def test_categorical_kl_against_brute_force_sum():
    rng = np.random.default_rng(1)
    lp, lq = rng.normal(size=(1, 3, 3, 5)), rng.normal(size=(1, 3, 3, 5))
    got = np.asarray(dist.categorical_kl(jnp.asarray(lp), jnp.asarray(lq)))
    for b in range(3):
        # the factorised KL equals the KL of the joint over all C^S outcomes
        p = np.exp(lp[0, b]) / np.exp(lp[0, b]).sum(-1, keepdims=True)
        q = np.exp(lq[0, b]) / np.exp(lq[0, b]).sum(-1, keepdims=True)
        brute = 0.0
        for combo in itertools.product(range(5), repeat=3):
            pj = np.prod([p[s, c] for s, c in enumerate(combo)])
            qj = np.prod([q[s, c] for s, c in enumerate(combo)])
            brute += pj * np.log(pj / qj)
        assert got[0, b] == pytest.approx(brute, rel=1e-5)
    assert np.all(got >= -1e-6)


def test_straight_through_sample_is_one_hot_with_probability_gradient():
    logits = jnp.array([[0.3, -1.0, 2.0], [1.0, 1.0, 1.0]])
    key = jax.random.PRNGKey(3)
    sample = jax.jit(dist.straight_through_sample)(key, logits)  # not op by op
    np.testing.assert_allclose(sample.sum(-1), 1.0, atol=1e-6)
    assert set(np.unique(np.round(np.asarray(sample), 6))) <= {0.0, 1.0}
    weights = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    grad = jax.jit(jax.grad(lambda lg: jnp.sum(weights * dist.straight_through_sample(key, lg))))(
        logits
    )
    expected = jax.jit(jax.grad(lambda lg: jnp.sum(weights * jax.nn.softmax(lg, -1))))(logits)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_straight_through_samples_follow_the_probabilities():
    logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draws = jax.jit(jax.vmap(lambda k: dist.straight_through_sample(k, logits)))(keys)
    np.testing.assert_allclose(draws.mean(0)[0], [0.7, 0.2, 0.1], atol=0.03)


def test_bernoulli_log_prob_soft_labels():
    logit, target = jnp.array(0.8), jnp.array(0.997)
    p = 1 / (1 + np.exp(-0.8))
    assert float(dist.bernoulli_log_prob(logit, target)) == pytest.approx(
        0.997 * np.log(p) + 0.003 * np.log(1 - p), rel=1e-6
    )


# --- networks --------------------------------------------------------------------------


def test_gru_update_against_hand_computation():
    h = jnp.array([0.5, -0.25])
    gates = jnp.array([0.0, 2.0, 1.0, -1.0, 3.0, 0.0])  # r = (0, 2), c = (1, -1), u = (3, 0)
    sig = lambda x: 1 / (1 + np.exp(-x))
    reset = sig(np.array([0.0, 2.0]))
    cand = np.tanh(reset * np.array([1.0, -1.0]))
    update = sig(np.array([3.0, 0.0]) - 1.0)
    expected = update * cand + (1 - update) * np.array([0.5, -0.25])
    np.testing.assert_allclose(gru_update(h, gates), expected, rtol=1e-6)


def test_actions_enter_the_gru_bounded():
    a = jnp.array([0.5, -3.0, 2.0, -1.0])
    np.testing.assert_allclose(scale_action(a), [0.5, -1.0, 1.0, -1.0])


def test_encoder_stages_need_powers_of_two():
    assert encoder_stages(64) == 4 and encoder_stages(16) == 2
    with pytest.raises(ValueError, match="84"):
        encoder_stages(84)


def test_sequence_from_window_adds_the_last_next_frame():
    w = window(length=4)
    seq = sequence_from_window(w)
    assert seq["images"].shape == (2, 5, *IMAGE)
    np.testing.assert_array_equal(seq["images"][:, 4], w["next_observations"]["image"][:, -1])
    np.testing.assert_array_equal(seq["images"][:, :4], w["observations"]["image"])


def test_free_kl_is_elementwise():
    np.testing.assert_allclose(free_kl(jnp.array([0.2, 1.0, 3.0]), 1.0), [1.0, 1.0, 3.0])


def test_loss_finite_and_kl_over_every_head(world):
    model, params = world
    # without free nats (below them the KL terms are constant), every head gets a gradient
    strict = RssmWorldModel(dataclasses.replace(TINY, free_nats=0.0), 2, IMAGE)
    batch, key = window(), jax.random.PRNGKey(1)

    @jax.jit  # one compiled program for the loss and the gradient, not op by op
    def loss_and_strict_grads(params):
        grads = jax.grad(lambda p: strict.loss(p, batch, key)[0])(params)
        return model.loss(params, batch, key), grads

    (loss, metrics), grads = loss_and_strict_grads(params)
    assert np.isfinite(float(loss))
    heads = [float(metrics[f"kl_head{k}"]) for k in range(TINY.prior_heads)]
    assert float(metrics["kl"]) == pytest.approx(np.mean(heads), rel=1e-5)
    prior_grad = grads["rssm"]["prior_w1"]
    assert np.all(np.abs(np.asarray(prior_grad)).reshape(TINY.prior_heads, -1).sum(-1) > 0)


def test_imagination_draws_one_prior_head_per_step(world):
    model, params = world
    latent = RssmLatent(jnp.ones((6, TINY.deter)) * 0.1, jnp.zeros((6, TINY.stoch, TINY.classes)))
    action = jnp.zeros((6, 2))
    # compiled once each (not op by op) for the 40 keys
    all_heads = jax.jit(lambda p: model.net.prior(p, model.net.core(p, *latent, action), None))(
        params
    )  # [6, K, S, C]
    imagine_step = jax.jit(model.imagine_step)
    split, sample = jax.jit(jax.random.split), jax.jit(dist.straight_through_sample)
    draw_head = jax.jit(lambda k: jax.random.randint(k, (), 0, TINY.prior_heads))
    seen = set()
    for i in range(40):
        key = jax.random.PRNGKey(i)
        head_key, z_key = split(key)
        head = int(draw_head(head_key))
        seen.add(head)
        # with the same z key, the sample must come from head `head`'s logits, for every row
        expected = sample(z_key, all_heads[:, head])
        got, reward, cont = imagine_step(params, latent, action, key)
        np.testing.assert_allclose(got.z, expected, atol=1e-6)
        assert reward.shape == (6,) and np.all((cont > 0) & (cont < 1))
    assert seen == set(range(TINY.prior_heads))


def test_observe_matches_the_sequence_filter_in_mode(world):
    model, params = world
    w = window(batch=1, length=3)
    images = sequence_from_window(w)["images"]
    observe, core = jax.jit(model.observe), jax.jit(model.net.core)  # not op by op
    carry, latent = observe(params, None, {"image": images[:, 0]}, None)
    assert latent.h.shape == (1, TINY.deter)
    np.testing.assert_allclose(latent.z.sum(-1), 1.0)
    carry, latent2 = observe(params, carry, {"image": images[:, 1]}, w["actions"][:, 0])
    h_expected = core(params, latent.h, latent.z, w["actions"][:, 0])
    np.testing.assert_allclose(latent2.h, h_expected, rtol=1e-5)


def test_training_lowers_the_loss_on_a_fixed_batch():
    from agent.world_model.rssm_training import rssm_update

    model = RssmWorldModel(dataclasses.replace(TINY, lr=3e-3), 2, IMAGE)
    state = init_training(model, jax.random.PRNGKey(4))
    batch = window(seed=5)
    # frames of one colour each, which a tiny decoder can learn within a few steps
    shade = np.arange(2 * 6, dtype=np.uint8).reshape(2, 6, 1, 1, 1) * 20
    frames = np.broadcast_to(shade, (2, 6, *IMAGE)).copy()
    batch["observations"]["image"], batch["next_observations"]["image"] = (
        frames[:, :-1],
        frames[:, 1:],
    )
    update = jax.jit(lambda s, k: rssm_update(model, s, batch, k))
    first = None
    for i in range(40):
        state, metrics = update(state, jax.random.PRNGKey(100 + i))
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.5 * first
    assert np.isfinite(float(metrics["grad_norm"]))


def test_open_loop_predicts_every_step_after_the_context(world):
    from agent.world_model.rssm_training import open_loop, open_loop_error

    model, params = world
    seq = sequence_from_window(window(length=6))
    roll = jax.jit(open_loop, static_argnums=(0, 4))  # one program, not op by op
    pred = roll(model, params, seq["images"], seq["actions"], 3, jax.random.PRNGKey(0))
    assert pred.shape == (2, 4, *IMAGE)
    assert float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0
    err = jax.jit(open_loop_error, static_argnums=2)(pred, seq["images"], 3)
    assert err.shape == (4,) and np.all(np.isfinite(np.asarray(err)))


def test_upsample_places_each_channel_group_as_a_pixel_block():
    import haiku as hk

    from agent.world_model.rssm_net import upsample

    x = jnp.arange(2 * 3 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 3, 2)
    net = hk.without_apply_rng(hk.transform(lambda x: upsample(x, 5, "up")))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), x)  # one program each, not op by op
    out = np.asarray(jax.jit(net.apply)(params, x))
    conv = hk.without_apply_rng(
        hk.transform(lambda x: hk.Conv2D(20, 2, padding="SAME", name="up")(x))
    )
    y = np.asarray(jax.jit(conv.apply)(params, x)).reshape(2, 3, 3, 2, 2, 5)
    assert out.shape == (2, 6, 6, 5)
    for i, j, di, dj in itertools.product(range(3), range(3), range(2), range(2)):
        np.testing.assert_allclose(out[:, 2 * i + di, 2 * j + dj], y[:, i, j, di, dj], rtol=1e-6)


@pytest.mark.slow
def test_model_stage_debug_run_reports_open_loop_video_and_resumes_bit_identical(
    tmp_path, pixel_data_dir
):
    from tests.conftest import pixel_debug_run_and_resume

    sets = ["train.steps=20", "train.updates_per_call=5", "train.log_every=5"]
    sets += ["train.checkpoint_every=10", "train.eval_every=10"]
    result, straight, _ = pixel_debug_run_and_resume(
        "model_pixels_cartpole_swingup", pixel_data_dir, tmp_path, sets, kill_after=10
    )
    assert np.isfinite(result["model/open_loop_mse"])
    assert sorted(p.name for p in (straight / "videos").glob("*.gif")) == [
        "model_open_loop_000000010.gif",
        "model_open_loop_000000020.gif",
    ]
