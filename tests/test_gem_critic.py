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


def test_the_critic_step_benchmark_compares_like_with_like():
    """benchmarks/critic_step.py: the LayerNorm-free GEM critic keeps every product and drops
    only the LayerNorms, and TD3's stacked twins compute what the separate ones do."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "critic_step.py"
    spec = importlib.util.spec_from_file_location("critic_step", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(4, ACT)).astype(np.float32)
    key = jax.random.PRNGKey(0)

    with_ln = critics(HIDDEN).init(key, obs, act)
    without = critics(HIDDEN, layer_norm=False).init(key, obs, act)
    assert set(with_ln) - set(without) == {"layer_0_ln", "layer_1_ln"}
    assert all(np.array_equal(without[n]["w"], with_ln[n]["w"]) for n in without)

    from agent.networks import critics as td3_critics

    separate, stacked = td3_critics(HIDDEN), bench.stacked_td3_critics(HIDDEN)
    want = separate.apply(separate.init(key, obs, act), obs, act)
    got = stacked.apply(stacked.init(key, obs, act), obs, act)
    assert got.shape == want.shape == (4, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
