"""Tests of the probabilistic dynamics ensemble behind the `WorldModel`
protocol: fitting, imagination (`imagine_step`: next latent, reward in training units,
continue) and storage in the checkpoint format (`agent.runner.world_models`).

All tests share one small config so that jitted functions compile once per shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent import checkpoint
from agent.config import ConfigError
from agent.protocol import WorldModel
from agent.runner.world_models import load_world_model, save_world_model
from agent.world_model import EnsembleConfig, EnsembleWorldModel, ensemble_step
from agent.world_model.ensemble_net import (
    ensemble_loss,
    init_net,
    member_mse,
    soft_clamp_logvar,
)
from agent.world_model.ensemble_training import (
    epoch_batches,
    improved_members,
    inputs_and_targets,
    select_elites,
)
from agent.world_model.scaler import apply_scaler, fit_scaler
from envs.datasets.offline_data import OfflineData
from tests.conftest import leaves_equal

OBS_DIM, ACT_DIM, N = 3, 2, 2000
CONFIG = EnsembleConfig(
    hidden_sizes=(32, 32),
    weight_decays=(2.5e-5, 5e-5, 1e-4),
    batch_size=64,
    learning_rate=3e-3,
    max_epochs=60,
)


def linear_system(n: int, seed: int) -> OfflineData:
    """s' = s + 0.1 (A s + B a), r = c.s + d.a; reward stored as 2 r_raw - 1 to test inversion."""
    rng = np.random.default_rng(seed)
    sys_rng = np.random.default_rng(1234)  # the same system for every seed
    a_mat = sys_rng.normal(size=(OBS_DIM, OBS_DIM))
    b_mat = sys_rng.normal(size=(ACT_DIM, OBS_DIM))
    c, d = sys_rng.normal(size=OBS_DIM), sys_rng.normal(size=ACT_DIM)
    obs = rng.normal(size=(n, OBS_DIM))
    act = rng.uniform(-1, 1, size=(n, ACT_DIM))
    nxt = obs + 0.1 * (obs @ a_mat + act @ b_mat)
    raw_r = obs @ c + act @ d
    zeros = np.zeros(n, np.float32)
    f32 = lambda x: x.astype(np.float32)
    return OfflineData(
        f32(obs), f32(act), f32(2.0 * raw_r - 1.0), f32(nxt), zeros, zeros, zeros, 2.0, -1.0
    )


@pytest.fixture(scope="module")
def model() -> EnsembleWorldModel:
    return EnsembleWorldModel(OBS_DIM, ACT_DIM, CONFIG)


@pytest.fixture(scope="module")
def trained(model):
    logs = []
    params = model.fit(linear_system(N, 0), jax.random.PRNGKey(0), lambda s, m: logs.append(m))
    return params, logs


# ----------------------------------------------------------------------------- pure functions


def test_fit_scaler_constant_column():
    x = np.random.default_rng(0).normal(size=(100, 3)) * [1.0, 5.0, 0.0] + [0.0, 2.0, 7.0]
    mean, std = fit_scaler(x)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std[:2], x.std(0)[:2], rtol=1e-6)
    assert std[2] == 1.0
    z = np.asarray(apply_scaler(x, mean, std))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1.0, rtol=1e-5)


def test_soft_clamp_logvar_bounds():
    lo, hi = jnp.float32(-10.0), jnp.float32(0.5)
    x = jnp.linspace(-100.0, 100.0, 2001)
    clamp = jax.jit(soft_clamp_logvar)  # one program per shape, not op by op
    y = clamp(x, lo, hi)
    # The min-bound softplus lifts the top by softplus(lo - hi) = 3e-5: bounds are soft.
    lo_np, hi_np, y_np = np.asarray(lo), np.asarray(hi), np.asarray(y)
    assert bool(np.all(y_np >= lo_np)) and bool(np.all(y_np <= hi_np + np.float32(1e-4)))
    assert bool(np.all(np.diff(y_np) >= 0))
    np.testing.assert_allclose(clamp(jnp.float32(-4.0), lo, hi), -4.0, atol=0.02)
    np.testing.assert_allclose(y[-1], hi, atol=1e-4)
    np.testing.assert_allclose(y[0], lo, atol=1e-4)
    # The bounds are learnable: far above the top, the output follows max_logvar.
    g = jax.jit(jax.grad(lambda h: soft_clamp_logvar(jnp.float32(50.0), lo, h)))(hi)
    np.testing.assert_allclose(g, 1.0, atol=1e-4)


def _numpy_loss(net, z, y, wds, coef):
    """Slow reference: loop over members and layers."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    softplus = lambda v: np.log1p(np.exp(v))
    layers = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in net["layers"]]
    lo, hi = np.asarray(net["min_logvar"], np.float64), np.asarray(net["max_logvar"], np.float64)
    total = 0.0
    for k in range(z.shape[0]):
        h = z[k]
        for layer in layers[:-1]:
            h = h @ layer["w"][k] + layer["b"][k]
            h = h * sig(h)
        out = h @ layers[-1]["w"][k] + layers[-1]["b"][k]
        mean, lv = out[:, : y.shape[-1]], out[:, y.shape[-1] :]
        lv = hi - softplus(hi - lv)
        lv = lo + softplus(lv - lo)
        total += np.mean((mean - y[k]) ** 2 * np.exp(-lv)) + np.mean(lv)
    for layer, wd in zip(layers, wds, strict=True):
        total += 0.5 * wd * np.sum(layer["w"] ** 2)
    return total + coef * hi.sum() - coef * lo.sum()


def test_loss_matches_numpy_reference():
    cfg = EnsembleConfig(num_members=3, num_elites=2, hidden_sizes=(4, 5), weight_decays=(1, 2, 3))
    # one compiled program each, not op by op
    net = jax.jit(init_net, static_argnums=(1, 2, 3))(jax.random.PRNGKey(1), 3, 2, cfg)
    rng = np.random.default_rng(0)
    net["max_logvar"] = jnp.asarray(rng.normal(size=2), jnp.float32)
    net["min_logvar"] = jnp.asarray(rng.normal(size=2) - 5, jnp.float32)
    net["layers"][-1]["b"] = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    z = rng.normal(size=(3, 6, 3)).astype(np.float32)
    y = rng.normal(size=(3, 6, 2)).astype(np.float32)
    loss, info = jax.jit(ensemble_loss, static_argnums=3)(net, jnp.asarray(z), jnp.asarray(y), cfg)
    expected = _numpy_loss(net, z.astype(np.float64), y.astype(np.float64), (1, 2, 3), 0.01)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert set(info) == {"loss", "nll", "weight_decay", "logvar_bounds"}


def test_improved_members_uses_relative_threshold():
    best = jnp.array([1.0, 1.0, jnp.inf, 1.0])
    new = jnp.array([0.995, 0.98, 5.0, jnp.nan])
    assert improved_members(best, new, 0.01).tolist() == [False, True, True, False]


def test_epoch_batches_cover_every_row_in_order():
    idx = jnp.arange(20).reshape(2, 10)
    batches = jax.jit(epoch_batches, static_argnums=1)(idx, 4)  # one program, not op by op
    assert batches.shape == (3, 2, 4)
    flat = np.asarray(batches.transpose(1, 0, 2).reshape(2, -1))
    np.testing.assert_array_equal(flat[:, :10], np.asarray(idx))
    np.testing.assert_array_equal(flat[:, 10:], np.asarray(idx)[:, :2])


def test_inputs_and_targets_use_raw_rewards():
    data = linear_system(10, 1)
    x, y = inputs_and_targets(data)
    np.testing.assert_allclose(x, np.concatenate([data.observations, data.actions], 1))
    np.testing.assert_allclose(y[:, :-1], data.next_observations - data.observations)
    np.testing.assert_allclose(y[:, -1], (data.rewards + 1.0) / 2.0, rtol=1e-6)


def test_config_validation():
    with pytest.raises(KeyError, match="bogus"):
        EnsembleConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="weight_decays"):
        EnsembleConfig(hidden_sizes=(8,))
    cfg = EnsembleConfig.from_dict({"hidden_sizes": [8], "weight_decays": [0.1, 0.2]})
    assert cfg.hidden_sizes == (8,) and hash(cfg) == hash(EnsembleConfig.from_dict(cfg.to_dict()))


# ----------------------------------------------------------------------------- training


def test_training_learns_linear_system(trained):
    params, logs = trained
    _, y = inputs_and_targets(linear_system(N, 5))
    epoch_logs, final = logs[:-1], logs[-1]
    assert 1 <= len(epoch_logs) <= CONFIG.max_epochs
    assert {"train_loss", "holdout_mse/member_0", "epochs_since_improvement"} <= set(epoch_logs[0])
    assert final["holdout_mse/elite_mean"] < 1e-3 * y.var(0).mean()
    assert epoch_logs[-1]["holdout_mse/elite_mean"] < epoch_logs[0]["holdout_mse/elite_mean"]
    assert sorted(final["elites"]) == sorted(params.elites.tolist())
    assert len(set(final["elites"])) == CONFIG.num_elites


def test_elites_have_lowest_holdout_mse_and_bad_member_is_excluded(trained):
    params, _ = trained
    x, y = inputs_and_targets(linear_system(500, 6))
    bad = int(params.elites[0])

    @jax.jit  # one program, not op by op
    def corrupted_mse(params, x, y):
        z = apply_scaler(x, params.input_mean, params.input_std)
        noise = jax.random.normal(jax.random.PRNGKey(3), params.net["layers"][-1]["w"].shape[1:])
        layers = [dict(layer) for layer in params.net["layers"]]
        layers[-1]["w"] = layers[-1]["w"].at[bad].add(noise)
        corrupted = {**params.net, "layers": layers}
        return member_mse(corrupted, z, y)

    mse = np.asarray(corrupted_mse(params, jnp.asarray(x), jnp.asarray(y)))
    elites = select_elites(mse, CONFIG.num_elites)
    assert bad not in elites.tolist()
    assert mse[bad] == mse.max()


def test_model_implements_interface_and_checks_data_dims(model):
    assert isinstance(model, WorldModel)
    with pytest.raises(ValueError, match="obs/act dims"):
        EnsembleWorldModel(OBS_DIM, ACT_DIM + 1, CONFIG).fit(
            linear_system(10, 0), jax.random.PRNGKey(0)
        )


def test_early_stop_on_unlearnable_targets(model):
    data = linear_system(N, 7)
    rng = np.random.default_rng(0)
    data.next_observations = rng.normal(size=data.observations.shape).astype(np.float32)
    logs = []
    model.fit(data, jax.random.PRNGKey(1), lambda s, m: logs.append(m))
    epochs = logs[:-1]
    assert len(epochs) < CONFIG.max_epochs
    assert epochs[-1]["epochs_since_improvement"] == CONFIG.patience
    assert logs[-1]["epochs"] == len(epochs)


# ----------------------------------------------------------------------------- imagination


@pytest.fixture(scope="module")
def jit_step():
    return jax.jit(ensemble_step, static_argnames="elite_sampling")


def test_step_shapes_and_determinism(trained, jit_step):
    params, _ = trained
    obs = jnp.ones((2, 4, OBS_DIM))
    act = jnp.zeros((2, 4, ACT_DIM))
    key = jax.random.PRNGKey(0)
    s1, r1 = jit_step(params, obs, act, key)
    s2, r2 = jit_step(params, obs, act, key)
    s3, _ = jit_step(params, obs, act, jax.random.PRNGKey(1))
    assert s1.shape == (2, 4, OBS_DIM) and r1.shape == (2, 4)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(s1, s3)


@pytest.mark.parametrize("mode", ["iid", "balanced"])
def test_step_gradient_wrt_action_matches_finite_differences(trained, mode):
    params, _ = trained
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(8, OBS_DIM)), jnp.float32)
    act = jnp.asarray(rng.uniform(-0.5, 0.5, size=(8, ACT_DIM)), jnp.float32)
    key = jax.random.PRNGKey(2)

    @jax.jit
    def f(a):
        s, r = ensemble_step(params, obs, a, key, mode)
        return jnp.sum(s * jnp.arange(1.0, OBS_DIM + 1)) + jnp.sum(r)

    grad = np.asarray(jax.jit(jax.grad(f))(act))  # one compiled gradient, not a traced jit
    assert np.abs(grad).max() > 1e-3
    eps = 1e-2
    fd = np.zeros_like(grad)
    for i in range(8):
        for j in range(ACT_DIM):
            e = jnp.zeros_like(act).at[i, j].set(eps)
            fd[i, j] = (f(act + e) - f(act - e)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=3e-2, atol=3e-3)


@pytest.mark.parametrize("mode", ["iid", "balanced"])
def test_step_samples_only_elites(trained, jit_step, mode):
    """Tag member k by a reward-mean bias of 1000 k and a tiny variance, then read the tags back."""
    params, _ = trained
    m, d = CONFIG.num_members, OBS_DIM + 1

    @jax.jit  # one program, not op by op
    def tag(params):
        layers = [dict(layer) for layer in params.net["layers"]]
        out = layers[-1]
        out["w"] = out["w"].at[:, :, d - 1].set(0.0).at[:, :, 2 * d - 1].set(0.0)
        out["b"] = out["b"].at[:, d - 1].set(1000.0 * jnp.arange(m)).at[:, 2 * d - 1].set(-30.0)
        return params._replace(net={**params.net, "layers": layers})

    tagged = tag(params)
    batch = 1001
    _, r = jit_step(
        tagged,
        jnp.zeros((batch, OBS_DIM)),
        jnp.zeros((batch, ACT_DIM)),
        jax.random.PRNGKey(4),
        mode,
    )
    members = np.rint(np.asarray(r) / 1000.0).astype(int)
    np.testing.assert_allclose(np.asarray(r), 1000.0 * members, atol=1.0)
    counts = np.bincount(members, minlength=m)
    elites = set(params.elites.tolist())
    assert set(np.flatnonzero(counts)) == elites
    assert counts[list(elites)].min() > 0.1 * batch


# ----------------------------------------------------------------------------- protocol


def _terminate_high(obs, action, next_obs):
    return next_obs[..., 0] > 0.0


def test_imagine_step_applies_reward_affine_and_termination(trained, jit_step):
    """imagine_step = ensemble_step with r = scale r_raw + bias and continue = 1 - done; the
    latent of a state observation is the state itself and `features` is the identity."""
    params, _ = trained
    model = EnsembleWorldModel(OBS_DIM, ACT_DIM, CONFIG, _terminate_high, 2.0, -1.0)
    rng = np.random.default_rng(8)
    obs = jnp.asarray(rng.normal(size=(64, OBS_DIM)), jnp.float32)
    act = jnp.asarray(rng.uniform(-1, 1, size=(64, ACT_DIM)), jnp.float32)
    key = jax.random.PRNGKey(5)
    carry, latent = model.observe(params, None, {"state": obs}, None)
    assert carry is None
    np.testing.assert_array_equal(latent, obs)
    np.testing.assert_array_equal(model.features(params, latent), obs)
    nxt, reward, cont = jax.jit(model.imagine_step)(params, latent, act, key)
    want_next, raw = jit_step(params, obs, act, key, CONFIG.elite_sampling)
    np.testing.assert_allclose(nxt, want_next, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(reward, 2.0 * np.asarray(raw) - 1.0, rtol=1e-5, atol=1e-5)
    want_cont = 1.0 - (np.asarray(want_next)[:, 0] > 0.0)
    np.testing.assert_array_equal(cont, want_cont)
    assert 0 < want_cont.sum() < len(want_cont)  # both outcomes occur
    # Without a termination function every step continues.
    no_termination = EnsembleWorldModel(OBS_DIM, ACT_DIM, CONFIG)
    _, _, always = jax.jit(no_termination.imagine_step)(params, obs, act, key)  # not op by op
    np.testing.assert_array_equal(always, 1.0)


def test_loss_on_a_batch_uses_raw_rewards(trained):
    """`loss` on a replay batch (observation dicts, rewards in training units) is the training
    loss of every member on the raw targets [s' - s, (r - bias) / scale]."""
    params, _ = trained
    data = linear_system(32, 9)
    model = EnsembleWorldModel(OBS_DIM, ACT_DIM, CONFIG, None, data.reward_scale, data.reward_bias)
    batch = {
        "observations": {"state": jnp.asarray(data.observations)},
        "next_observations": {"state": jnp.asarray(data.next_observations)},
        "actions": jnp.asarray(data.actions),
        "rewards": jnp.asarray(data.rewards),
    }
    loss, info = jax.jit(model.loss)(params, batch, jax.random.PRNGKey(0))  # not op by op
    x, y = inputs_and_targets(data)

    @jax.jit  # one program, not op by op
    def want_loss(params, x, y):
        z = apply_scaler(x, params.input_mean, params.input_std)
        tile = lambda v: jnp.broadcast_to(v, (CONFIG.num_members, *v.shape))
        return ensemble_loss(params.net, tile(z), tile(y), CONFIG)[0]

    want = want_loss(params, jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
    assert "nll" in info


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip(trained, model, jit_step, tmp_path):
    """The params are stored in the checkpoint format: FOLDER/ckpt_000000000/."""
    params, _ = trained
    folder = tmp_path / "world_model"
    save_world_model(model, params, folder)
    assert checkpoint.checkpoint_steps(folder) == [0]
    assert [p.name for p in folder.iterdir()] == [checkpoint.checkpoint_path(folder, 0).name]
    loaded = load_world_model(EnsembleWorldModel(OBS_DIM, ACT_DIM, CONFIG), folder)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype
    mean, std = model.input_scaler(loaded)
    assert mean.shape == std.shape == (OBS_DIM + ACT_DIM,)
    obs, act, key = jnp.ones((3, OBS_DIM)), jnp.ones((3, ACT_DIM)), jax.random.PRNGKey(0)
    np.testing.assert_array_equal(
        jit_step(params, obs, act, key)[0], jit_step(loaded, obs, act, key)[0]
    )


def test_load_mismatched_dims_raises_one_line_error(trained, model, tmp_path):
    params, _ = trained
    folder = tmp_path / "world_model"
    save_world_model(model, params, folder)
    with pytest.raises(ConfigError) as err:
        load_world_model(EnsembleWorldModel(OBS_DIM + 1, ACT_DIM, CONFIG), folder)
    message = str(err.value)
    assert str(folder) in message and f"'obs_dim': {OBS_DIM}" in message and "\n" not in message
    assert f"'obs_dim': {OBS_DIM + 1}" in message  # what this run needs
    other = EnsembleConfig(hidden_sizes=(16, 32), weight_decays=CONFIG.weight_decays)
    with pytest.raises(ConfigError, match="holds a model built with") as err:
        load_world_model(EnsembleWorldModel(OBS_DIM, ACT_DIM, other), folder)
    assert "'hidden': [16, 32]" in str(err.value)
    # training settings are not part of the architecture: a model trained with other epochs,
    # learning rate or elite sampling is reused
    retrained = EnsembleConfig(
        hidden_sizes=CONFIG.hidden_sizes,
        weight_decays=CONFIG.weight_decays,
        num_members=CONFIG.num_members,
        num_elites=CONFIG.num_elites,
        max_epochs=1,
        learning_rate=0.5,
        elite_sampling="balanced",
    )
    assert leaves_equal(
        load_world_model(EnsembleWorldModel(OBS_DIM, ACT_DIM, retrained), folder), params
    )
    with pytest.raises(ConfigError, match="no world-model folder"):
        load_world_model(model, tmp_path / "missing")
    with pytest.raises(ConfigError, match="no world-model folder"):
        load_world_model(model, tmp_path / "wm.npz")  # the old single-file layout
    state = checkpoint.checkpoint_path(folder, 0) / checkpoint.STATE_FILE
    state.write_bytes(state.read_bytes()[:-100])  # a damaged copy is never loaded
    with pytest.raises(ConfigError, match="no intact world model"):
        load_world_model(model, folder)
