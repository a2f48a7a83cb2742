"""The LEQ agent: BC + FQE pre-training, then LEQ updates with dataset expansion.

Gradient steps are counted across the three phases (`train.steps` includes pre-training):

    "bc"   [0, bc_steps)                        BC of the actor (§3.7)
    "fqe"  [bc_steps, bc_steps + fqe_steps)      FQE of the BC policy (§3.7)
    "leq"  [bc_steps + fqe_steps, train.steps)   LEQ updates (§3.4); at the phase start the
                                                 critic's EMA copy becomes the FQE critic, and
                                                 every `rollout_freq` steps (first at the phase
                                                 start) D_model is expanded (§3.5)

The world model (built, fitted or loaded by the runner) reaches the agent through the context;
its params live in the state, so a checkpoint is self-contained. Imagination runs on the world
model's latents: `observe` turns dataset observations into latents, `imagine_step` rolls them
forward with reward and continue, `features` is what actor and critic read.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent import replay as replay_lib
from agent.config import ConfigError
from agent.leq import critic_check, networks
from agent.leq import update as leq
from agent.protocol import EVAL, Agent, Context, Spec
from agent.returns import discounted_returns_to_go

BC, FQE, LEQ = "bc", "fqe", "leq"
CRITIC_CHECK_ROWS = 4096  # dataset pairs per critic check


class LEQState(NamedTuple):
    ac: leq.ActorCritic
    bc_opt: Any
    fqe_opt: Any
    model_buffer: replay_lib.Replay  # D_model: start latents for imagination
    world_model: Any  # the world model's params (fixed after training)
    scaler: tuple  # (mean, std) over [features, a], from the world model
    step: jax.Array  # gradient steps done (device counter, read only inside programs)


def hyper_from_config(cfg) -> leq.LEQHyper:
    c = cfg.leq
    return leq.LEQHyper(
        gamma=c.gamma, lam=c.lam, horizon=c.horizon, tau=c.tau, beta=c.beta, ema_rate=c.ema_rate,
        expectile=c.expectile, policy_objective=c.policy_objective, critic_target=c.critic_target,
        shared_rollout=c.shared_rollout, ema_weight=c.ema_weight,
    )  # fmt: skip


class LEQAgent(Agent):
    """Lower Expectile Q-learning with lambda-returns on imagined rollouts."""

    uses_world_model = True
    policy_fields = ("ac", "world_model", "scaler")
    counter_fields = ("step",)
    phase_costs = {BC: 1.0, FQE: 1.0, LEQ: 15.0}  # imagined rollouts: ~15x a BC step on CPU

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        c = cfg.leq
        self.hyper = hyper_from_config(cfg)
        self.bc_end = c.bc_steps if c.pretrain else 0
        self.pretrain_end = self.bc_end + (c.fqe_steps if c.pretrain else 0)
        self._check_schedule(cfg)
        self.world = context.world
        self.nets = leq.make_nets(
            spec.act_dim, tuple(c.hidden), c.actor_lr, c.critic_lr,
            cfg.train.steps - self.pretrain_end, c.actor_lr_schedule,
        )  # fmt: skip
        self.bc_tx, self.fqe_tx = optax.adam(c.bc_lr), optax.adam(c.fqe_lr)
        self.capacity = c.rollout_retain * c.rollout_length * c.rollout_batch
        self._mc_returns = None  # the dataset's discounted returns, for `report`

    def chunk_aligned(self) -> dict[str, int]:
        return {
            "leq.bc_steps": self.bc_end,
            "leq.fqe_steps": self.pretrain_end - self.bc_end,
            "leq.rollout_freq": self.cfg.leq.rollout_freq,
        }

    def _check_schedule(self, cfg) -> None:
        if cfg.train.steps <= self.pretrain_end:
            raise ConfigError(
                f"train.steps={cfg.train.steps} leaves no LEQ steps after "
                f"{self.pretrain_end} pre-training steps (leq.bc_steps + leq.fqe_steps)"
            )

    # ---------------------------------------------------------------------------- state ----
    def init(self, key: jax.Array, spec: Spec) -> LEQState:
        k_actor, k_critic, _ = jax.random.split(key, 3)
        world = self.context.world_params
        if world is None:  # a template (evaluation): the checkpoint supplies the real values
            world = self.world.init(jax.random.PRNGKey(0))
        scaler = tuple(jnp.asarray(x) for x in self.world.input_scaler(world))
        _, latent = self.world.observe(world, None, spec.zeros_obs(1), None)
        feat = self.world.features(world, jnp.asarray(latent))
        actor = self.nets.actor.init(k_actor, feat, *scaler)
        critic = self.nets.critic.init(k_critic, feat, jnp.zeros((1, spec.act_dim)), *scaler)
        ema = jax.tree_util.tree_map(jnp.copy, critic)  # a copy: donation must not alias
        ac = leq.ActorCritic(
            actor, critic, ema, self.nets.actor_tx.init(actor), self.nets.critic_tx.init(critic)
        )
        buffer = replay_lib.buffer(
            {"observations": (latent.shape[1:], np.float32)}, capacity=self.capacity
        )
        return LEQState(
            ac, self.bc_tx.init(actor), self.fqe_tx.init(critic), buffer, world, scaler,
            jnp.int32(0),
        )  # fmt: skip

    def phase(self, step: int) -> str:
        if step < self.bc_end:
            return BC
        return FQE if step < self.pretrain_end else LEQ

    # ---------------------------------------------------------------------- the model ----
    def _latents(self, world, batch: dict) -> dict:
        """The dataset batch with its observations replaced by the world model's latents."""
        latent = lambda obs: self.world.observe(world, None, obs, None)[1]
        return {
            **batch,
            "observations": latent(batch["observations"]),
            "next_observations": latent(batch["next_observations"]),
        }

    def report(self, state: LEQState, replay, key: jax.Array) -> tuple[dict, dict]:
        """Whether the critic has converged: Q on dataset pairs against their discounted
        Monte-Carlo returns (agent/leq/critic_check.py), at every evaluation."""
        data = replay.data
        if self._mc_returns is None:  # the offline dataset never changes: once per run
            self._mc_returns = discounted_returns_to_go(
                jnp.asarray(data["rewards"]), jnp.asarray(data["episode_ends"]), self.hyper.gamma
            )
        rows = critic_check.sample_rows(int(replay.size), key, CRITIC_CHECK_ROWS)
        q = self._q_on_rows(state, replay_lib.gather(data, np.asarray(rows)))
        return critic_check.critic_against_returns(q, self._mc_returns[rows]), {}

    @functools.partial(jax.jit, static_argnums=0)
    def _q_on_rows(self, state: LEQState, batch: dict) -> jax.Array:
        data = self._latents(state.world_model, batch)
        q = leq.q_fn(self.nets, state.ac.critic, state.scaler)
        return q(data["observations"], data["actions"])

    def _world_step(self, world):
        """(latent, action, key) -> (next latent, reward, continue) of the frozen model."""
        return functools.partial(self.world.imagine_step, world)

    # -------------------------------------------------------------------------- chunks ----
    def begin_chunk(self, phase, state: LEQState, replay, key) -> tuple[LEQState, dict]:
        """LEQ phase: EMA copy <- FQE critic at the phase start; expand D_model when due."""
        if phase != LEQ:
            return state, {}
        at_start = state.step == self.pretrain_end
        ac = state.ac
        ema = jax.tree.map(lambda c, e: jnp.where(at_start, c, e), ac.critic, ac.ema)
        state = state._replace(ac=ac._replace(ema=ema))
        due = (state.step - self.pretrain_end) % self.cfg.leq.rollout_freq == 0
        state = jax.lax.cond(due, lambda s: self._expand(s, replay, key), lambda s: s, state)
        return state, {"train/model_buffer_size": state.model_buffer.size}

    def _expand(self, state: LEQState, replay, key) -> LEQState:
        """D_model <- D_model + rollout_length x rollout_batch model latents (FIFO, §3.5)."""
        c = self.cfg.leq
        k_start, k_roll = jax.random.split(key)
        starts = replay_lib.sample(replay, k_start, c.rollout_batch)
        starts = self._latents(state.world_model, starts)["observations"]
        states = leq.expansion_states(
            self.nets, state.ac.actor, state.scaler, self._world_step(state.world_model),
            starts, k_roll, c.rollout_length,
        )  # fmt: skip
        buffer = replay_lib.add(state.model_buffer, {"observations": states})
        return state._replace(model_buffer=buffer)

    def train(self, phase, state: LEQState, replay, key) -> tuple[LEQState, dict]:
        step = {BC: self._bc_step, FQE: self._fqe_step, LEQ: self._leq_step}[phase]
        state, metrics = step(state, replay, key)
        return state._replace(step=state.step + 1), metrics

    def _bc_step(self, state: LEQState, replay, key):
        data = self._latents(
            state.world_model, replay_lib.sample(replay, key, self.cfg.leq.bc_batch_size)
        )
        actor, opt, metrics = leq.bc_step(
            self.nets, self.bc_tx, state.ac.actor, state.bc_opt, state.scaler, data
        )
        return state._replace(ac=state.ac._replace(actor=actor), bc_opt=opt), metrics

    def _fqe_step(self, state: LEQState, replay, key):
        data = self._latents(
            state.world_model, replay_lib.sample(replay, key, self.cfg.leq.batch_size)
        )
        ac = state.ac
        critic, ema, opt, metrics = leq.fqe_step(
            self.nets, self.fqe_tx, self.hyper, ac.actor, ac.critic, ac.ema, state.fqe_opt,
            state.scaler, data,
        )  # fmt: skip
        return state._replace(ac=ac._replace(critic=critic, ema=ema), fqe_opt=opt), metrics

    def _leq_step(self, state: LEQState, replay, key):
        k_env, k_model, k_update = jax.random.split(key, 3)
        data = self._latents(
            state.world_model, replay_lib.sample(replay, k_env, self.cfg.leq.batch_size)
        )
        starts = replay_lib.sample(state.model_buffer, k_model, self.cfg.leq.model_batch_size)
        ac, metrics = leq.leq_update(
            self.nets, self.hyper, self._world_step(state.world_model), state.ac, state.scaler,
            starts["observations"], data, jax.random.split(k_update),
        )  # fmt: skip
        return state._replace(ac=ac), metrics

    # -------------------------------------------------------------------------- acting ----
    def policy(self, state: LEQState, carry, obs, mode, key):
        """tanh(mu(features)) in evaluation; tanh(mu + sigma eps) when exploring."""
        carry, latent = self.world.observe(state.world_model, carry, obs, None)
        feat = self.world.features(state.world_model, latent)
        mu, log_std = self.nets.actor.apply(state.ac.actor, feat, *state.scaler)
        if mode == EVAL:
            return carry, networks.deterministic_action(mu)
        return carry, networks.stochastic_action(mu, log_std, key)
