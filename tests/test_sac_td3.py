"""SAC's and TD3's losses against slow references (loops, scipy, finite differences); the
shared ones (tanh-Gaussian, twin critic loss, TD3 targets) are in tests/test_shared_maths.py."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from agent.config import load_config
from agent.distributions import gaussian_log_prob, tanh_log_det
from agent.losses import twin_critic_loss
from agent.networks import tanh_gaussian_actor
from agent.sac import losses as sac
from agent.td3 import losses as td3
from tests.conftest import cli

RNG = np.random.default_rng(0)


def test_tanh_log_det_matches_the_naive_formula():
    u = RNG.normal(scale=2.0, size=(16, 3))
    naive = np.log(1.0 - np.tanh(u) ** 2).sum(-1)
    np.testing.assert_allclose(tanh_log_det(jnp.asarray(u)), naive, rtol=1e-5, atol=1e-5)
    # stable where the naive form is -inf in float32
    assert np.isfinite(float(tanh_log_det(jnp.full((1, 1), 30.0))[0]))


def test_gaussian_log_prob_matches_scipy():
    u, mean = RNG.normal(size=(8, 4)), RNG.normal(size=(8, 4))
    log_std = RNG.uniform(-2, 1, size=(8, 4))
    expected = stats.norm.logpdf(u, mean, np.exp(log_std)).sum(-1)
    got = gaussian_log_prob(jnp.asarray(u), jnp.asarray(mean), jnp.asarray(log_std))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_soft_targets_and_critic_loss_match_loops():
    b = 6
    r, m = RNG.normal(size=b), (RNG.uniform(size=b) > 0.3).astype(float)
    next_q, next_lp = RNG.normal(size=(b, 2)), RNG.normal(size=b)
    alpha, gamma = 0.2, 0.99
    y = sac.soft_targets(*(jnp.asarray(x) for x in (r, m, next_q, next_lp)), alpha, gamma)
    for i in range(b):
        expected = r[i] + gamma * m[i] * (min(next_q[i]) - alpha * next_lp[i])
        assert float(y[i]) == pytest.approx(expected, rel=1e-5)
    q = RNG.normal(size=(b, 2))
    loop = sum(np.mean([(q[i, k] - float(y[i])) ** 2 for i in range(b)]) for k in range(2))
    assert float(twin_critic_loss(jnp.asarray(q), y)) == pytest.approx(loop, rel=1e-5)


def test_sac_actor_loss_uses_the_smaller_critic_and_the_entropy_term():
    q, log_prob = RNG.normal(size=(5, 2)), RNG.normal(size=5)
    expected = np.mean([0.3 * log_prob[i] - min(q[i]) for i in range(5)])
    got = sac.actor_loss(jnp.asarray(q), jnp.asarray(log_prob), 0.3)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_temperature_loss_gradient_moves_alpha_towards_the_target_entropy():
    """d L / d log alpha = -mean(log pi + H_target): gradient descent raises alpha while the
    policy's entropy -E[log pi] is below the target entropy and lowers it while above."""
    log_prob = jnp.asarray(RNG.normal(loc=1.0, size=32))  # entropy about -1
    for target, sign in ((0.0, -1.0), (-2.0, 1.0)):  # target entropy above / below it
        grad = jax.grad(sac.temperature_loss)(jnp.float32(0.1), log_prob, target)
        assert float(grad) == pytest.approx(-float(jnp.mean(log_prob + target)), rel=1e-5)
        assert np.sign(float(grad)) == sign
    # log pi is a constant of this loss
    dlp = jax.grad(lambda lp: sac.temperature_loss(jnp.float32(0.1), lp, 0.0))(log_prob)
    np.testing.assert_array_equal(dlp, 0.0)


def test_td3_actor_loss():
    q = RNG.normal(size=(5, 2))
    assert float(td3.actor_loss(jnp.asarray(q))) == pytest.approx(-q[:, 0].mean(), rel=1e-5)


def test_presets_exist_for_every_task():
    for method in ("sac", "td3"):
        for task in ("hopper", "walker2d", "halfcheetah", "ant", "walker_walk", "cheetah_run"):
            cfg = load_config([f"{method}_{task}"], [])
            assert cfg.method == method and cfg.train.steps == 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["sac_hopper", "td3_hopper"])
def test_debug_run(preset, tmp_path):
    """400 online steps on hopper: random actions until learning_starts=200, then updates that
    raise the critic's Q (hopper pays about 1 a step; here +0.44 for TD3, +2.3 for SAC);
    snapshots of the actor that moved."""
    method = preset.split("_")[0]
    args = ["train", "--config", preset, "--config", "debug", "--logdir", str(tmp_path)]
    proc = cli([*args, "--set", f"{method}.snapshot_every=200", "--quiet"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["step"] == 400 and np.isfinite(result["eval/return"])
    assert result["eval/episode_length"] >= 1

    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = {x["step"]: x for x in logged if "train/episodes" in x}
    assert sorted(train) == [100, 200, 300, 400]
    assert "train/critic_loss" not in train[100]  # nothing learned before learning_starts
    episodes = [train[s]["train/episodes"] for s in sorted(train)]
    assert episodes == sorted(episodes) and episodes[0] >= 1  # the collector finishes episodes
    for step in (200, 300, 400):
        for key in ("train/critic_loss", "train/actor_loss", "train/q_mean"):
            assert np.isfinite(train[step][key]), (step, key)
    assert train[400]["train/q_mean"] > train[200]["train/q_mean"] + 0.25
    if method == "sac":  # the temperature follows its loss: entropy above the target lowers it
        alphas = [train[s]["train/alpha"] for s in (200, 300, 400)]
        assert alphas == sorted(alphas, reverse=True) and alphas[-1] < 1.0

    saved = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert saved == ["actor_00000200.npz", "actor_00000400.npz"]
    with (
        np.load(tmp_path / "snapshots" / saved[0]) as first,
        np.load(tmp_path / "snapshots" / saved[1]) as last,
    ):
        assert sorted(first.files) == sorted(last.files)
        assert all(np.isfinite(last[k]).all() for k in last.files)
        assert any(not np.array_equal(first[k], last[k]) for k in first.files)


def test_numpy_tanh_gaussian_actor_matches_the_haiku_actor():
    """The collector's NumPy SAC actor: same (mean, log_std) as the haiku network, and its
    training-time sample is tanh(mean + exp(log_std) eps) with eps from the collector's rng."""
    from envs.datasets.trained_policies import TanhGaussianActor

    net = tanh_gaussian_actor([16, 8], 3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 11)))
    flat = {f"{m}/{n}": np.asarray(v) for m, leaves in params.items() for n, v in leaves.items()}
    actor = TanhGaussianActor(flat)
    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32) * 3.0
    mean, log_std = net.apply(params, obs)
    got_mean, got_log_std = actor.distribution(obs)
    np.testing.assert_allclose(got_mean, mean, atol=1e-5)
    np.testing.assert_allclose(got_log_std, log_std, atol=1e-5)
    np.testing.assert_allclose(actor(obs), np.tanh(mean), atol=1e-5)
    sample = actor.act(obs[0], np.random.default_rng(7))
    eps = np.random.default_rng(7).standard_normal(3)
    np.testing.assert_allclose(sample, np.tanh(mean[0] + np.exp(log_std[0]) * eps), atol=1e-5)
    assert sample.dtype == np.float32
