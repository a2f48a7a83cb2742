"""SAC (Haarnoja et al. 2018/2019) as an online agent on the shared runner.

Twin critics on [s, a] with soft (Polyak) targets, a tanh-Gaussian actor with the
log-probability correction, and the entropy temperature alpha learned towards the target
entropy -|A| (`losses.py` has the equations). The runner acts uniformly at random for
`sac.learning_starts` environment steps (WARMUP), then collects `sac.train_every` steps with the
stochastic policy and runs as many gradient steps in one jitted scan: one update per
environment step, applied in chunks (the policy that acts lags the newest one by at most a
chunk).
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
from agent.sac import losses
from agent.sac.networks import critics, gaussian_actor

LEARN = "learn"


class SACState(NamedTuple):
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState


class SACAgent(Agent):
    """Soft actor-critic, one update per environment step."""

    online = True
    policy_fields = ("actor_params",)

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.c = cfg.sac
        self.actor_net = gaussian_actor(self.c.hidden, spec.act_dim)
        self.critic_net = critics(self.c.hidden)
        self.actor_opt = optax.adam(self.c.actor_lr)
        self.critic_opt = optax.adam(self.c.critic_lr)
        self.alpha_opt = optax.adam(self.c.alpha_lr)
        self.target_entropy = -self.c.target_entropy_scale * spec.act_dim
        self.env_steps_per_chunk = self.c.train_every
        self.updates_per_chunk = self.c.train_every
        self.replay_capacity = self.c.capacity
        self.snapshot_every = self.c.snapshot_every

    def init(self, key: jax.Array, spec: Spec) -> SACState:
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros((1, spec.flat_obs_dim))
        actor_params = self.actor_net.init(actor_key, obs)
        critic_params = self.critic_net.init(critic_key, obs, jnp.zeros((1, spec.act_dim)))
        log_alpha = jnp.log(jnp.float32(self.c.init_temperature))
        return SACState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            log_alpha=log_alpha,
            actor_opt_state=self.actor_opt.init(actor_params),
            critic_opt_state=self.critic_opt.init(critic_params),
            alpha_opt_state=self.alpha_opt.init(log_alpha),
        )

    def phase(self, step: int) -> str:
        return WARMUP if step < self.c.learning_starts else LEARN

    def _sample(self, params: dict, obs: jax.Array, key: jax.Array):
        mean, log_std = self.actor_net.apply(params, obs)
        return losses.sample_tanh_gaussian(mean, log_std, key)

    def train(self, phase, state: SACState, replay, key) -> tuple[SACState, dict]:
        """Critic step, actor step, temperature step, then the soft target update."""
        c = self.c
        sample_key, next_key, new_key = jax.random.split(key, 3)
        batch = replay_lib.sample(replay, sample_key, c.batch_size)
        obs = flat_obs(batch["observations"], self.spec)
        next_obs = flat_obs(batch["next_observations"], self.spec)
        alpha = jnp.exp(state.log_alpha)

        next_action, next_log_prob = self._sample(state.actor_params, next_obs, next_key)
        next_q = self.critic_net.apply(state.target_critic_params, next_obs, next_action)
        targets = losses.soft_targets(
            batch["rewards"], batch["masks"], next_q, next_log_prob, alpha, c.gamma
        )

        def critic_loss_fn(params):
            q = self.critic_net.apply(params, obs, batch["actions"])
            return losses.critic_loss(q, targets), q

        critic, critic_opt, (critic_loss, q), critic_norm = apply_gradients(
            self.critic_opt, state.critic_params, state.critic_opt_state, critic_loss_fn, True
        )

        def actor_loss_fn(params):
            action, log_prob = self._sample(params, obs, new_key)
            q_new = self.critic_net.apply(critic, obs, action)
            return losses.actor_loss(q_new, log_prob, alpha), log_prob

        actor, actor_opt, (actor_loss, log_prob), actor_norm = apply_gradients(
            self.actor_opt, state.actor_params, state.actor_opt_state, actor_loss_fn, True
        )

        def alpha_loss_fn(log_alpha):
            return losses.temperature_loss(log_alpha, log_prob, self.target_entropy)

        log_alpha, alpha_opt, alpha_loss, _ = apply_gradients(
            self.alpha_opt, state.log_alpha, state.alpha_opt_state, alpha_loss_fn
        )
        state = SACState(
            actor_params=actor,
            critic_params=critic,
            target_critic_params=polyak(critic, state.target_critic_params, c.tau),
            log_alpha=log_alpha,
            actor_opt_state=actor_opt,
            critic_opt_state=critic_opt,
            alpha_opt_state=alpha_opt,
        )
        metrics = {
            "train/critic_loss": critic_loss,
            "train/actor_loss": actor_loss,
            "train/alpha_loss": alpha_loss,
            "train/alpha": alpha,
            "train/entropy": -jnp.mean(log_prob),
            "train/q_mean": jnp.mean(q),
            "train/critic_grad_norm": critic_norm,
            "train/actor_grad_norm": actor_norm,
        }
        return state, metrics

    def snapshot_params(self, state: SACState) -> dict:
        return state.actor_params

    def policy(self, state: SACState, carry, obs, mode, key):
        """tanh(mean) in evaluation; a sample of the tanh-Gaussian when exploring."""
        mean, log_std = self.actor_net.apply(state.actor_params, flat_obs(obs, self.spec))
        if mode == EVAL:
            return carry, jnp.tanh(mean)
        return carry, losses.sample_tanh_gaussian(mean, log_std, key)[0]
