"""VEM: Offline RL with Value-based Episodic Memory (algorithms.md §4).

Three parts, each a pure function in `losses.py` or here:

* memory returns R^ [N, 2] over the whole dataset (§4.2): the target value heads on every
  row's next observation, V^(1) = min(V_0, V_1), V^(2) = min(V_2, V_3), fed to the shared kernel
  (`agent.memory`, Form B `twin` by default, Form A `max` as an option);
* expectile V-learning (§4.1): the four online heads regress onto their pair's column of R^;
* advantage-weighted policy learning (§4.3): A^ = min_X R^(X) - mean_heads V, weights
  B softmax(A^ / temperature), Gaussian log-likelihood of the dataset actions.

Schedule (`vem.schedule`):

* `two_phase` (the official code, §4.5): steps [0, value_steps) train V only, refreshing the
  memory with the target heads whenever step % memory_every == 0; at step value_steps the
  target heads become copies of the (now frozen) online heads (the code reloads the critic and
  deep-copies it into the targets) and the memory is refreshed once; the remaining
  train.steps - value_steps steps train the policy only.
* `interleaved`: every step does one V step and one policy step on the same batch, the memory
  is refreshed whenever step % memory_every == 0.

The refresh happens inside the jitted scan (`lax.cond` on the step counter), so it is correct for
any `train.updates_per_call`, and the memory lives in the state: checkpoints capture it and a
resumed run continues exactly.

Where this differs from the official code (§4.7), and how to get the code's behaviour:

* expectile loss: the paper's |tau - 1(u < 0)| u^2 by default (`vem.expectile_form: code`,
  `vem.expectile: 0.3` for the code's squared-weight form);
* timeouts are bootstrapped (`vem.bootstrap_timeouts: false` for the code's treatment);
* observations are standardised with dataset statistics (`vem.obs_norm: false`);
* no duplicated final row for terminal-ending trajectories (in the code it only adds a
  candidate r_T + gamma r_T at a terminal step) and no `max_step` horizon cap (the kernel is
  uncapped; equal whenever trajectories are at most 1000 rows, as in D4RL);
* rows are sampled uniformly from the whole dataset (every row stores its next observation).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent import replay as replay_lib
from agent.bc import observation_stats
from agent.config import ConfigError
from agent.memory import replay_memory_returns as memory_returns
from agent.networks import batched_apply, polyak
from agent.vem import losses
from agent.vem.networks import gaussian_policy, value_heads
from envs.offline_data import OfflineData

SCHEDULES = ("two_phase", "interleaved")
MEMORY_FORMS = ("twin", "max")
VALUE_METRICS = ("train/value_loss", "train/value_mean", "train/memory_return")
POLICY_METRICS = (
    "train/actor_loss",
    "train/log_prob",
    "train/advantage",
    "train/weight_max",
    "train/policy_log_std",
)


class VEMState(NamedTuple):
    value_params: dict  # four V heads (two pairs)
    target_params: dict  # their target copies (read only by the memory refresh)
    policy_params: dict
    value_opt_state: optax.OptState
    policy_opt_state: optax.OptState
    memory: jax.Array  # [N, 2] memory returns R^(1), R^(2) of every dataset row
    key: jax.Array
    step: jax.Array
    obs_mean: jax.Array
    obs_std: jax.Array


def pair_values(values: jax.Array) -> jax.Array:
    """Four heads [N, 4] -> the two estimators [N, 2]: V^(X) = min over the heads of pair X."""
    return jnp.min(values.reshape(values.shape[0], 2, 2), axis=-1)


def _dataset_for_template(cfg) -> OfflineData:
    """Evaluation rebuilds the agent without data; the memory's shape [N, 2] still needs N."""
    from envs.datasets import load_dataset

    return load_dataset(cfg.task, cfg.dataset)


class VEMAgent:
    """VEM with the memory refresh and both phases fused into one jitted scan per call."""

    def __init__(self, cfg, obs_dim: int, act_dim: int, data: OfflineData | None):
        self.v = cfg.vem
        self._check(cfg)
        if data is None:
            data = _dataset_for_template(cfg)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.num_rows = len(data)
        self.batch_size = cfg.train.batch_size
        self.updates_per_call = cfg.train.updates_per_call
        self.value_net = value_heads(self.v.value_hidden)
        self.policy_net = gaussian_policy(self.v.policy_hidden, act_dim)
        self.value_opt = optax.adam(self.v.value_lr)
        self.policy_opt = optax.adam(self.v.policy_lr)
        if self.v.obs_norm:
            self._stats = observation_stats(data, obs_dim)
        else:
            self._stats = observation_stats(None, obs_dim)
        self._train_chunk = jax.jit(self._chunk)
        self._refresh = jax.jit(self.refresh)
        self._act = jax.jit(self._mean_action)

    @staticmethod
    def _check(cfg) -> None:
        v = cfg.vem
        choices = {"schedule": SCHEDULES, "memory_form": MEMORY_FORMS}
        choices["expectile_form"] = losses.EXPECTILE_FORMS
        for key, allowed in choices.items():
            if v[key] not in allowed:
                raise ConfigError(f"vem.{key}: '{v[key]}' is not one of {', '.join(allowed)}")
        if v.schedule == "two_phase" and not 0 <= v.value_steps < cfg.train.steps:
            raise ConfigError(
                f"vem.value_steps={v.value_steps} must be in [0, train.steps={cfg.train.steps}) "
                "(the policy phase gets train.steps - value_steps steps)"
            )
        if v.memory_every <= 0 or v.refresh_chunk <= 0:
            raise ConfigError("vem.memory_every and vem.refresh_chunk must be positive")
        if not 0.0 < v.expectile < 1.0 or v.temperature <= 0 or not 0.0 < v.target_rate <= 1.0:
            raise ConfigError(
                "need 0 < vem.expectile < 1, vem.temperature > 0 and 0 < vem.target_rate <= 1"
            )

    # ------------------------------------------------------------------ state

    def init_state(self, key: jax.Array) -> VEMState:
        value_key, policy_key, key = jax.random.split(key, 3)
        mean, std = (jnp.asarray(x) for x in self._stats)
        dummy = jnp.zeros((1, self.obs_dim))
        value_params = self.value_net.init(value_key, dummy, mean, std)
        policy_params = self.policy_net.init(policy_key, dummy, mean, std)
        # The memory is always refreshed before it is first read (step 0, or the phase switch).
        memory = jnp.zeros((self.num_rows, 2), jnp.float32)
        return VEMState(
            value_params=value_params,
            target_params=jax.tree.map(jnp.copy, value_params),
            policy_params=policy_params,
            value_opt_state=self.value_opt.init(value_params),
            policy_opt_state=self.policy_opt.init(policy_params),
            memory=memory,
            key=key,
            step=jnp.int32(0),
            obs_mean=mean,
            obs_std=std,
        )

    # ------------------------------------------------------------------ memory

    def next_values(self, params: dict, state: VEMState, data: dict) -> jax.Array:
        """[N, 2] estimators V^(X)(s_{t+1}) of `params`' heads on every row's next observation."""

        def heads(_, obs):
            return self.value_net.apply(params, obs, state.obs_mean, state.obs_std)

        values = batched_apply(heads, data["next_observations"], self.v.refresh_chunk)
        return pair_values(values)

    def refresh(self, state: VEMState, replay: replay_lib.Replay) -> jax.Array:
        """Memory returns [N, 2] from the target heads (the code's `update_memory`)."""
        values = self.next_values(state.target_params, state, replay.data)
        return memory_returns(
            values, replay.data, self.v.gamma, self.v.memory_form, self.v.bootstrap_timeouts
        )

    def _refresh_flags(self, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(refresh now, copy online -> target first) for the gradient step about to run."""
        periodic = step % self.v.memory_every == 0
        if self.v.schedule == "interleaved":
            return periodic, jnp.bool_(False)
        switch = step == self.v.value_steps
        return (periodic & (step < self.v.value_steps)) | switch, switch

    def _maybe_refresh(self, state: VEMState, replay: replay_lib.Replay) -> VEMState:
        due, switch = self._refresh_flags(state.step)

        def refresh(_):
            target = jax.tree.map(
                lambda o, t: jnp.where(switch, o, t), state.value_params, state.target_params
            )
            return target, self.refresh(state._replace(target_params=target), replay)

        def keep(_):
            return state.target_params, state.memory

        target, memory = jax.lax.cond(due, refresh, keep, None)
        return state._replace(target_params=target, memory=memory)

    # ------------------------------------------------------------------ updates

    def value_update(self, state: VEMState, batch: dict) -> tuple[tuple, dict]:
        """One EVL step on all four heads, then the target update. -> ((params, target, opt), m)."""

        def loss_fn(params):
            values = self.value_net.apply(
                params, batch["observations"], state.obs_mean, state.obs_std
            )
            v = self.v
            loss = losses.value_loss(values, batch["memory"], v.expectile, v.expectile_form)
            return loss, values

        (loss, values), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.value_params)
        updates, opt_state = self.value_opt.update(grads, state.value_opt_state, state.value_params)
        params = optax.apply_updates(state.value_params, updates)
        target = polyak(params, state.target_params, self.v.target_rate)
        metrics = {
            "train/value_loss": loss,
            "train/value_mean": jnp.mean(values),
            "train/memory_return": jnp.mean(batch["memory"]),
        }
        return (params, target, opt_state), metrics

    def policy_update(self, state: VEMState, batch: dict) -> tuple[tuple, dict]:
        """One advantage-weighted step; V comes from the online heads (frozen in this step)."""
        obs = batch["observations"]
        values = self.value_net.apply(state.value_params, obs, state.obs_mean, state.obs_std)
        adv = losses.advantages(batch["memory"], values)
        weights = losses.advantage_weights(adv, self.v.temperature)

        def loss_fn(params):
            mean, log_std = self.policy_net.apply(params, obs, state.obs_mean, state.obs_std)
            log_prob = losses.gaussian_log_prob(batch["actions"], mean, log_std)
            return losses.policy_loss(log_prob, weights), (log_prob, log_std)

        (loss, (log_prob, log_std)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.policy_params
        )
        updates, opt_state = self.policy_opt.update(
            grads, state.policy_opt_state, state.policy_params
        )
        params = optax.apply_updates(state.policy_params, updates)
        metrics = {
            "train/actor_loss": loss,
            "train/log_prob": jnp.mean(log_prob),
            "train/advantage": jnp.mean(adv),
            "train/weight_max": jnp.max(weights),
            "train/policy_log_std": jnp.mean(log_std),
        }
        return (params, opt_state), metrics

    def _apply_value(self, state: VEMState, batch: dict) -> tuple[VEMState, dict]:
        (params, target, opt_state), metrics = self.value_update(state, batch)
        state = state._replace(value_params=params, target_params=target, value_opt_state=opt_state)
        return state, metrics

    def _apply_policy(self, state: VEMState, batch: dict) -> tuple[VEMState, dict]:
        (params, opt_state), metrics = self.policy_update(state, batch)
        return state._replace(policy_params=params, policy_opt_state=opt_state), metrics

    def train_step(self, state: VEMState, replay: replay_lib.Replay) -> tuple[VEMState, dict]:
        """Refresh if due, sample a uniform batch of rows (with their memory returns), update."""
        state = self._maybe_refresh(state, replay)
        key, sample_key = jax.random.split(state.key)
        with_memory = replay._replace(data={**replay.data, "memory": state.memory})
        batch = replay_lib.sample(with_memory, sample_key, self.batch_size)
        state = state._replace(key=key)
        if self.v.schedule == "interleaved":
            after_value, value_metrics = self._apply_value(state, batch)
            state, policy_metrics = self._apply_policy(state, batch)
            state = state._replace(
                value_params=after_value.value_params,
                target_params=after_value.target_params,
                value_opt_state=after_value.value_opt_state,
            )
            metrics = {**value_metrics, **policy_metrics}
        else:
            state, metrics = jax.lax.cond(
                state.step < self.v.value_steps,
                lambda s: _with_zeros(self._apply_value(s, batch), POLICY_METRICS),
                lambda s: _with_zeros(self._apply_policy(s, batch), VALUE_METRICS),
                state,
            )
        return state._replace(step=state.step + 1), metrics

    # ------------------------------------------------------------------ agent protocol

    def _chunk(self, state: VEMState, replay: replay_lib.Replay) -> tuple[VEMState, dict]:
        start = state.step
        state, metrics = jax.lax.scan(
            lambda s, _: self.train_step(s, replay), state, None, length=self.updates_per_call
        )
        steps = start + jnp.arange(self.updates_per_call)
        return state, self._phase_means(metrics, steps)

    def _phase_means(self, metrics: dict, steps: jax.Array) -> dict:
        """Per-key means over the chunk's steps of the phase that produced the key."""
        if self.v.schedule == "interleaved":
            return jax.tree.map(jnp.mean, metrics)
        in_value = (steps < self.v.value_steps).astype(jnp.float32)
        out = {}
        for key, values in metrics.items():
            mask = in_value if key in VALUE_METRICS else 1.0 - in_value
            out[key] = jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        return out

    def train_chunk(self, state: VEMState, replay: replay_lib.Replay) -> tuple[VEMState, dict]:
        start = int(state.step)
        state, metrics = self._train_chunk(state, replay)
        return state, self._present(metrics, start)

    def _present(self, metrics: dict, start: int) -> dict:
        """Drop the metrics of a phase that ran no step in this chunk."""
        if self.v.schedule == "interleaved":
            return metrics
        stop = start + self.updates_per_call
        drop = POLICY_METRICS if stop <= self.v.value_steps else ()
        drop = VALUE_METRICS if start >= self.v.value_steps else drop
        return {k: v for k, v in metrics.items() if k not in drop}

    def _mean_action(self, params: dict, obs: jax.Array, mean: jax.Array, std: jax.Array):
        return self.policy_net.apply(params, obs, mean, std)[0]

    def act(self, state: VEMState, obs: np.ndarray) -> np.ndarray:
        """The Gaussian mean (deterministic evaluation, as in the code)."""
        action = self._act(state.policy_params, obs, state.obs_mean, state.obs_std)
        return np.asarray(action)


def _with_zeros(result: tuple[VEMState, dict], keys: tuple[str, ...]) -> tuple[VEMState, dict]:
    """Pad a branch's metrics with zeros for the other phase's keys (lax.cond needs one tree)."""
    state, metrics = result
    return state, {**metrics, **{k: jnp.zeros((), jnp.float32) for k in keys}}
