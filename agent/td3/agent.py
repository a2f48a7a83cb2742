"""Stock TD3 (Fujimoto et al. 2018) as an online agent on the shared runner.

Two critics on [s, a], a deterministic tanh actor trained on Q_1 every `policy_delay` critic
steps, target policy smoothing and clipped double-Q targets, soft target updates of actor and
critics with the delayed actor step (agent/actor_critic.py), Gaussian exploration noise. The
runner acts uniformly at random for `td3.learning_starts` environment steps (WARMUP), then
collects `td3.train_every` steps and runs as many gradient steps in one jitted scan (one update
per environment step, applied in chunks).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agent import actor_critic
from agent import replay as replay_lib
from agent.networks import critics, deterministic_actor
from agent.observations import flat_obs
from agent.protocol import Context, Spec
from agent.td3 import losses

# step: critic steps done (the actor steps on every policy_delay-th)
TD3State = NamedTuple("TD3State", [*actor_critic.DETERMINISTIC_FIELDS, ("step", jax.Array)])


class TD3Agent(actor_critic.OnlineActorCritic):
    """TD3, one update per environment step."""

    counter_fields = ("step",)

    def __init__(self, cfg, spec: Spec, context: Context):
        self.c = c = cfg.td3
        actor = deterministic_actor(c.hidden, spec.act_dim)
        super().__init__(cfg, spec, context, c, actor, critics(c.hidden))

    def init(self, key: jax.Array, spec: Spec) -> TD3State:
        actor_key, critic_key = jax.random.split(key)
        nets = (self.actor_net, self.critic_net, self.actor_opt, self.critic_opt)
        return TD3State(
            **actor_critic.initial_fields(*nets, actor_key, critic_key, spec), step=jnp.int32(0)
        )

    def train(self, phase, state: TD3State, replay, key) -> tuple[TD3State, dict]:
        """Critic step; every policy_delay-th step also the actor step and the target update."""
        c = self.c
        sample_key, noise_key = jax.random.split(key)
        batch = replay_lib.sample(replay, sample_key, c.batch_size)
        obs = flat_obs(batch["observations"], self.spec)
        next_obs = flat_obs(batch["next_observations"], self.spec)
        state, critic_loss, q, norm = actor_critic.td3_critic_step(
            self.actor_net, self.critic_net, self.critic_opt, c, state, obs, batch, next_obs,
            noise_key,
        )  # fmt: skip
        state, actor_loss = actor_critic.delayed(
            state.step, c.policy_delay, lambda s: self._actor_and_targets(s, obs), state
        )
        metrics = {
            "train/critic_loss": critic_loss,
            "train/actor_loss": actor_loss,
            "train/q_mean": jnp.mean(q),
            "train/critic_grad_norm": norm,
        }
        return state._replace(step=state.step + 1), metrics

    def _actor_and_targets(self, state: TD3State, obs: jax.Array) -> tuple[TD3State, jax.Array]:
        def loss_fn(params):
            action = self.actor_net.apply(params, obs)
            return losses.actor_loss(self.critic_net.apply(state.critic_params, obs, action))

        state, loss, _ = actor_critic.update_network(state, "actor", self.actor_opt, loss_fn)
        return actor_critic.soft_update_targets(state, self.c.tau), loss

    def policy(self, state: TD3State, carry, obs, mode, key):
        """pi(s) in evaluation; clip(pi(s) + N(0, exploration_noise^2), -1, 1) when exploring."""
        obs = flat_obs(obs, self.spec)
        noise = self.c.exploration_noise
        return carry, actor_critic.exploration_action(
            self.actor_net, state.actor_params, obs, mode, key, noise
        )
