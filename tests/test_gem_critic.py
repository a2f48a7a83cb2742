"""GEM's critic: where the action enters (the official critic and the earlier form), pinned by
parameter shapes and by a forward pass written out by hand in NumPy."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agent.gem.networks import critics

OBS, ACT, HIDDEN = 5, 3, (8, 6)


def _layer_norm(x, scale, offset, eps=1e-5):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + offset


def _by_hand(p: dict, k: int, obs, act, form: str):
    """Q_k(s, a) of critic k, layer by layer."""
    q = lambda name: {n: np.asarray(v[k], np.float64) for n, v in p[name].items()}  # noqa: E731
    dense0, ln0 = q("layer_0_dense"), q("layer_0_ln")
    if form == "official":
        x = np.concatenate([obs, act], -1) @ dense0["w"] + dense0["b"]
        x = np.maximum(_layer_norm(np.concatenate([x, act], -1), ln0["scale"], ln0["offset"]), 0)
    else:
        x = np.maximum(_layer_norm(obs @ dense0["w"] + dense0["b"], ln0["scale"], ln0["offset"]), 0)
        x = np.concatenate([x, act], -1)
    dense1, ln1, out = q("layer_1_dense"), q("layer_1_ln"), q("out")
    x = np.maximum(_layer_norm(x @ dense1["w"] + dense1["b"], ln1["scale"], ln1["offset"]), 0)
    return x @ out["w"] + out["b"]


@pytest.mark.parametrize(
    "form, first_in, first_ln",
    [("official", OBS + ACT, HIDDEN[0] + ACT), ("late_action", OBS, HIDDEN[0])],
)
def test_the_action_enters_where_the_form_says(form, first_in, first_ln):
    net = critics(HIDDEN, form=form)
    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(7, OBS)), rng.uniform(-1, 1, size=(7, ACT))
    # one compiled program each (op by op, four stacked critics compile many small kernels)
    init, apply = jax.jit(net.init), jax.jit(net.apply)
    params = init(jax.random.PRNGKey(0), obs.astype(np.float32), act.astype(np.float32))
    shapes = {name: {k: v.shape for k, v in leaves.items()} for name, leaves in params.items()}
    # Four critics stacked on the leading axis of every leaf.
    assert shapes["layer_0_dense"] == {"w": (4, first_in, HIDDEN[0]), "b": (4, HIDDEN[0])}
    assert shapes["layer_0_ln"] == {"scale": (4, first_ln), "offset": (4, first_ln)}
    assert shapes["layer_1_dense"]["w"] == (4, HIDDEN[0] + ACT, HIDDEN[1])
    assert shapes["out"]["w"] == (4, HIDDEN[1], 1)
    assert not np.allclose(params["layer_0_dense"]["w"][0], params["layer_0_dense"]["w"][1])
    # Make LayerNorm's own parameters matter, so the check sees where they apply.
    params = jax.tree.map(lambda v: v + rng.normal(size=v.shape).astype(v.dtype) * 0.3, params)
    got = np.asarray(apply(params, obs.astype(np.float32), act.astype(np.float32)))
    want = np.concatenate([_by_hand(params, k, obs, act, form) for k in range(4)], -1)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
