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
from agent.actor_critic import OnlineActorCritic, initial_fields, update_network
from agent.losses import sample_tanh_gaussian, twin_critic_loss
from agent.networks import critics, polyak, tanh_gaussian_actor
from agent.observations import flat_obs
from agent.optimizers import apply_gradients
from agent.protocol import EVAL, Context, Spec
from agent.sac import losses


class SACState(NamedTuple):
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState


class SACAgent(OnlineActorCritic):
    """Soft actor-critic, one update per environment step."""

    def __init__(self, cfg, spec: Spec, context: Context):
        self.c = c = cfg.sac
        actor = tanh_gaussian_actor(c.hidden, spec.act_dim)
        super().__init__(cfg, spec, context, c, actor, critics(c.hidden))
        self.alpha_opt = optax.adam(c.alpha_lr)
        self.target_entropy = -c.target_entropy_scale * spec.act_dim

    def init(self, key: jax.Array, spec: Spec) -> SACState:
        actor_key, critic_key = jax.random.split(key)
        nets = (self.actor_net, self.critic_net, self.actor_opt, self.critic_opt)
        log_alpha = jnp.log(jnp.float32(self.c.init_temperature))
        return SACState(
            **initial_fields(*nets, actor_key, critic_key, spec, target_actor=False),
            log_alpha=log_alpha,
            alpha_opt_state=self.alpha_opt.init(log_alpha),
        )

    def _sample(self, params: dict, obs: jax.Array, key: jax.Array):
        mean, log_std = self.actor_net.apply(params, obs)
        return sample_tanh_gaussian(mean, log_std, key)

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
            return twin_critic_loss(q, targets), q

        state, (critic_loss, q), critic_norm = update_network(
            state, "critic", self.critic_opt, critic_loss_fn, has_aux=True
        )

        def actor_loss_fn(params):
            action, log_prob = self._sample(params, obs, new_key)
            q_new = self.critic_net.apply(state.critic_params, obs, action)
            return losses.actor_loss(q_new, log_prob, alpha), log_prob

        state, (actor_loss, log_prob), actor_norm = update_network(
            state, "actor", self.actor_opt, actor_loss_fn, has_aux=True
        )

        def alpha_loss_fn(log_alpha):
            return losses.temperature_loss(log_alpha, log_prob, self.target_entropy)

        log_alpha, alpha_opt, alpha_loss, _ = apply_gradients(
            self.alpha_opt, state.log_alpha, state.alpha_opt_state, alpha_loss_fn
        )
        state = state._replace(
            target_critic_params=polyak(state.critic_params, state.target_critic_params, c.tau),
            log_alpha=log_alpha,
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

    def policy(self, state: SACState, carry, obs, mode, key):
        """tanh(mean) in evaluation; a sample of the tanh-Gaussian when exploring."""
        mean, log_std = self.actor_net.apply(state.actor_params, flat_obs(obs, self.spec))
        if mode == EVAL:
            return carry, jnp.tanh(mean)
        return carry, sample_tanh_gaussian(mean, log_std, key)[0]
