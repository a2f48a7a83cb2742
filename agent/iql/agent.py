"""IQL as an offline agent on the shared runner (agent/iql/losses.py has the equations).

One update, in the official order: V on the target critics' expectile; the policy by AWR; the
critics on r + gamma m V(s') with the new V; then the target critics by Polyak averaging. The
AWR weights use V from before this update's value step (the official code uses the new V; the
difference is one Adam step of V, and the results page's IQL runs were made this way). The
policy's learning rate follows a cosine decay over `train.steps` (IQL's schedule). Rewards are
preprocessed by the dataset loader (`dataset.reward_norm: auto`: IQL's locomotion scaling).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import replay as replay_lib
from agent.actor_critic import initial_fields, update_network
from agent.distributions import gaussian_log_prob
from agent.iql import losses
from agent.iql.networks import gaussian_policy, value_net
from agent.losses import twin_critic_loss
from agent.networks import critics, polyak
from agent.observations import flat_obs
from agent.protocol import Agent, Context, Spec

PHASE = "iql"


class IQLState(NamedTuple):
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    value_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    value_opt_state: optax.OptState


class IQLAgent(Agent):
    """Implicit Q-learning: expectile V, twin Q with a target, advantage-weighted policy."""

    policy_fields = ("actor_params",)

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.c = c = cfg.iql
        self.batch = cfg.iql.batch_size
        self.actor_net = gaussian_policy(c.hidden, spec.act_dim)
        self.critic_net = critics(c.hidden)
        self.value_net = value_net(c.hidden)
        schedule = optax.cosine_decay_schedule(c.actor_lr, max(int(cfg.train.steps), 1))
        self.actor_opt = optax.adam(schedule if c.actor_lr_schedule == "cosine" else c.actor_lr)
        self.critic_opt = optax.adam(c.critic_lr)
        self.value_opt = optax.adam(c.value_lr)

    def init(self, key: jax.Array, spec: Spec) -> IQLState:
        k_actor, k_critic, k_value = jax.random.split(key, 3)
        nets = (self.actor_net, self.critic_net, self.actor_opt, self.critic_opt)
        value = self.value_net.init(k_value, jnp.zeros((1, spec.flat_obs_dim)))
        return IQLState(
            **initial_fields(*nets, k_actor, k_critic, spec, target_actor=False),
            value_params=value,
            value_opt_state=self.value_opt.init(value),
        )

    def phase(self, step: int) -> str:
        return PHASE

    def batch_size(self, phase: str) -> int:
        return self.batch

    def train(self, phase, state: IQLState, replay, key) -> tuple[IQLState, dict]:
        """One IQL update on a uniform batch."""
        c = self.c
        batch = replay_lib.sample(replay, key, self.batch)
        obs = flat_obs(batch["observations"], self.spec)
        next_obs = flat_obs(batch["next_observations"], self.spec)
        target_q = self.critic_net.apply(state.target_critic_params, obs, batch["actions"])

        def value_loss_fn(params):
            v = self.value_net.apply(params, obs)
            return losses.value_loss(target_q, v, c.expectile), v

        state, (value_loss, v), _ = update_network(
            state, "value", self.value_opt, value_loss_fn, has_aux=True
        )
        weights = losses.awr_weights(target_q, v, c.temperature, c.max_weight)

        def actor_loss_fn(params):
            mean, log_std = self.actor_net.apply(params, obs)
            return losses.actor_loss(weights, gaussian_log_prob(batch["actions"], mean, log_std))

        state, actor_loss, _ = update_network(state, "actor", self.actor_opt, actor_loss_fn)
        next_v = self.value_net.apply(state.value_params, next_obs)
        targets = losses.critic_targets(batch["rewards"], batch["masks"], next_v, c.gamma)

        def critic_loss_fn(params):
            q = self.critic_net.apply(params, obs, batch["actions"])
            return twin_critic_loss(q, targets), q

        state, (critic_loss, q), _ = update_network(
            state, "critic", self.critic_opt, critic_loss_fn, has_aux=True
        )
        target = polyak(state.critic_params, state.target_critic_params, c.tau)
        state = state._replace(target_critic_params=target)
        metrics = {
            "train/value_loss": value_loss,
            "train/critic_loss": critic_loss,
            "train/actor_loss": actor_loss,
            "train/v_mean": jnp.mean(v),
            "train/q_mean": jnp.mean(q),
            "train/awr_weight_mean": jnp.mean(weights),
            "train/awr_weight_clipped": jnp.mean(weights >= c.max_weight),
        }
        return state, metrics

    def policy(self, state: IQLState, carry, obs, mode, key):
        """The policy's mode tanh(MLP(s)), clipped to [-1, 1] (the same in every mode)."""
        mean, _ = self.actor_net.apply(state.actor_params, flat_obs(obs, self.spec))
        return carry, jnp.clip(mean, -1.0, 1.0)
