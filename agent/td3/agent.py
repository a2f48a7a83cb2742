"""Stock TD3 (Fujimoto et al. 2018) as an online agent on the shared runner.

Two critics on [s, a], a deterministic tanh actor trained on Q_1 every `policy_delay` critic
steps, target policy smoothing and clipped double-Q targets (`losses.py`), soft target updates of
actor and critics with the delayed actor step, Gaussian exploration noise. The runner acts
uniformly at random for `td3.learning_starts` environment steps (WARMUP), then collects
`td3.train_every` steps and runs as many gradient steps in one jitted scan (one update per
environment step, applied in chunks).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import replay as replay_lib
from agent.networks import polyak
from agent.observations import flat_obs
from agent.programs import apply_gradients
from agent.protocol import EVAL, WARMUP, Agent, Context, Spec
from agent.sac.networks import critics, deterministic_actor
from agent.td3 import losses
from agent.td3.critic_update import critic_update

LEARN = "learn"


class TD3State(NamedTuple):
    actor_params: dict
    critic_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    step: jax.Array  # critic steps done (the actor steps on every policy_delay-th)


class TD3Agent(Agent):
    """TD3, one update per environment step."""

    online = True
    policy_fields = ("actor_params",)
    counter_fields = ("step",)

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.c = cfg.td3
        self.actor_net = deterministic_actor(self.c.hidden, spec.act_dim)
        self.critic_net = critics(self.c.hidden)
        self.actor_opt = optax.adam(self.c.actor_lr)
        self.critic_opt = optax.adam(self.c.critic_lr)
        self.env_steps_per_chunk = self.c.train_every
        self.updates_per_chunk = self.c.train_every
        self.replay_capacity = self.c.capacity
        self.snapshot_every = self.c.snapshot_every

    def init(self, key: jax.Array, spec: Spec) -> TD3State:
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros((1, spec.flat_obs_dim))
        actor_params = self.actor_net.init(actor_key, obs)
        critic_params = self.critic_net.init(critic_key, obs, jnp.zeros((1, spec.act_dim)))
        return TD3State(
            actor_params=actor_params,
            critic_params=critic_params,
            target_actor_params=jax.tree.map(jnp.copy, actor_params),
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            actor_opt_state=self.actor_opt.init(actor_params),
            critic_opt_state=self.critic_opt.init(critic_params),
            step=jnp.int32(0),
        )

    def phase(self, step: int) -> str:
        return WARMUP if step < self.c.learning_starts else LEARN

    def train(self, phase, state: TD3State, replay, key) -> tuple[TD3State, dict]:
        """Critic step; every policy_delay-th step also the actor step and the target update."""
        c = self.c
        sample_key, noise_key = jax.random.split(key)
        batch = replay_lib.sample(replay, sample_key, c.batch_size)
        obs = flat_obs(batch["observations"], self.spec)
        next_obs = flat_obs(batch["next_observations"], self.spec)
        critic, critic_opt, critic_loss, q, norm = critic_update(
            self.actor_net, self.critic_net, self.critic_opt, c, state, obs, batch, next_obs,
            noise_key,
        )  # fmt: skip
        state = state._replace(critic_params=critic, critic_opt_state=critic_opt)
        state, actor_loss = jax.lax.cond(
            state.step % c.policy_delay == 0,
            lambda s: self._actor_and_targets(s, obs),
            lambda s: (s, jnp.float32(jnp.nan)),
            state,
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

        actor, actor_opt, loss, _ = apply_gradients(
            self.actor_opt, state.actor_params, state.actor_opt_state, loss_fn
        )
        tau = self.c.tau
        state = state._replace(
            actor_params=actor,
            actor_opt_state=actor_opt,
            target_actor_params=polyak(actor, state.target_actor_params, tau),
            target_critic_params=polyak(state.critic_params, state.target_critic_params, tau),
        )
        return state, loss

    def snapshot_params(self, state: TD3State) -> dict:
        return state.actor_params

    def policy(self, state: TD3State, carry, obs, mode, key):
        """pi(s) in evaluation; clip(pi(s) + N(0, exploration_noise^2), -1, 1) when exploring."""
        action = self.actor_net.apply(state.actor_params, flat_obs(obs, self.spec))
        if mode == EVAL:
            return carry, action
        noise = self.c.exploration_noise * jax.random.normal(key, action.shape)
        return carry, jnp.clip(action + noise, -1.0, 1.0)
