"""The state-based probabilistic dynamics ensemble behind `WorldModel`.

Its latent is the observation vector itself: `observe` reads the "state" field, `features` is
the identity, and `imagine_step` samples one elite per element and takes `continue` from the
task's termination function, which the runner gives the model when it builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from agent.protocol import WorldModel
from agent.world_model.ensemble_config import EnsembleConfig
from agent.world_model.ensemble_net import EnsembleParams, ensemble_loss, forward, init_net
from agent.world_model.ensemble_training import fit_ensemble, inputs_and_targets
from agent.world_model.scaler import apply_scaler


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
    """N Gaussian MLPs predicting [s' - s, r_raw]; imagination samples one elite per element.

    termination_fn(obs, action, next_obs) -> bool gives `continue` = 1 - done (None: always 1);
    rewards come out in training units, r = reward_scale * r_raw + reward_bias.
    """

    kind = "ensemble"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: EnsembleConfig | None = None,
        termination_fn: Callable | None = None,
        reward_scale: float = 1.0,
        reward_bias: float = 0.0,
    ):
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.config = config or EnsembleConfig()
        self.termination_fn = termination_fn
        self.reward_scale, self.reward_bias = reward_scale, reward_bias

    # ---------------------------------------------------------------- training ----
    def init(self, key: jax.Array) -> EnsembleParams:
        """Untrained params (unit scaler, elites 0..E-1): the structure that loading fills."""
        in_dim = self.obs_dim + self.act_dim
        net = init_net(key, in_dim, self.obs_dim + 1, self.config)
        return EnsembleParams(
            net,
            jnp.zeros((in_dim,), jnp.float32),
            jnp.ones((in_dim,), jnp.float32),
            jnp.arange(self.config.num_elites, dtype=jnp.int32),
        )

    def fit(
        self,
        data: Any,
        key: jax.Array,
        log: Callable | None = None,
        progress: Callable | None = None,
    ) -> EnsembleParams:
        """Fit the input scaler, train to early stop, pick elites (`OfflineData`-like data)."""
        if data.observations.shape[1] != self.obs_dim or data.actions.shape[1] != self.act_dim:
            raise ValueError(
                f"data has obs/act dims {data.observations.shape[1]}/{data.actions.shape[1]}, "
                f"model expects {self.obs_dim}/{self.act_dim}"
            )
        x, y = inputs_and_targets(data)
        return fit_ensemble(x, y, key, self.config, log, progress)

    def loss(self, params: EnsembleParams, batch: dict, key: jax.Array) -> tuple:
        """The ensemble's training loss (every member on the same batch of transitions)."""
        obs = batch["observations"]["state"]
        z = apply_scaler(
            jnp.concatenate([obs, batch["actions"]], -1), params.input_mean, params.input_std
        )
        raw_reward = (batch["rewards"] - self.reward_bias) / self.reward_scale
        y = jnp.concatenate([batch["next_observations"]["state"] - obs, raw_reward[:, None]], -1)
        members = params.net["layers"][0]["w"].shape[0]
        tile = lambda x: jnp.broadcast_to(x, (members, *x.shape))
        return ensemble_loss(params.net, tile(z), tile(y), self.config)

    # ------------------------------------------------------------- imagination ----
    def observe(self, params, carry, obs: dict, prev_action=None) -> tuple[None, jax.Array]:
        """The latent of a state observation is the state vector itself."""
        return None, obs["state"]

    def imagine_step(self, params, latent, action, key) -> tuple:
        """s', r = ensemble_step(s, a); continue = 1 - termination_fn(s, a, s')."""
        next_obs, raw = ensemble_step(params, latent, action, key, self.config.elite_sampling)
        reward = self.reward_scale * raw + self.reward_bias
        if self.termination_fn is None:
            cont = jnp.ones_like(reward)
        else:
            done = self.termination_fn(latent, action, next_obs)
            cont = 1.0 - done.astype(reward.dtype)
        return next_obs, reward, cont

    def features(self, params, latent: jax.Array) -> jax.Array:
        return latent

    def input_scaler(self, params: EnsembleParams) -> tuple[jax.Array, jax.Array]:
        """(mean, std) over the concatenated [obs, action] input, for the agents' networks."""
        return params.input_mean, params.input_std

    # ----------------------------------------------------------------- storage ----
    def file_config(self) -> dict:
        """What a saved model must match to be reused: its kind and architecture (training
        settings such as epochs or learning rate may differ)."""
        c = self.config
        return {
            "kind": self.kind,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "members": c.num_members,
            "elites": c.num_elites,
            "hidden": list(c.hidden_sizes),
        }
