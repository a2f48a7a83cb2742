"""The fast formulation against the plain one: `conv.conv2d` against `lax.conv` (values and both
gradients), and the RSSM's loss, every parameter gradient and the sequence filter with
`rssm.formulation` fast against plain."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent.world_model import conv
from agent.world_model.rssm import RssmWorldModel, sequence_from_window
from agent.world_model.rssm_config import RssmConfig
from tests.test_rssm import IMAGE, window

RTOL, ATOL = 1e-4, 1e-5

# (batch, size, in channels, out channels, kernel, stride, padding): the RSSM's encoder (4x4
# stride 2) and decoder (2x2 stride 1) layers at small sizes and channel counts of the model,
# "VALID", and shapes the stride-1 rewrite leaves to XLA's gradient (odd kernel, stride 3).
SHAPES = [
    (3, 16, 3, 4, 4, 2, "SAME"),
    (2, 8, 16, 32, 4, 2, "SAME"),
    (2, 4, 8, 12, 2, 1, "SAME"),
    (2, 8, 4, 3, 2, 1, "SAME"),
    (2, 10, 3, 5, 4, 2, "VALID"),
    (2, 9, 3, 4, 3, 1, "SAME"),
    (2, 7, 2, 3, 3, 2, "SAME"),
    (2, 12, 2, 3, 6, 3, "SAME"),
]


def test_conv2d_values_and_gradients_equal_lax_conv():
    rng = np.random.default_rng(0)
    cases = []
    for n, size, ci, co, k, s, padding in SHAPES:
        x = rng.normal(size=(n, size, size, ci)).astype(np.float32)
        w = (rng.normal(size=(k, k, ci, co)) / k).astype(np.float32)
        out = conv.plain_conv2d(x, w, s, padding).shape
        cases.append((x, w, rng.normal(size=out).astype(np.float32)))

    @jax.jit  # one program for every shape and both forms (compiled once, not op by op)
    def outputs_and_gradients(cases):
        results = []
        for (_, _, _, _, _, s, padding), (x, w, dy) in zip(SHAPES, cases, strict=True):
            for f in (conv.conv2d, conv.plain_conv2d):
                y, vjp = jax.vjp(lambda x, w, f=f, s=s, p=padding: f(x, w, s, p), x, w)
                results.append((y, *vjp(dy)))
        return results

    results = outputs_and_gradients(cases)
    for i, shape in enumerate(SHAPES):
        fast, plain = results[2 * i], results[2 * i + 1]
        for name, a, b in zip(("y", "dx", "dw"), fast, plain, strict=True):
            assert a.shape == b.shape, (shape, name)
            scale = float(jnp.abs(b).max())
            np.testing.assert_allclose(
                a, b, rtol=RTOL, atol=ATOL * scale, err_msg=f"{shape} {name}"
            )


def test_space_to_depth_rewrites_a_strided_convolution_as_a_stride_1_one():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(4, 4, 3, 5)), jnp.float32)
    np.testing.assert_array_equal(conv.depth_to_space(conv.space_to_depth(x, 2), 2), x)
    np.testing.assert_array_equal(conv.unstrided_kernel(conv.strided_kernel(w, 2), 2), w)
    # X[n, p, q, (da, db, c)] = x[n, 2 p + da, 2 q + db, c]
    blocks = np.asarray(conv.space_to_depth(x, 2)).reshape(2, 4, 4, 2, 2, 3)
    np.testing.assert_array_equal(blocks[:, 1, 2, 1, 0], np.asarray(x)[:, 3, 4])

    @jax.jit  # one program, not op by op
    def both(x, w):
        pads = ((1, 1), (1, 1))  # "SAME" for k 4, s 2 on an even size
        xs = conv.space_to_depth(jnp.pad(x, ((0, 0), *pads, (0, 0))), 2)
        stride_1 = conv.plain_conv2d(xs, conv.strided_kernel(w, 2), 1, "VALID")
        return stride_1, conv.plain_conv2d(x, w, 2, "SAME")

    np.testing.assert_allclose(*both(x, w), rtol=RTOL, atol=ATOL)
    assert conv.same_pads(64, 4, 2) == (1, 1) and conv.same_pads(16, 2, 1) == (0, 1)


# --- the world model ---------------------------------------------------------------------------

TINY = RssmConfig(
    deter=16, hidden=16, stoch=3, classes=4, prior_heads=3, cnn_depth=4, batch_size=2, length=5
)


@pytest.fixture(scope="module")
def models():
    """(fast model, plain model, plain's initial parameters, fast's) on TINY's sizes."""
    # free_nats 0: every KL term (and so every prior head) has a gradient
    cfg = dataclasses.replace(TINY, free_nats=0.0)
    fast = RssmWorldModel(cfg, 2, IMAGE)
    plain = RssmWorldModel(dataclasses.replace(cfg, formulation="plain"), 2, IMAGE)
    # one program for both initialisations, not op by op
    params, fast_params = jax.jit(lambda k: (plain.init(k), fast.init(k)))(jax.random.PRNGKey(0))
    return fast, plain, params, fast_params


def _perturbed(params: dict) -> dict:
    """`params` with random reward-head weights (initially zero, which would leave the reward
    head's hidden layer without a gradient)."""
    params = dict(params)
    out = dict(params["rssm/~reward/reward_out"])
    out["w"] = 0.1 * jax.random.normal(jax.random.PRNGKey(1), out["w"].shape)
    params["rssm/~reward/reward_out"] = out
    return params


def _assert_trees_close(a, b, what: str) -> None:
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b), what
    for (path, x), y in zip(flat_a, flat_b, strict=True):
        scale = float(np.abs(np.asarray(y)).max()) or 1.0
        np.testing.assert_allclose(
            x, y, rtol=RTOL, atol=ATOL * scale, err_msg=f"{what} {jax.tree_util.keystr(path)}"
        )


def test_both_formulations_make_the_same_parameters(models):
    fast, _, params, fast_params = models
    assert jax.tree.structure(fast_params) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(fast_params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "formulation" not in fast.file_config()


def test_loss_and_every_parameter_gradient_equal_between_formulations(models):
    fast, plain, params, _ = models
    params = _perturbed(params)
    batch, key = window(), jax.random.PRNGKey(1)

    @jax.jit  # one program for both, not op by op
    def losses_and_grads(params):
        return [jax.value_and_grad(m.loss, has_aux=True)(params, batch, key) for m in (fast, plain)]

    ((fast_loss, fast_metrics), fast_grads), ((loss, metrics), grads) = losses_and_grads(params)
    np.testing.assert_allclose(fast_loss, loss, rtol=RTOL)
    _assert_trees_close(fast_metrics, metrics, "metric")
    _assert_trees_close(fast_grads, grads, "gradient of")
    # every parameter gets a gradient (the comparison is not vacuous)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_observe_sequence_equal_between_formulations(models):
    fast, plain, params, _ = models
    seq = sequence_from_window(window(length=4, seed=3))
    key = jax.random.PRNGKey(2)

    @jax.jit  # one program, not op by op
    def both(params):
        return [
            m.observe_sequence(params, seq["images"], seq["actions"], key) for m in (fast, plain)
        ]

    (latents, post, prior), (latents_p, post_p, prior_p) = both(params)
    assert prior.shape == (2, 5, TINY.prior_heads, TINY.stoch, TINY.classes)
    # the same samples (straight-through one-hots: 1 to the last bit of p - sg(p))
    np.testing.assert_allclose(latents.z, latents_p.z, atol=1e-6)
    _assert_trees_close((latents.h, post, prior), (latents_p.h, post_p, prior_p), "filter")
