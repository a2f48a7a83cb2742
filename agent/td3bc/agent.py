"""TD3+BC as an offline agent on the shared runner.

TD3's critic step every update (agent/actor_critic.py: smoothed target actions, clipped
double-Q targets); every `policy_delay`-th update the actor step on TD3+BC's loss
(agent/td3bc/losses.py) and the soft update of the target actor and critics. Observations are
standardised with the dataset's statistics (the runner's context); rewards are used raw
(`dataset.reward_norm: none` in the presets), as in the paper.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import actor_critic
from agent import replay as replay_lib
from agent.networks import critics, deterministic_actor
from agent.observations import flat_obs, normalize
from agent.protocol import Agent, Context, Spec
from agent.td3bc import losses

PHASE = "td3bc"


# step: updates done (the actor steps on every policy_delay-th)
TD3BCState = NamedTuple(
    "TD3BCState",
    [
        *actor_critic.DETERMINISTIC_FIELDS,
        ("obs_mean", jax.Array),
        ("obs_std", jax.Array),
        ("step", jax.Array),
    ],
)


class TD3BCAgent(Agent):
    """TD3 plus a behaviour-cloning term in the actor loss, on normalised observations."""

    policy_fields = ("actor_params", "obs_mean", "obs_std")
    counter_fields = ("step",)

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.c = c = cfg.td3bc
        self.batch = cfg.td3bc.batch_size
        self.actor_net = deterministic_actor(c.hidden, spec.act_dim)
        self.critic_net = critics(c.hidden)
        self.actor_opt = optax.adam(c.actor_lr)
        self.critic_opt = optax.adam(c.critic_lr)

    def init(self, key: jax.Array, spec: Spec) -> TD3BCState:
        actor_key, critic_key = jax.random.split(key)
        nets = (self.actor_net, self.critic_net, self.actor_opt, self.critic_opt)
        if self.c.obs_norm:
            mean, std = jnp.asarray(self.context.obs_mean), jnp.asarray(self.context.obs_std)
        else:
            mean, std = jnp.zeros(spec.flat_obs_dim), jnp.ones(spec.flat_obs_dim)
        return TD3BCState(
            **actor_critic.initial_fields(*nets, actor_key, critic_key, spec),
            obs_mean=mean,
            obs_std=std,
            step=jnp.int32(0),
        )

    def phase(self, step: int) -> str:
        return PHASE

    def batch_size(self, phase: str) -> int:
        return self.batch

    def _obs(self, state: TD3BCState, obs: dict) -> jax.Array:
        return normalize(flat_obs(obs, self.spec), state.obs_mean, state.obs_std)

    def train(self, phase, state: TD3BCState, replay, key) -> tuple[TD3BCState, dict]:
        """Critic step; every policy_delay-th update also the actor step and the target update."""
        c = self.c
        sample_key, noise_key = jax.random.split(key)
        batch = replay_lib.sample(replay, sample_key, self.batch)
        obs = self._obs(state, batch["observations"])
        next_obs = self._obs(state, batch["next_observations"])
        state, critic_loss, q, _ = actor_critic.td3_critic_step(
            self.actor_net, self.critic_net, self.critic_opt, c, state, obs, batch, next_obs,
            noise_key,
        )  # fmt: skip
        state, (actor_loss, lam) = actor_critic.delayed(
            state.step,
            c.policy_delay,
            lambda s: self._actor_and_targets(s, obs, batch["actions"]),
            state,
        )
        metrics = {
            "train/critic_loss": critic_loss,
            "train/actor_loss": actor_loss,
            "train/bc_lambda": lam,
            "train/q_mean": jnp.mean(q),
        }
        return state._replace(step=state.step + 1), metrics

    def _actor_and_targets(self, state: TD3BCState, obs: jax.Array, actions: jax.Array):
        def loss_fn(params):
            pi = self.actor_net.apply(params, obs)
            q1 = self.critic_net.apply(state.critic_params, obs, pi)[:, 0]
            return losses.actor_loss(q1, pi, actions, self.c.alpha)

        state, (loss, lam), _ = actor_critic.update_network(
            state, "actor", self.actor_opt, loss_fn, has_aux=True
        )
        return actor_critic.soft_update_targets(state, self.c.tau), (loss, lam)

    def policy(self, state: TD3BCState, carry, obs, mode, key):
        """pi(normalised s) (the same in every mode)."""
        return carry, self.actor_net.apply(state.actor_params, self._obs(state, obs))
