"""GEM: Generalizable Episodic Memory (algorithms.md §5), online, on the shared replay.

The replay IS the episodic memory: every stored transition (FIFO, `gem.capacity` rows) has a
memory-return pair (R^A, R^B) in `GEMState.memory`, recomputed over all stored trajectories by
the shared twin back-propagation kernel (`agent.memory`, Form B) with the target critics'
conservative values Q^X(s_{t+1}) = min over twin X of Q'_k(s_{t+1}, a~_{t+1}) at smoothed target
actions. The critics regress only to these returns with the asymmetric loss; the actor maximises
the mean of the four critics every `policy_delay`-th step.

One environment chunk (`gem.train_every` steps, collected by `agent.online`) is handed to
`observe`, a single jitted call that: writes the rows into the replay; then, once
`gem.learning_starts` steps are stored, moves the targets by 1 - 0.995^200 (`target_rate`),
refreshes the memory, and runs `gem.gradient_steps` updates in a `lax.scan` (§5.2).

`gem.memory: false` is the TD3 baseline on the same agent: the memory is never computed and each
critic pair regresses to its one-step target r + gamma (1 - d) min_twin Q'(s', a~) (the floor of
the memory return); presets pair it with `gem.alpha: 1` (the plain squared error).

Choices where the official code differs (§5.4):
* pairing: critics 1, 2 regress to R^A and 3, 4 to R^B (`gem.pairing: twin`, the intended
  design); `broadcast` reproduces the TF code, where every critic sees all four target columns.
* rows of the episode in progress are in the memory (the code adds an episode when it ends):
  the newest row counts as a truncated trajectory end, bootstrapping from Q^X at its next state,
  exactly as a sentinel row would; every row is sampled uniformly.
* the horizon cap `max_step` (1000) is not applied; it never binds for episodes <= 1000 steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent import replay as replay_lib
from agent.config import ConfigError
from agent.gem import losses
from agent.gem.networks import actor, critics
from agent.memory import replay_memory_returns
from agent.networks import batched_apply, polyak

EXPLORATION_SEED_SALT = 0x6E3  # separates exploration keys from the state's training key


class GEMState(NamedTuple):
    actor_params: dict
    critic_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    replay: replay_lib.Replay  # OFFLINE_FIELDS rows; the episodic memory's transitions
    memory: jax.Array  # [capacity, 2] memory returns (R^A, R^B) of every stored row
    key: jax.Array
    step: jax.Array  # gradient steps done
    loop: dict  # the online loop's counters (agent.online.loop_state), checkpointed


class GEMAgent:
    """GEM (memory on) or TD3 (memory off) with one jitted call per environment chunk."""

    online = True

    def __init__(self, cfg, obs_dim: int, act_dim: int, data=None):
        self.g = cfg.gem
        self._check(cfg)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor_net = actor(self.g.hidden, act_dim)
        self.critic_net = critics(self.g.hidden)
        self.actor_opt = optax.adam(self.g.actor_lr)
        self.critic_opt = optax.adam(self.g.critic_lr)
        self._explore_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), EXPLORATION_SEED_SALT)
        self._observe_only = jax.jit(self._add_rows)
        self._observe_train = jax.jit(self._add_and_train)
        self._act = jax.jit(self.actor_net.apply)
        self._explore = jax.jit(self._explore_action)
        self._random = jax.jit(self._random_action)

    @staticmethod
    def _check(cfg) -> None:
        g = cfg.gem
        if g.pairing not in losses.PAIRINGS:
            raise ConfigError(
                f"gem.pairing: '{g.pairing}' is not one of {', '.join(losses.PAIRINGS)}"
            )
        positive = ("capacity", "train_every", "gradient_steps", "policy_delay", "refresh_chunk")
        for key in positive:
            if g[key] <= 0:
                raise ConfigError(f"gem.{key} must be positive, got {g[key]}")
        if not 0.0 < g.alpha <= 1.0 or not 0.0 < g.target_rate <= 1.0:
            raise ConfigError("need 0 < gem.alpha <= 1 and 0 < gem.target_rate <= 1")
        if g.learning_starts < 0 or g.learning_starts % g.train_every:
            raise ConfigError(
                f"gem.learning_starts={g.learning_starts} must be a non-negative multiple of "
                f"gem.train_every={g.train_every}"
            )
        if len(g.hidden) < 1:
            raise ConfigError("gem.hidden needs at least one layer")

    # ------------------------------------------------------------------ state

    def init_state(self, key: jax.Array) -> GEMState:
        actor_key, critic_key, key = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        actor_params = self.actor_net.init(actor_key, obs)
        critic_params = self.critic_net.init(critic_key, obs, jnp.zeros((1, self.act_dim)))
        capacity = self.g.capacity
        from agent.online import loop_state  # the loop owns its counters

        return GEMState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_actor_params=jax.tree.map(jnp.copy, actor_params),
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            actor_opt_state=self.actor_opt.init(actor_params),
            critic_opt_state=self.critic_opt.init(critic_params),
            replay=replay_lib.empty(replay_lib.row_spec(self.obs_dim, self.act_dim), capacity),
            memory=jnp.zeros((capacity, 2), jnp.float32),
            key=key,
            step=jnp.int32(0),
            loop=loop_state(),
        )

    # ------------------------------------------------------------------ memory

    def target_twin_values(self, state: GEMState, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Q^X(s) = min over twin X of Q'_k(s, a~), a~ the smoothed target action: [B, 2]."""
        g = self.g
        action = self.actor_net.apply(state.target_actor_params, obs)
        action = losses.smoothed_actions(action, key, g.target_noise, g.target_noise_clip)
        return losses.twin_values(self.critic_net.apply(state.target_critic_params, obs, action))

    def refresh_memory(self, state: GEMState, key: jax.Array) -> jax.Array:
        """Twin back-propagation over every stored trajectory: the memory [capacity, 2].

        The ring buffer is rolled so that the oldest row comes first (the kernel sweeps storage
        order as time order); empty rows become one-row trajectories that nothing reads.
        """
        replay = state.replay
        capacity = replay.capacity
        chunk = min(self.g.refresh_chunk, capacity)
        keys = jax.random.split(key, -(-capacity // chunk))

        def values_of(index, obs):
            # Chunks past the filled rows are skipped (a partly filled memory costs less).
            return jax.lax.cond(
                index * chunk < replay.size,
                lambda: self.target_twin_values(state, obs, keys[index]),
                lambda: jnp.zeros((chunk, 2), jnp.float32),
            )

        values = batched_apply(values_of, replay.data["next_observations"], chunk)
        valid = jnp.arange(capacity) < replay.size
        ends = (replay.data["episode_ends"] > 0.5) | ~valid
        oldest_first = {
            "rewards": replay.data["rewards"],
            "masks": replay.data["masks"],
            "episode_ends": ends.astype(jnp.float32),
        }
        oldest_first = {k: jnp.roll(v, -replay.cursor) for k, v in oldest_first.items()}
        values = jnp.roll(values, -replay.cursor, axis=0)
        returns = replay_memory_returns(values, oldest_first, self.g.gamma)
        return jnp.roll(returns, replay.cursor, axis=0)

    # ------------------------------------------------------------------ updates

    def critic_update(self, state: GEMState, batch: dict, key: jax.Array) -> tuple[tuple, dict]:
        """One step of the four critics on their targets: memory returns, or one-step (TD3)."""
        g = self.g
        if g.memory:
            returns = batch["memory"]
        else:
            next_values = self.target_twin_values(state, batch["next_observations"], key)
            returns = losses.one_step_returns(
                batch["rewards"], batch["masks"], next_values, g.gamma
            )

        def loss_fn(params):
            q = self.critic_net.apply(params, batch["observations"], batch["actions"])
            return losses.critic_loss(q, returns, g.alpha, g.pairing), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic_params)
        updates, opt_state = self.critic_opt.update(
            grads, state.critic_opt_state, state.critic_params
        )
        params = optax.apply_updates(state.critic_params, updates)
        metrics = {
            "train/critic_loss": loss,
            "train/q_mean": jnp.mean(q),
            "train/target_return": jnp.mean(returns),
        }
        return (params, opt_state), metrics

    def actor_update(self, state: GEMState, obs: jax.Array) -> tuple[tuple, jax.Array]:
        """One deterministic policy-gradient step on -mean_k Q_k(s, pi(s))."""

        def loss_fn(params):
            action = self.actor_net.apply(params, obs)
            return losses.actor_loss(self.critic_net.apply(state.critic_params, obs, action))

        loss, grads = jax.value_and_grad(loss_fn)(state.actor_params)
        updates, opt_state = self.actor_opt.update(grads, state.actor_opt_state, state.actor_params)
        return (optax.apply_updates(state.actor_params, updates), opt_state), loss

    def train_step(self, state: GEMState, _=None) -> tuple[GEMState, dict]:
        """Sample a uniform batch (with memory returns), a critic step, a delayed actor step."""
        key, sample_key, noise_key = jax.random.split(state.key, 3)
        with_memory = state.replay._replace(data={**state.replay.data, "memory": state.memory})
        batch = replay_lib.sample(with_memory, sample_key, self.g.batch_size)
        (critic_params, critic_opt), metrics = self.critic_update(state, batch, noise_key)
        state = state._replace(critic_params=critic_params, critic_opt_state=critic_opt, key=key)

        def actor_step(s):
            (params, opt_state), loss = self.actor_update(s, batch["observations"])
            return s._replace(actor_params=params, actor_opt_state=opt_state), loss

        state, actor_loss = jax.lax.cond(
            state.step % self.g.policy_delay == 0,
            actor_step,
            lambda s: (s, jnp.float32(jnp.nan)),
            state,
        )
        metrics["train/actor_loss"] = actor_loss
        return state._replace(step=state.step + 1), metrics

    def _add_rows(self, state: GEMState, rows: dict) -> GEMState:
        return state._replace(replay=replay_lib.add(state.replay, rows))

    def _add_and_train(self, state: GEMState, rows: dict) -> tuple[GEMState, dict]:
        state = self._add_rows(state, rows)
        rate = self.g.target_rate
        state = state._replace(
            target_actor_params=polyak(state.actor_params, state.target_actor_params, rate),
            target_critic_params=polyak(state.critic_params, state.target_critic_params, rate),
        )
        metrics = {}
        if self.g.memory:
            key, refresh_key = jax.random.split(state.key)
            memory = self.refresh_memory(state, refresh_key)
            state = state._replace(memory=memory, key=key)
            valid = (jnp.arange(state.replay.capacity) < state.replay.size)[:, None]
            metrics["train/memory_return"] = jnp.sum(memory * valid) / (2 * state.replay.size)
        state, step_metrics = jax.lax.scan(
            self.train_step, state, None, length=self.g.gradient_steps
        )
        metrics.update({k: jnp.nanmean(v) for k, v in step_metrics.items()})
        return state, metrics

    # ------------------------------------------------------------------ online protocol

    def observe(self, state: GEMState, rows: dict, learn: bool) -> tuple[GEMState, dict]:
        """Store a chunk of transitions; with `learn`, targets + memory + gradient steps."""
        rows = {k: jnp.asarray(v) for k, v in rows.items()}
        if learn:
            return self._observe_train(state, rows)
        return self._observe_only(state, rows), {}

    def _explore_action(self, params: dict, obs: jax.Array, env_step: jax.Array) -> jax.Array:
        key = jax.random.fold_in(self._explore_key, env_step)
        action = self.actor_net.apply(params, obs[None])[0]
        noise = self.g.exploration_noise * jax.random.normal(key, action.shape)
        return jnp.clip(action + noise, -1.0, 1.0)

    def _random_action(self, env_step: jax.Array) -> jax.Array:
        key = jax.random.fold_in(self._explore_key, env_step)
        return jax.random.uniform(key, (self.act_dim,), minval=-1.0, maxval=1.0)

    def explore(self, state: GEMState, obs: np.ndarray, env_step: int) -> np.ndarray:
        """The behaviour action at `env_step`: uniform before learning_starts, then
        clip(pi(s) + N(0, exploration_noise^2), -1, 1); a function of (seed, env_step, params)."""
        if env_step < self.g.learning_starts:
            return np.asarray(self._random(env_step))
        return np.asarray(self._explore(state.actor_params, obs, env_step))

    def act(self, state: GEMState, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy pi(s) for evaluation, obs [B, obs_dim]."""
        return np.asarray(self._act(state.actor_params, obs))
