"""VEM: Offline RL with Value-based Episodic Memory.

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

Phases (host-side, `phase(step)`): "value" and "policy" for `two_phase`, "joint" for
`interleaved`. The refresh happens inside the jitted step (`lax.cond` on the device step
counter), so it is correct for any `train.updates_per_call`, and the memory lives in the state:
checkpoints capture it and a resumed run continues exactly. The dataset size N (the memory's
length) comes from the runner's context, and every batch carries the `index` of its rows, by
which the rows' memory returns are gathered.

Where this differs from the official code (§4.7), and how to get the code's behaviour:

* expectile loss: the paper's |tau - 1(u < 0)| u^2 by default (`vem.expectile_form: code`,
  `vem.expectile: 0.3` for the code's squared-weight form);
* timeouts are bootstrapped (`vem.bootstrap_timeouts: false` for the code's treatment);
* observations are standardised with dataset statistics (`vem.obs_norm: false`);
* no sentinel row after trajectory ends by default (`vem.end_sentinel: true` adds it as the
  code does: a truncated end's return becomes max(r_T + gamma V(s_{T+1}), r_T));
* no `max_step` horizon cap: the kernel is uncapped, which equals the capped sweep whenever
  trajectories are at most `vem.max_step` rows, as in D4RL; the runner refuses a dataset with a
  longer trajectory in one line (`vem.max_step: null` accepts the uncapped sweep);
* rows are sampled uniformly from the whole dataset (every row stores its next observation).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import replay as replay_lib
from agent.config import ConfigError
from agent.distributions import gaussian_log_prob
from agent.memory import replay_memory_returns as memory_returns
from agent.networks import batched_apply, polyak
from agent.observations import flat_obs
from agent.optimizers import apply_gradients
from agent.protocol import EVAL, Agent, Context, DataNeeds, Spec
from agent.vem import losses
from agent.vem.networks import gaussian_policy, value_heads

VALUE, POLICY, JOINT = "value", "policy", "joint"


class VEMState(NamedTuple):
    value_params: dict  # four V heads (two pairs)
    target_params: dict  # their target copies (read only by the memory refresh)
    policy_params: dict
    value_opt_state: optax.OptState
    policy_opt_state: optax.OptState
    memory: jax.Array  # [N, 2] memory returns R^(1), R^(2) of every dataset row
    step: jax.Array
    obs_mean: jax.Array
    obs_std: jax.Array


def pair_values(values: jax.Array) -> jax.Array:
    """Four heads [N, 4] -> the two estimators [N, 2]: V^(X) = min over the heads of pair X."""
    return jnp.min(values.reshape(values.shape[0], 2, 2), axis=-1)


class VEMAgent(Agent):
    """VEM with the memory refresh fused into the jitted steps."""

    policy_fields = ("policy_params", "obs_mean", "obs_std")
    counter_fields = ("step",)

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.v = cfg.vem
        self._check(cfg)
        self.num_rows = context.data_size
        self.batch = cfg.vem.batch_size
        self.value_net = value_heads(self.v.value_hidden)
        self.policy_net = gaussian_policy(self.v.policy_hidden, spec.act_dim)
        self.value_opt = optax.adam(self.v.value_lr)
        self.policy_opt = optax.adam(self.v.policy_lr)
        self.data_needs = DataNeeds(self.v.max_step, int(self.v.end_sentinel), "vem.max_step")

    @staticmethod
    def _check(cfg) -> None:
        v = cfg.vem
        if v.schedule == "two_phase" and not 0 <= v.value_steps < cfg.train.steps:
            raise ConfigError(
                f"vem.value_steps={v.value_steps} must be in [0, train.steps={cfg.train.steps}) "
                "(the policy phase gets train.steps - value_steps steps)"
            )

    # ------------------------------------------------------------------ state

    def init(self, key: jax.Array, spec: Spec) -> VEMState:
        value_key, policy_key, _ = jax.random.split(key, 3)
        if self.v.obs_norm:
            mean, std = jnp.asarray(self.context.obs_mean), jnp.asarray(self.context.obs_std)
        else:
            mean, std = jnp.zeros(spec.flat_obs_dim), jnp.ones(spec.flat_obs_dim)
        dummy = jnp.zeros((1, spec.flat_obs_dim))
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
            step=jnp.int32(0),
            obs_mean=mean,
            obs_std=std,
        )

    def phase(self, step: int) -> str:
        if self.v.schedule == "interleaved":
            return JOINT
        return VALUE if step < self.v.value_steps else POLICY

    # ------------------------------------------------------------------ memory

    def next_values(self, params: dict, state: VEMState, data: dict) -> jax.Array:
        """[N, 2] estimators V^(X)(s_{t+1}) of `params`' heads on every row's next observation."""

        def heads(_, obs):
            return self.value_net.apply(params, obs, state.obs_mean, state.obs_std)

        next_obs = flat_obs(data["next_observations"], self.spec)
        values = batched_apply(heads, next_obs, self.v.refresh_chunk)
        return pair_values(values)

    def refresh(self, state: VEMState, replay: replay_lib.Replay) -> jax.Array:
        """Memory returns [N, 2] from the target heads (the code's `update_memory`)."""
        values = self.next_values(state.target_params, state, replay.data)
        v = self.v
        return memory_returns(
            values, replay.data, v.gamma, v.memory_form, v.bootstrap_timeouts, v.end_sentinel
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

    def value_update(self, state: VEMState, batch: dict) -> tuple[VEMState, dict]:
        """One EVL step on all four heads, then the target update."""
        obs = flat_obs(batch["observations"], self.spec)

        def loss_fn(params):
            values = self.value_net.apply(params, obs, state.obs_mean, state.obs_std)
            v = self.v
            loss = losses.value_loss(values, batch["memory"], v.expectile, v.expectile_form)
            return loss, values

        params, opt_state, (loss, values), norm = apply_gradients(
            self.value_opt, state.value_params, state.value_opt_state, loss_fn, has_aux=True
        )
        target = polyak(params, state.target_params, self.v.target_rate)
        metrics = {
            "train/value_loss": loss,
            "train/value_mean": jnp.mean(values),
            "train/memory_return": jnp.mean(batch["memory"]),
            "train/value_grad_norm": norm,
        }
        state = state._replace(value_params=params, target_params=target, value_opt_state=opt_state)
        return state, metrics

    def policy_update(self, state: VEMState, batch: dict) -> tuple[VEMState, dict]:
        """One advantage-weighted step; V comes from the online heads (frozen in this step)."""
        obs = flat_obs(batch["observations"], self.spec)
        values = self.value_net.apply(state.value_params, obs, state.obs_mean, state.obs_std)
        adv = losses.advantages(batch["memory"], values)
        weights = losses.advantage_weights(adv, self.v.temperature)

        def loss_fn(params):
            mean, log_std = self.policy_net.apply(params, obs, state.obs_mean, state.obs_std)
            log_prob = gaussian_log_prob(batch["actions"], mean, log_std)
            return losses.policy_loss(log_prob, weights), (log_prob, log_std)

        params, opt_state, (loss, (log_prob, log_std)), norm = apply_gradients(
            self.policy_opt, state.policy_params, state.policy_opt_state, loss_fn, has_aux=True
        )
        metrics = {
            "train/actor_loss": loss,
            "train/log_prob": jnp.mean(log_prob),
            "train/advantage": jnp.mean(adv),
            "train/weight_max": jnp.max(weights),
            "train/policy_log_std": jnp.mean(log_std),
            "train/policy_grad_norm": norm,
        }
        return state._replace(policy_params=params, policy_opt_state=opt_state), metrics

    def train(self, phase, state: VEMState, replay, key) -> tuple[VEMState, dict]:
        """Refresh if due, sample a uniform batch of rows (with their memory returns), update."""
        state = self._maybe_refresh(state, replay)
        batch = replay_lib.sample(replay, key, self.batch)
        batch["memory"] = state.memory[batch["index"]]
        if phase == JOINT:
            after_value, value_metrics = self.value_update(state, batch)
            state, policy_metrics = self.policy_update(state, batch)
            state = state._replace(
                value_params=after_value.value_params,
                target_params=after_value.target_params,
                value_opt_state=after_value.value_opt_state,
            )
            metrics = {**value_metrics, **policy_metrics}
        elif phase == VALUE:
            state, metrics = self.value_update(state, batch)
        else:
            state, metrics = self.policy_update(state, batch)
        return state._replace(step=state.step + 1), metrics

    # ------------------------------------------------------------------ acting

    def policy(self, state: VEMState, carry, obs, mode, key):
        """The Gaussian mean in evaluation (as in the code); a sample of it when exploring."""
        x = flat_obs(obs, self.spec)
        mean, log_std = self.policy_net.apply(state.policy_params, x, state.obs_mean, state.obs_std)
        if mode == EVAL:
            return carry, mean
        noise = jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
        return carry, jnp.clip(mean + noise, -1.0, 1.0)
