"""The state-based probabilistic dynamics ensemble (algorithms.md §2.1) behind `WorldModel`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent.world_model.base import LogFn, WorldModel
from agent.world_model.checkpoint import flatten_named, load_npz, save_npz_atomic, unflatten_named
from agent.world_model.ensemble_config import EnsembleConfig
from agent.world_model.ensemble_net import EnsembleParams, forward, init_net
from agent.world_model.ensemble_training import fit_ensemble, inputs_and_targets
from agent.world_model.scaler import apply_scaler
from envs.offline_data import OfflineData


def _elite_outputs_iid(elite_net: dict, z: jax.Array, key: jax.Array):
    """Every elite on every element, then one elite per element: -> mean, logvar [B, D]."""
    mean, logvar = forward(elite_net, z)  # [E, B, D]
    num_elites, batch = mean.shape[:2]
    choice = jax.random.randint(key, (batch,), 0, num_elites)
    rows = jnp.arange(batch)
    return mean[choice, rows], logvar[choice, rows]


def _elite_outputs_balanced(elite_net: dict, z: jax.Array, key: jax.Array):
    """Randomly permute the batch and give each elite an equal share: -> mean, logvar [B, D]."""
    num_elites = elite_net["layers"][0]["w"].shape[0]
    batch, in_dim = z.shape
    per_elite = -(-batch // num_elites)
    padded = jnp.concatenate([z, jnp.zeros((num_elites * per_elite - batch, in_dim), z.dtype)])
    perm = jax.random.permutation(key, num_elites * per_elite)
    mean, logvar = forward(elite_net, padded[perm].reshape(num_elites, per_elite, in_dim))
    back = jnp.argsort(perm)[:batch]
    return mean.reshape(-1, mean.shape[-1])[back], logvar.reshape(-1, logvar.shape[-1])[back]


def ensemble_step(
    params: EnsembleParams,
    obs: jax.Array,
    action: jax.Array,
    key: jax.Array,
    elite_sampling: str = "iid",
) -> tuple[jax.Array, jax.Array]:
    """One imagined step with a random elite per element and a reparameterised Gaussian sample.

    y = mean_k + exp(logvar_k / 2) * eps, eps ~ N(0, I);  s' = s + y[:obs_dim],  r_raw = y[-1].
    obs [..., obs_dim], action [..., act_dim] -> next_obs [..., obs_dim], raw_reward [...].
    """
    lead = obs.shape[:-1]
    obs2 = obs.reshape(-1, obs.shape[-1])
    z = apply_scaler(
        jnp.concatenate([obs2, action.reshape(-1, action.shape[-1])], axis=-1),
        params.input_mean,
        params.input_std,
    )
    elite_layers = jax.tree_util.tree_map(lambda p: p[params.elites], params.net["layers"])
    elite_net = {**params.net, "layers": elite_layers}
    member_key, noise_key = jax.random.split(key)
    if elite_sampling not in ("iid", "balanced"):
        raise ValueError(f"unknown elite_sampling {elite_sampling!r}")
    pick = _elite_outputs_iid if elite_sampling == "iid" else _elite_outputs_balanced
    mean, logvar = pick(elite_net, z, member_key)
    sample = mean + jnp.exp(0.5 * logvar) * jax.random.normal(noise_key, mean.shape, mean.dtype)
    next_obs = obs2 + sample[:, :-1]
    return next_obs.reshape(*lead, -1), sample[:, -1].reshape(lead)


class EnsembleWorldModel(WorldModel):
    """N Gaussian MLPs predicting [s' - s, r_raw]; imagination samples one elite per element."""

    def __init__(self, obs_dim: int, act_dim: int, config: EnsembleConfig | None = None):
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.config = config or EnsembleConfig()

    def train(self, data: OfflineData, key: jax.Array, log: LogFn | None = None) -> EnsembleParams:
        if data.observations.shape[1] != self.obs_dim or data.actions.shape[1] != self.act_dim:
            raise ValueError(
                f"data has obs/act dims {data.observations.shape[1]}/{data.actions.shape[1]}, "
                f"model expects {self.obs_dim}/{self.act_dim}"
            )
        x, y = inputs_and_targets(data)
        return fit_ensemble(x, y, key, self.config, log)

    def step(
        self, params: EnsembleParams, obs: jax.Array, action: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        return ensemble_step(params, obs, action, key, self.config.elite_sampling)

    def input_scaler(self, params: EnsembleParams) -> tuple[jax.Array, jax.Array]:
        return params.input_mean, params.input_std

    def init_params(self, key: jax.Array) -> EnsembleParams:
        """Untrained params (unit scaler, elites 0..E-1): the structure that `load` fills."""
        in_dim = self.obs_dim + self.act_dim
        net = init_net(key, in_dim, self.obs_dim + 1, self.config)
        return EnsembleParams(
            net,
            jnp.zeros((in_dim,), jnp.float32),
            jnp.ones((in_dim,), jnp.float32),
            jnp.arange(self.config.num_elites, dtype=jnp.int32),
        )

    def _file_config(self) -> dict:
        return {
            "kind": "ensemble",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": self.config.to_dict(),
        }

    def save(self, params: EnsembleParams, path: str) -> None:
        save_npz_atomic(path, flatten_named(jax.device_get(params)), self._file_config())

    def load(self, path: str) -> EnsembleParams:
        arrays, file_config = load_npz(path)
        dims = (file_config.get("obs_dim"), file_config.get("act_dim"))
        if dims != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"{path}: world model has obs_dim={dims[0]}, act_dim={dims[1]}, "
                f"but this task needs obs_dim={self.obs_dim}, act_dim={self.act_dim}"
            )
        params = unflatten_named(self.init_params(jax.random.PRNGKey(0)), arrays, path)
        return jax.tree_util.tree_map(jnp.asarray, params)
