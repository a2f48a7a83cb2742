"""The LEQ agent: world model, BC + FQE pre-training, then LEQ updates with dataset expansion.

Gradient steps are counted across the three phases (`train.steps` includes pre-training):

    [0, bc_steps)                      BC of the actor (§3.7)
    [bc_steps, bc_steps + fqe_steps)   FQE of the BC policy (§3.7)
    [bc_steps + fqe_steps, train.steps) LEQ updates (§3.4); every `rollout_freq` steps (first at
                                       the phase start) D_model is expanded (§3.5)

The world model is trained before step 0 (or loaded from `world_model.path`, or from the run's
own `world_model.npz` when resuming) and lives in the state, so a checkpoint is self-contained.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs
from agent import replay as replay_lib
from agent.config import ConfigError
from agent.leq import update as leq
from agent.world_model import EnsembleConfig, EnsembleWorldModel
from envs.offline_data import OfflineData

WORLD_MODEL_FILE = "world_model.npz"


class LEQState(NamedTuple):
    ac: leq.ActorCritic
    bc_opt: Any
    fqe_opt: Any
    model_buffer: replay_lib.Replay  # D_model: start states for imagination
    world_model: Any  # EnsembleParams (fixed after training)
    scaler: tuple  # (mean, std) over [s, a], from the world model
    key: jax.Array
    step: jax.Array


def ensemble_config(cfg) -> EnsembleConfig:
    """The world-model section of the config as an EnsembleConfig (errors as ConfigError)."""
    w = cfg.world_model
    try:
        return EnsembleConfig(
            num_members=w.members,
            num_elites=w.elites,
            hidden_sizes=tuple(w.hidden),
            weight_decays=tuple(w.weight_decays),
            learning_rate=w.lr,
            batch_size=w.batch_size,
            holdout_fraction=w.holdout_fraction,
            holdout_max=w.holdout_max,
            max_epochs=w.max_epochs,
            patience=w.patience,
            elite_sampling=w.elite_sampling,
        )
    except ValueError as exc:
        raise ConfigError(f"world_model: {exc}") from None


def hyper_from_config(cfg) -> leq.LEQHyper:
    c = cfg.leq
    for key, allowed in (
        ("policy_objective", leq.POLICY_OBJECTIVES),
        ("critic_target", leq.CRITIC_TARGETS),
    ):
        if c[key] not in allowed:
            raise ConfigError(f"leq.{key}='{c[key]}' is not one of: {', '.join(allowed)}")
    if c.expectile and c.policy_objective != "one_step" and not 0.0 < c.tau < 1.0:
        raise ConfigError(f"leq.tau must lie in (0, 1), got {c.tau}")
    return leq.LEQHyper(
        gamma=c.gamma, lam=c.lam, horizon=c.horizon, tau=c.tau, beta=c.beta, ema_rate=c.ema_rate,
        expectile=c.expectile, policy_objective=c.policy_objective, critic_target=c.critic_target,
    )  # fmt: skip


class LEQAgent:
    """Lower Expectile Q-learning with lambda-returns on imagined rollouts (algorithms.md §3)."""

    def __init__(self, cfg, obs_dim: int, act_dim: int, data: OfflineData | None):
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        c = cfg.leq
        self.hyper = hyper_from_config(cfg)
        self.pretrain_bc = c.bc_steps if c.pretrain else 0
        self.pretrain_end = self.pretrain_bc + (c.fqe_steps if c.pretrain else 0)
        self._check_schedule(cfg)
        self.world = EnsembleWorldModel(obs_dim, act_dim, ensemble_config(cfg))
        self.nets = leq.make_nets(
            act_dim, tuple(c.hidden), c.actor_lr, c.critic_lr, cfg.train.steps - self.pretrain_end
        )
        self.bc_tx, self.fqe_tx = optax.adam(c.bc_lr), optax.adam(c.fqe_lr)
        task = envs.get_task(cfg.task)
        self.termination_fn = task.termination_fn
        self.reward_scale = data.reward_scale if data is not None else 1.0
        self.reward_bias = data.reward_bias if data is not None else 0.0
        self.data = data
        self.world_params = None
        self.capacity = c.rollout_retain * c.rollout_length * c.rollout_batch
        self._jit()

    def _check_schedule(self, cfg) -> None:
        c, chunk = cfg.leq, cfg.train.updates_per_call
        for name, value in (
            ("leq.bc_steps", self.pretrain_bc),
            ("leq.fqe_steps", self.pretrain_end - self.pretrain_bc),
            ("leq.rollout_freq", c.rollout_freq),
        ):
            if value % chunk:
                raise ConfigError(
                    f"{name}={value} must be a multiple of train.updates_per_call={chunk}"
                )
        if cfg.train.steps <= self.pretrain_end:
            raise ConfigError(
                f"train.steps={cfg.train.steps} leaves no LEQ steps after "
                f"{self.pretrain_end} pre-training steps (leq.bc_steps + leq.fqe_steps)"
            )

    def _jit(self) -> None:
        self._bc_chunk = jax.jit(self._bc_chunk_fn)
        self._fqe_chunk = jax.jit(self._fqe_chunk_fn)
        self._leq_chunk = jax.jit(self._leq_chunk_fn)
        self._expand = jax.jit(self._expand_fn)
        self._act = jax.jit(lambda actor, scaler, obs: leq.policy_fn(self.nets, actor, scaler)(obs))

    # ---------------------------------------------------------------------------- setup ----
    def prepare(self, logdir: Path, log) -> None:
        """Train the world model, or load it (world_model.path, or this run's own saved copy)."""
        own = Path(logdir) / WORLD_MODEL_FILE
        source = self.cfg.world_model.path
        if source:
            self.world_params = self._load_world(Path(source))
            print(f"world model: loaded {source}", flush=True)
        elif own.exists():
            self.world_params = self._load_world(own)
            print(f"world model: reusing {own}", flush=True)
        else:
            print("world model: training the dynamics ensemble", flush=True)
            key = jax.random.PRNGKey(self.cfg.seed + 7919)  # its own stream: not the agent's
            self.world_params = self.world.train(self.data, key, log=log)
            self.world.save(self.world_params, str(own))
            elites = np.asarray(self.world_params.elites).tolist()
            print(f"world model: trained, elites {elites}, saved to {own}", flush=True)

    def _load_world(self, path: Path):
        if not path.is_file():
            raise ConfigError(f"world_model.path: no such file {path}")
        try:
            return self.world.load(str(path))
        except (ValueError, KeyError) as exc:
            raise ConfigError(str(exc)) from None

    def init_state(self, key: jax.Array) -> LEQState:
        k_actor, k_critic, key = jax.random.split(key, 3)
        world = self.world_params
        if world is None:  # evaluation only: the checkpoint supplies the real values
            world = self.world.init_params(jax.random.PRNGKey(0))
        scaler = tuple(jnp.asarray(x) for x in self.world.input_scaler(world))
        obs = jnp.zeros((1, self.obs_dim))
        actor = self.nets.actor.init(k_actor, obs, *scaler)
        critic = self.nets.critic.init(k_critic, obs, jnp.zeros((1, self.act_dim)), *scaler)
        ema = jax.tree_util.tree_map(jnp.copy, critic)  # a copy: donation must not alias
        ac = leq.ActorCritic(
            actor, critic, ema, self.nets.actor_tx.init(actor), self.nets.critic_tx.init(critic)
        )
        buffer = replay_lib.empty(
            {"observations": ((self.obs_dim,), np.float32)}, capacity=self.capacity
        )
        return LEQState(
            ac, self.bc_tx.init(actor), self.fqe_tx.init(critic), buffer, world, scaler, key,
            jnp.int32(0),
        )  # fmt: skip

    # ----------------------------------------------------------------------- the model ----
    def _model_step(self, world, obs, action, key):
        """One imagined step in training units: r = reward_scale * r_raw + reward_bias."""
        next_obs, raw = self.world.step(world, obs, action, key)
        return next_obs, self.reward_scale * raw + self.reward_bias

    # --------------------------------------------------------------------------- chunks ----
    def train_chunk(self, state: LEQState, replay: replay_lib.Replay) -> tuple[LEQState, dict]:
        step = int(state.step)
        if step < self.pretrain_bc:
            return self._bc_chunk(state, replay)
        if step < self.pretrain_end:
            return self._fqe_chunk(state, replay)
        metrics = {}
        if (step - self.pretrain_end) % self.cfg.leq.rollout_freq == 0:
            state = self._expand(state, replay)
        state, metrics = self._leq_chunk(state, replay)
        return state, {**metrics, "train/model_buffer_size": state.model_buffer.size}

    def _scan(self, state: LEQState, body) -> tuple[LEQState, dict]:
        def step(state, _):
            key, sub = jax.random.split(state.key)
            state, metrics = body(state._replace(key=key), sub)
            return state._replace(step=state.step + 1), metrics

        length = self.cfg.train.updates_per_call
        state, metrics = jax.lax.scan(step, state, None, length=length)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    def _bc_chunk_fn(self, state: LEQState, replay) -> tuple[LEQState, dict]:
        def body(state, key):
            data = replay_lib.sample(replay, key, self.cfg.leq.bc_batch_size)
            actor, opt, metrics = leq.bc_step(
                self.nets, self.bc_tx, state.ac.actor, state.bc_opt, state.scaler, data
            )
            return state._replace(ac=state.ac._replace(actor=actor), bc_opt=opt), metrics

        return self._scan(state, body)

    def _fqe_chunk_fn(self, state: LEQState, replay) -> tuple[LEQState, dict]:
        def body(state, key):
            data = replay_lib.sample(replay, key, self.cfg.train.batch_size)
            ac = state.ac
            critic, ema, opt, metrics = leq.fqe_step(
                self.nets, self.fqe_tx, self.hyper, ac.actor, ac.critic, ac.ema, state.fqe_opt,
                state.scaler, data,
            )  # fmt: skip
            return state._replace(ac=ac._replace(critic=critic, ema=ema), fqe_opt=opt), metrics

        return self._scan(state, body)

    def _leq_chunk_fn(self, state: LEQState, replay) -> tuple[LEQState, dict]:
        model_step = functools.partial(self._model_step, state.world_model)

        def body(state, key):
            k_env, k_model, k_update = jax.random.split(key, 3)
            data = replay_lib.sample(replay, k_env, self.cfg.train.batch_size)
            starts = replay_lib.sample(state.model_buffer, k_model, self.cfg.leq.model_batch_size)
            ac, metrics = leq.leq_update(
                self.nets, self.hyper, model_step, self.termination_fn, state.ac, state.scaler,
                starts["observations"], data, k_update,
            )  # fmt: skip
            return state._replace(ac=ac), metrics

        return self._scan(state, body)

    def _expand_fn(self, state: LEQState, replay) -> LEQState:
        """D_model <- D_model + rollout_length x rollout_batch model states (FIFO, §3.5)."""
        c = self.cfg.leq
        key, k_start, k_roll = jax.random.split(state.key, 3)
        starts = replay_lib.sample(replay, k_start, c.rollout_batch)["observations"]
        model_step = functools.partial(self._model_step, state.world_model)
        states = leq.expansion_states(
            self.nets, state.ac.actor, state.scaler, model_step, starts, k_roll, c.rollout_length
        )
        buffer = replay_lib.add(state.model_buffer, {"observations": states})
        return state._replace(model_buffer=buffer, key=key)

    # ---------------------------------------------------------------------------- acting ----
    def act(self, state: LEQState, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self._act(state.ac.actor, state.scaler, obs))
