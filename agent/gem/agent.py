"""GEM: Generalizable Episodic Memory, online, on the shared replay.

The replay IS the episodic memory: every stored transition (FIFO, `gem.capacity` rows) has a
memory-return pair (R^A, R^B) in `GEMState.memory`, recomputed over all stored trajectories by
the shared twin back-propagation kernel (`agent.memory`, Form B) with the target critics'
conservative values Q^X(s_{t+1}) = min over twin X of Q'_k(s_{t+1}, a~_{t+1}) at smoothed target
actions. The critics regress only to these returns with the asymmetric loss; the actor maximises
the mean of the four critics every `policy_delay`-th step.

The runner collects `gem.train_every` environment steps per chunk (acting uniformly at random in
the WARMUP phase, before `gem.learning_starts`), stores them in its replay, and then, once
learning has started, runs one jitted program: `begin_chunk` moves the targets by
1 - 0.995^200 (`target_rate`) and refreshes the memory, and `gem.gradient_steps` `train` steps
follow in a `lax.scan` (§5.2).

The refresh evaluates Q^X at every stored row's next state (the official code's scope) and keeps
the values in `GEMState.values`. `gem.refresh_every: K > 1` (this project's option, changes
results) re-evaluates only a rotating 1/K of the rows plus the chunk's new ones and reuses the
kept values elsewhere; the return kernel still sweeps every row each chunk.

`gem.memory: false` is the TD3 baseline on the same agent: the memory is never computed and each
critic pair regresses to its one-step target r + gamma (1 - d) min_twin Q'(s', a~) (the floor of
the memory return); presets pair it with `gem.alpha: 1` (the plain squared error).

Choices where the official code differs (§5.4):
* pairing: critics 1, 2 regress to R^A and 3, 4 to R^B (`gem.pairing: twin`, the intended
  design); `broadcast` reproduces the TF code, where every critic sees all four target columns.
* rows of the episode in progress are in the memory (the code adds an episode when it ends):
  the newest row counts as a truncated trajectory end, bootstrapping from Q^X at its next state;
  every row is sampled uniformly.
* truncated ends: the return is r_T + gamma Q^X(s_{T+1}); the code's sentinel row makes it
  max(r_T + gamma Q^X(s_{T+1}), r_T), which differs where Q^X(s_{T+1}) < 0
  (`gem.end_sentinel: true` gives the code's form; agent/memory.py).
* the horizon cap `max_step` (1000) is not applied: the runner refuses a task whose episodes
  (plus the sentinel row) are longer, where the uncapped sweep would differ.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agent import actor_critic
from agent import replay as replay_lib
from agent.config import ConfigError
from agent.gem import losses
from agent.gem.networks import critics
from agent.losses import smooth_actions, smoothed_target_actions
from agent.memory import replay_memory_returns
from agent.networks import batched_apply, deterministic_actor, even_chunk
from agent.observations import flat_obs
from agent.protocol import Context, DataNeeds, Spec

# memory: [capacity, 2] memory returns (R^A, R^B) of every replay row; values: [capacity, 2] the
# twin values Q^X(s_{t+1}) they were computed from; step: gradient steps done
GEMState = NamedTuple(
    "GEMState",
    [
        *actor_critic.DETERMINISTIC_FIELDS,
        ("memory", jax.Array),
        ("values", jax.Array),
        ("step", jax.Array),
    ],
)


class GEMAgent(actor_critic.OnlineActorCritic):
    """GEM (memory on) or TD3 (memory off) on the runner's online replay."""

    counter_fields = ("step",)

    def __init__(self, cfg, spec: Spec, context: Context):
        self.g = g = cfg.gem
        self._check(cfg)
        actor = deterministic_actor(g.hidden, spec.act_dim, layer_norm=True)
        super().__init__(cfg, spec, context, g, actor, critics(g.hidden, form=g.critic_form))
        self.updates_per_chunk = g.gradient_steps
        self.data_needs = DataNeeds(g.max_step, int(g.end_sentinel), "gem.max_step")

    @staticmethod
    def _check(cfg) -> None:
        g = cfg.gem
        if g.learning_starts % g.train_every:
            raise ConfigError(
                f"gem.learning_starts={g.learning_starts} must be a multiple of "
                f"gem.train_every={g.train_every}"
            )
        if len(g.hidden) < 1:
            raise ConfigError("gem.hidden needs at least one layer")
        if g.refresh_every > 1 and g.capacity % g.refresh_every:
            raise ConfigError(
                f"gem.refresh_every={g.refresh_every} must divide gem.capacity={g.capacity}"
            )

    # ------------------------------------------------------------------ state

    def init(self, key: jax.Array, spec: Spec) -> GEMState:
        actor_key, critic_key, _ = jax.random.split(key, 3)
        nets = (self.actor_net, self.critic_net, self.actor_opt, self.critic_opt)
        return GEMState(
            **actor_critic.initial_fields(*nets, actor_key, critic_key, spec),
            memory=jnp.zeros((self.g.capacity, 2), jnp.float32),
            values=jnp.zeros((self.g.capacity, 2), jnp.float32),
            step=jnp.int32(0),
        )

    # ------------------------------------------------------------------ memory

    def target_twin_values(
        self, state: GEMState, obs: jax.Array, key: jax.Array | None = None, eps=None
    ) -> jax.Array:
        """Q^X(s) = min over twin X of Q'_k(s, a~), a~ the smoothed target action: [B, 2]. The
        smoothing noise eps ~ N(0, target_noise^2) [B, A] is drawn from `key`, or given."""
        g = self.g
        action = self.actor_net.apply(state.target_actor_params, obs)
        if eps is None:
            action = smoothed_target_actions(action, key, g.target_noise, g.target_noise_clip)
        else:
            action = smooth_actions(action, eps, g.target_noise_clip)
        return losses.twin_values(self.critic_net.apply(state.target_critic_params, obs, action))

    def refreshed_values(
        self, state: GEMState, replay: replay_lib.Replay, key: jax.Array
    ) -> jax.Array:
        """Q^X(s_{t+1}) of the rows this chunk re-evaluates, the others as kept: [capacity, 2].

        Every row (`refresh_every` 1, and at the first learning chunk), else a rotating 1/K of
        the rows plus the `train_every` newest.
        """
        if self.g.refresh_every == 1:
            return self._evaluate(state, replay, key, None)
        rows = self._rotating_rows(state, replay)
        return jax.lax.cond(
            state.step == 0,
            lambda: self._evaluate(state, replay, key, None),
            lambda: state.values.at[rows].set(self._evaluate(state, replay, key, rows)),
        )

    def _evaluate(self, state: GEMState, replay, key: jax.Array, rows) -> jax.Array:
        """Q^X at the next states of `rows` (None: every row, skipping chunks past the filled
        ones). One noise draw per evaluated row, so the values do not depend on
        `refresh_chunk` (a speed setting)."""
        next_obs = flat_obs(replay.data["next_observations"], self.spec)
        if rows is not None:
            next_obs = next_obs[rows]
        count = next_obs.shape[0]
        eps = self.g.target_noise * jax.random.normal(key, (count, self.spec.act_dim))
        chunk = even_chunk(count, self.g.refresh_chunk)

        def values_of(index, inputs):
            obs, noise = inputs
            if rows is not None:
                return self.target_twin_values(state, obs, eps=noise)
            return jax.lax.cond(
                index * chunk < replay.size,
                lambda: self.target_twin_values(state, obs, eps=noise),
                lambda: jnp.zeros((chunk, 2), jnp.float32),
            )

        return batched_apply(values_of, (next_obs, eps), chunk)

    def _rotating_sizes(self) -> tuple[int, int]:
        """(rows of one rotating slice, newest rows) that a refresh_every > 1 chunk evaluates."""
        g = self.g
        return g.capacity // g.refresh_every, min(g.train_every, g.capacity)

    @property
    def rows_per_refresh(self) -> int:
        """Rows a refresh evaluates after the first learning chunk (all at refresh_every 1)."""
        return self.g.capacity if self.g.refresh_every == 1 else sum(self._rotating_sizes())

    def _rotating_rows(self, state: GEMState, replay: replay_lib.Replay) -> jax.Array:
        """Slice (chunk number mod K) of the K equal slices of the rows, plus the newest rows."""
        g, capacity = self.g, replay.capacity
        size, newest = self._rotating_sizes()
        start = (state.step // g.gradient_steps) % g.refresh_every * size
        newest_rows = replay.cursor - g.train_every + jnp.arange(newest)
        return jnp.concatenate([start + jnp.arange(size), newest_rows % capacity])

    def refresh_memory(
        self, state: GEMState, replay: replay_lib.Replay, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Twin back-propagation over every stored trajectory: (memory, values), each
        [capacity, 2].

        The ring buffer is rolled so that the oldest row comes first (the kernel sweeps storage
        order as time order); empty rows become one-row trajectories that nothing reads.
        """
        values = self.refreshed_values(state, replay, key)
        valid = jnp.arange(replay.capacity) < replay.size
        ends = (replay.data["episode_ends"] > 0.5) | ~valid
        oldest_first = {
            "rewards": replay.data["rewards"],
            "masks": replay.data["masks"],
            "episode_ends": ends.astype(jnp.float32),
        }
        oldest_first = {k: jnp.roll(v, -replay.cursor) for k, v in oldest_first.items()}
        returns = replay_memory_returns(
            jnp.roll(values, -replay.cursor, axis=0),
            oldest_first,
            self.g.gamma,
            end_sentinel=self.g.end_sentinel,
        )
        return jnp.roll(returns, replay.cursor, axis=0), values

    def begin_chunk(self, phase, state: GEMState, replay, key) -> tuple[GEMState, dict]:
        """Targets <- rate online + (1 - rate) targets, then (GEM) the memory refresh."""
        state = actor_critic.soft_update_targets(state, self.g.target_rate)
        if not self.g.memory:
            return state, {}
        memory, values = self.refresh_memory(state, replay, key)
        valid = (jnp.arange(replay.capacity) < replay.size)[:, None]
        mean_return = jnp.sum(memory * valid) / (2 * jnp.maximum(replay.size, 1))
        state = state._replace(memory=memory, values=values)
        return state, {"train/memory_return": mean_return}

    # ------------------------------------------------------------------ updates

    def critic_update(self, state: GEMState, batch: dict, key: jax.Array) -> tuple[GEMState, dict]:
        """One step of the four critics on their targets: memory returns, or one-step (TD3)."""
        g = self.g
        obs = flat_obs(batch["observations"], self.spec)
        if g.memory:
            returns = batch["memory"]
        else:
            next_obs = flat_obs(batch["next_observations"], self.spec)
            next_values = self.target_twin_values(state, next_obs, key)
            returns = losses.one_step_returns(
                batch["rewards"], batch["masks"], next_values, g.gamma
            )

        def loss_fn(params):
            q = self.critic_net.apply(params, obs, batch["actions"])
            return losses.critic_loss(q, returns, g.alpha, g.pairing), q

        state, (loss, q), norm = actor_critic.update_network(
            state, "critic", self.critic_opt, loss_fn, has_aux=True
        )
        metrics = {
            "train/critic_loss": loss,
            "train/q_mean": jnp.mean(q),
            "train/target_return": jnp.mean(returns),
            "train/critic_grad_norm": norm,
        }
        return state, metrics

    def actor_update(self, state: GEMState, obs: jax.Array) -> tuple[GEMState, jax.Array]:
        """One deterministic policy-gradient step on -mean_k Q_k(s, pi(s))."""

        def loss_fn(params):
            action = self.actor_net.apply(params, obs)
            return losses.actor_loss(self.critic_net.apply(state.critic_params, obs, action))

        state, loss, _ = actor_critic.update_network(state, "actor", self.actor_opt, loss_fn)
        return state, loss

    def train(self, phase, state: GEMState, replay, key) -> tuple[GEMState, dict]:
        """Sample a uniform batch (with memory returns), a critic step, a delayed actor step."""
        sample_key, noise_key = jax.random.split(key)
        batch = replay_lib.sample(replay, sample_key, self.g.batch_size)
        batch["memory"] = state.memory[batch["index"]]
        state, metrics = self.critic_update(state, batch, noise_key)
        obs = flat_obs(batch["observations"], self.spec)
        state, actor_loss = actor_critic.delayed(
            state.step, self.g.policy_delay, lambda s: self.actor_update(s, obs), state
        )
        metrics["train/actor_loss"] = actor_loss
        return state._replace(step=state.step + 1), metrics

    # ------------------------------------------------------------------ acting

    def policy(self, state: GEMState, carry, obs, mode, key):
        """pi(s) in evaluation; clip(pi(s) + N(0, exploration_noise^2), -1, 1) when exploring."""
        obs = flat_obs(obs, self.spec)
        noise = self.g.exploration_noise
        return carry, actor_critic.exploration_action(
            self.actor_net, state.actor_params, obs, mode, key, noise
        )
