"""LEQ from pixels (LEQ_DV3): two stages in one run.

    "model"  [0, model_steps)        the RSSM alone on replay windows (skipped when
                                     `world_model.path` gives a trained one)
    "warm"   [model_steps, + warm)   optional (`critic_warm_start` steps): the critic alone
                                     regresses the data's discounted Monte-Carlo returns
    "leq"    [.., steps)             actor, critic and value on the frozen world model

A "leq" step draws `rssm.batch_size` x `rssm.length` posterior latents of the dataset: with
`leq_pixels.starts: episodes` (the default) from the latent cache, every episode filtered once
by the frozen model from its first frame (latent_cache.py); with `starts: windows` (LEQ_DV3's
form) by filtering replay windows from the zero state at every step, dropping each window's
first `burn_in` latents, which have not seen enough frames. Every latent starts an imagined
rollout of `leq_pixels.horizon` steps with
stochastic actor samples and a random prior head per step. The critic regresses the lower
expectile of the continue-masked lambda-return (agent/returns.py) plus the replay critic loss
on the windows' real transitions; the value regresses the imagined Q values and is the
baseline of the REINFORCE actor with DreamerV3's return normalisation (losses.py,
return_scale.py; `actor_objective: dpg`: the state version's per-step deterministic policy
gradient through the model, dpg.py, whose actor std then only shapes the critic's rollouts).
The slow critic is an EMA of the critic (rate `slow_rate` per step), the target of the
`slowreg` regulariser. Each network takes one step of the shared optimiser step
(agent/optimizers.py); the metrics are logged as `train/*`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent import optimizers
from agent import replay as replay_lib
from agent.config import ConfigError
from agent.distributions import twohot_bins, twohot_mean
from agent.leq_pixels import dpg, losses, networks
from agent.leq_pixels.latent_cache import (
    CachedTransitions,
    LatentCache,
    build_latent_cache,
    sample_transitions,
)
from agent.leq_pixels.return_scale import return_scale, update_return_scale
from agent.networks import polyak
from agent.optimizers import apply_gradients
from agent.protocol import EVAL, Agent, Context, Spec
from agent.returns import continue_lambda_returns, trajectory_weights
from agent.world_model.rssm import RssmCarry, RssmLatent, RssmWorldModel, sequence_from_window
from agent.world_model.rssm_net import feature
from agent.world_model.rssm_report import model_report
from agent.world_model.rssm_training import (
    RssmTrainState,
    init_rssm_training,
    train_on_windows,
)

MODEL, WARM, LEQ = "model", "warm", "leq"
sg = jax.lax.stop_gradient


class LEQPixelsState(NamedTuple):
    world: Any  # the world model's params (frozen in the LEQ phase)
    world_opt: Any  # its optimiser state (used in the model phase only)
    actor: Any
    critic: Any
    slow_critic: Any
    value: Any
    actor_opt: Any
    critic_opt: Any
    value_opt: Any
    return_low: jax.Array  # EMA of the 5th percentile of imagined returns
    return_high: jax.Array  # EMA of the 95th percentile


class Rollout(NamedTuple):
    feats: jax.Array  # [H+1, N, F]
    noise: jax.Array  # [H+1, N, A] the actor's standard-normal draws, u = mean + std * noise
    actions: jax.Array  # [H+1, N, A]
    rewards: jax.Array  # [H, N]
    continues: jax.Array  # [H, N]


class Targets(NamedTuple):
    """What one LEQ step's losses regress on, computed once from the frozen model."""

    roll: Rollout
    returns: jax.Array  # [H+1, N] continue-masked lambda-returns G_0..G_{H-1}, then G_H = Q_H
    weights: jax.Array  # [H+1, N] products of the continues before each step
    q_mean: jax.Array  # [H+1, N] the critic's mean at the imagined (s, a)
    slow_mean: jax.Array  # [H, N] the slow critic's
    real_feats: jax.Array  # [M, F] posterior features of the dataset's transitions
    real_actions: jax.Array  # [M, A]
    data_targets: jax.Array  # [M] r + gamma_c * Q(s', a' ~ pi)
    data_slow: jax.Array  # [M] the slow critic at the real (s, a)


class RealLatents(NamedTuple):
    """Posterior latents of the dataset: imagination starts and real transitions."""

    start: RssmLatent  # [N] imagination starts
    feats: jax.Array  # [M, F] s_t of the real transitions
    actions: jax.Array  # [M, A]
    rewards: jax.Array  # [M]
    masks: jax.Array  # [M]
    next_feats: jax.Array  # [M, F] s_{t+1}
    returns: jax.Array | None = None  # [M] the data's Monte-Carlo returns (cached form only)


class LEQPixelsAgent(Agent):
    """Lower-expectile actor-critic in the RSSM's latent imagination."""

    uses_world_model = True
    device_replay = False
    policy_fields = ("world", "actor")
    vmaps_seeds = False  # its world model: trained and saved, or cached, per run

    def __init__(self, cfg, spec: Spec, context: Context) -> None:
        super().__init__(cfg, spec, context)
        if not isinstance(context.world, RssmWorldModel):
            raise ConfigError(
                "method 'leq_pixels' imagines with an RSSM: set world_model.kind=rssm"
            )
        self.world: RssmWorldModel = context.world
        # the model phase (and the windows form's filter) loop on the host in the plain formulation
        self.host_loop_chunks = self.world.steps_loop_on_host
        c = cfg.leq_pixels
        self.model_steps = 0 if context.world_params is not None else int(c.model_steps)
        self.warm_steps = int(c.critic_warm_start)
        self.warm_end = self.model_steps + self.warm_steps
        if cfg.train.steps <= self.warm_end:
            raise ConfigError(
                f"train.steps={cfg.train.steps} leaves no LEQ steps after "
                f"leq_pixels.model_steps={self.model_steps} world-model steps and "
                f"leq_pixels.critic_warm_start={self.warm_steps} critic steps"
            )
        self.batch, self.length = int(cfg.rssm.batch_size), int(cfg.rssm.length)
        self.rows, self._report = model_report(cfg, self.world, context.data_size)
        self.horizon, self.lam, self.tau = int(c.horizon), float(c.lam), float(c.tau)
        self.slowreg, self.slow_rate = float(c.slowreg), float(c.slow_rate)
        self.entropy_coef, self.data_scale = float(c.entropy), float(c.data_scale)
        self.return_rate = float(c.return_rate)
        self.return_masks = c.return_masks
        self.actor_objective = c.actor_objective
        self.starts, self.burn_in, self.act = c.starts, int(c.burn_in), c.act
        self.samples_when_evaluating = self.act == "sample"  # the filter's z
        if self.warm_steps and self.starts != "episodes":
            raise ConfigError(
                f"leq_pixels.critic_warm_start={self.warm_steps} regresses the latent cache's "
                "Monte-Carlo returns: set leq_pixels.starts=episodes"
            )
        if self.starts == "windows" and self.burn_in >= self.length:
            raise ConfigError(
                f"leq_pixels.burn_in={self.burn_in} drops every latent of a window of "
                f"rssm.length={self.length} transitions: set it below the length"
            )
        self.bins = twohot_bins(self.world.cfg.reward_bins)
        hidden = tuple(c.hidden)
        self.actor_net = networks.actor_net(hidden, spec.act_dim)
        self.critic_net = networks.critic_net(hidden, len(self.bins))
        self.value_net = networks.value_net(hidden, len(self.bins))
        leq_steps = cfg.train.steps - self.warm_end  # the critic's schedule spans the warm start
        self.actor_tx = self._optimizer(c, c.actor_lr, leq_steps)
        self.critic_tx = self._optimizer(c, c.critic_lr, leq_steps + self.warm_steps)
        self.value_tx = self._optimizer(c, c.critic_lr, leq_steps)

    @staticmethod
    def _optimizer(c, lr: float, leq_steps: int) -> optax.GradientTransformation:
        """`leq_pixels.optimizer` at `lr`, warmed up and annealed over the LEQ phase."""
        schedule = optimizers.lr_schedule(lr, int(c.warmup), leq_steps, c.anneal)
        if c.optimizer == "laprop":
            return optimizers.laprop(schedule, float(c.agc))
        return optimizers.adam(schedule, float(c.grad_clip))

    # ---------------------------------------------------------------------------- state ----
    def init(self, key: jax.Array, spec: Spec) -> LEQPixelsState:
        k_world, k_actor, k_critic, k_value = jax.random.split(key, 4)
        world = init_rssm_training(self.world, k_world)
        if self.context.world_params is not None:
            world = RssmTrainState(self.context.world_params, world.opt_state)
        feat = jnp.zeros((1, self.world.cfg.feature_dim))
        action = jnp.zeros((1, spec.act_dim))
        actor = self.actor_net.init(k_actor, feat)
        critic = self.critic_net.init(k_critic, feat, action)
        value = self.value_net.init(k_value, feat)
        return LEQPixelsState(
            world.params, world.opt_state, actor, critic, jax.tree.map(jnp.copy, critic), value,
            self.actor_tx.init(actor), self.critic_tx.init(critic), self.value_tx.init(value),
            jnp.zeros(()), jnp.zeros(()),
        )  # fmt: skip

    def phase(self, step: int) -> str:
        if step < self.model_steps:
            return MODEL
        return WARM if step < self.warm_end else LEQ

    def batch_size(self, phase: str) -> int:
        return self.batch

    def _reads_latent_cache(self, phase: str) -> bool:
        """The warm start and the LEQ phase read the latent cache (starts: episodes)."""
        return phase != MODEL and self.starts == "episodes"

    def host_batch(self, phase: str, replay: Any, rng: np.random.Generator) -> dict:
        if self._reads_latent_cache(phase):
            return {}  # the warm start and the LEQ phase read the latent cache (phase_data)
        rows = self.rows if phase == MODEL else None  # the actor-critic may read every row
        return replay.sample_windows(rng, self.batch, self.length, rows=rows)

    def loops_on_host(self, phase: str) -> bool:
        # the cached LEQ phase runs no convolution: its chunks scan on the device
        return self.host_loop_chunks and not self._reads_latent_cache(phase)

    def phase_data(self, phase: str, state: LEQPixelsState, replay: Any, key: jax.Array):
        """The warm start's and the LEQ phase's latent cache (starts: episodes): every episode
        filtered once by the frozen world model (latent_cache.py); None otherwise."""
        if not self._reads_latent_cache(phase):
            return None
        rows = len(replay.data["episode_ends"])
        print(f"filtering the dataset's {rows} rows with the frozen world model", flush=True)
        return build_latent_cache(self.world, state.world, replay.data, key)

    def phase_data_key(self, phase: str) -> str:
        """The warm start and the LEQ phase read one latent cache (the model is frozen in both)."""
        return "latent_cache" if phase in (WARM, LEQ) else phase

    def trained_world_model(self, state: LEQPixelsState) -> tuple | None:
        return (self.world, state.world) if self.model_steps else None

    def report(self, state: LEQPixelsState, replay: Any, key: jax.Array) -> tuple[dict, dict]:
        """The world model's open-loop predictions on held-out windows (`model.*`)."""
        return self._report(state.world, replay, key)

    # ----------------------------------------------------------------------------- steps ----
    def train(self, phase, state: LEQPixelsState, replay, key) -> tuple[LEQPixelsState, dict]:
        if phase == MODEL:
            world = RssmTrainState(state.world, state.world_opt)
            world, metrics = train_on_windows(
                self.world, world, replay, key, self.batch, self.length, self.rows
            )
            return state._replace(world=world.params, world_opt=world.opt_state), metrics
        sample_key, key = jax.random.split(key)
        if phase == WARM:
            return self._warm_step(state, self._cached_latents(replay, sample_key))
        if isinstance(replay, LatentCache):
            real = self._cached_latents(replay, sample_key)
        else:
            real = self._window_latents(sg(state.world), replay, sample_key)
        return self._leq_step(state, real, key)

    def _cached_latents(self, cache: LatentCache, key) -> RealLatents:
        """batch x length rows of the latent cache: starts and real transitions."""
        t: CachedTransitions = sample_transitions(cache, key, self.batch * self.length)
        return RealLatents(
            t.start, feature(t.start.h, t.start.z), t.actions, t.rewards, t.masks,
            feature(t.next.h, t.next.z), t.returns,
        )  # fmt: skip

    def _window_latents(self, params, replay, key) -> RealLatents:
        """Replay windows filtered from the zero state, less each window's first `burn_in`
        latents (as starts) and transitions (for the replay critic)."""
        window_key, obs_key = jax.random.split(key)
        window = replay_lib.sample_windows(replay, window_key, self.batch, self.length)
        seq = sequence_from_window(window)
        latents, _, _ = self.world.observe_sequence(params, seq["images"], seq["actions"], obs_key)
        latents = jax.tree.map(lambda x: sg(x[:, self.burn_in :]), latents)  # [B, L+1-k]
        feats = feature(latents.h, latents.z)
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        tail = lambda x: flat(x[:, self.burn_in :])
        return RealLatents(
            jax.tree.map(flat, latents), flat(feats[:, :-1]), tail(seq["actions"]),
            tail(seq["rewards"]), tail(seq["masks"]), flat(feats[:, 1:]),
        )  # fmt: skip

    def _warm_step(self, state: LEQPixelsState, real: RealLatents) -> tuple:
        """The critic's two-hot regression onto the data's discounted Monte-Carlo returns G_t
        (losses.data_critic_loss with these targets and no slow regulariser), one step; the
        slow critic follows at its rate."""

        def critic_loss(critic):
            logits = self.critic_net.apply(critic, real.feats, real.actions)
            return losses.data_critic_loss(logits, real.returns, real.returns, 0.0, self.bins)

        critic, opt, loss, norm = apply_gradients(
            self.critic_tx, state.critic, state.critic_opt, critic_loss
        )
        state = state._replace(
            critic=critic,
            critic_opt=opt,
            slow_critic=polyak(critic, state.slow_critic, self.slow_rate),
        )
        metrics = {
            "train/warm_critic_loss": loss,
            "train/critic_grad_norm": norm,
            "train/data_q": jnp.mean(self._q_mean(critic, real.feats, real.actions)),
            "train/data_mc_return": jnp.mean(real.returns),
        }
        return state, metrics

    def _sample_action(self, actor, feat, key):
        """(noise, u, a): u = mean + std * noise, noise ~ N(0, I), a = tanh(u)."""
        mean, std = self.actor_net.apply(actor, feat)
        noise = jax.random.normal(key, mean.shape)
        u = mean + std * noise
        return noise, u, jnp.tanh(u)

    def _imagine(self, params, actor, start: RssmLatent, key) -> Rollout:
        """H steps from every start latent with stochastic actor samples (no gradients)."""
        world = self.world

        def step(latent, k):
            act_key, model_key = jax.random.split(k)
            feat = world.features(params, latent)
            noise, _, action = self._sample_action(actor, feat, act_key)
            latent, reward, cont = world.imagine_step(params, latent, action, model_key)
            return latent, (feat, noise, action, reward, cont)

        keys = jax.random.split(key, self.horizon + 1)
        last, (feats, noises, actions, rewards, conts) = jax.lax.scan(step, start, keys[:-1])
        last_feat = world.features(params, last)
        last_noise, _, last_action = self._sample_action(actor, last_feat, keys[-1])
        cat = lambda xs, x: jnp.concatenate([xs, x[None]], axis=0)
        return Rollout(
            sg(cat(feats, last_feat)), sg(cat(noises, last_noise)), sg(cat(actions, last_action)),
            sg(rewards), sg(conts),
        )  # fmt: skip

    def _q_mean(self, critic, feats, actions):
        return twohot_mean(self.critic_net.apply(critic, feats, actions), self.bins)

    def _leq_step(
        self, state: LEQPixelsState, real: RealLatents, key
    ) -> tuple[LEQPixelsState, dict]:
        """One LEQ step on the frozen model: targets first, then critic, value and actor, each
        from the state before this step (the critic's update does not move the actor's Q)."""
        img_key, next_key, dpg_key = jax.random.split(key, 3)
        params = sg(state.world)
        start = real.start
        t = self._targets(state, params, real, img_key, next_key)
        critic, critic_opt, critic_metrics = self._update_critic(state, t)
        value, value_opt, value_metrics = self._update_value(state, t)
        low, high = update_return_scale(
            state.return_low, state.return_high, t.returns, self.return_rate
        )
        scale = return_scale(low, high)
        actor, actor_opt, actor_metrics = self._update_actor(
            state, params, start, t, scale, dpg_key
        )
        slow = polyak(critic, state.slow_critic, self.slow_rate)
        state = state._replace(
            actor=actor, critic=critic, slow_critic=slow, value=value, actor_opt=actor_opt,
            critic_opt=critic_opt, value_opt=value_opt, return_low=low, return_high=high,
        )  # fmt: skip
        metrics = {
            **critic_metrics,
            **value_metrics,
            **actor_metrics,
            "train/imagined_return": jnp.mean(t.returns),
            "train/imagined_reward": jnp.mean(t.roll.rewards),
            "train/imagined_continue": jnp.mean(t.roll.continues),
            "train/lambda_return_gap": jnp.mean(t.returns[:-1] - t.q_mean[:-1]),
            "train/q_mean": jnp.mean(t.q_mean),
            "train/data_target": jnp.mean(t.data_targets),
            "train/return_scale": scale,
        }
        if real.returns is not None:  # the critic on the data against the data's own returns
            metrics["train/data_q"] = jnp.mean(self._q_mean(state.critic, real.feats, real.actions))
            metrics["train/data_mc_return"] = jnp.mean(real.returns)
        return state, metrics

    def _targets(self, state, params, real: RealLatents, img_key, next_key) -> Targets:
        """H imagined steps from every start latent, their continue-masked lambda-returns
        (agent/returns.py), and the replay critic's targets r + gamma_c * Q(s', a' ~ pi) on the
        real transitions."""
        roll = self._imagine(params, state.actor, real.start, img_key)
        h = self.horizon
        q_all = self._q_mean(state.critic, roll.feats, roll.actions)  # [H+1, N]
        feats, actions = roll.feats[:h], roll.actions[:h]
        returns = continue_lambda_returns(
            roll.rewards, roll.continues, q_all, self.lam, self.return_masks
        )
        next_action = self._sample_action(state.actor, real.next_feats, next_key)[2]
        next_q = self._q_mean(state.critic, real.next_feats, next_action)
        return Targets(
            roll=roll,
            returns=jnp.concatenate([returns, q_all[-1:]], axis=0),
            weights=trajectory_weights(roll.continues, with_last=True),
            q_mean=q_all,
            slow_mean=self._q_mean(state.slow_critic, feats, actions),
            real_feats=real.feats,
            real_actions=real.actions,
            data_targets=losses.data_targets(
                real.rewards, real.masks, next_q, self.world.cfg.cont_horizon
            ),
            data_slow=self._q_mean(state.slow_critic, real.feats, real.actions),
        )

    def _update_critic(self, state: LEQPixelsState, t: Targets):
        """Imagined lower-expectile loss + data_scale * replay loss (losses.py), one Adam step."""
        h = self.horizon  # steps t < H: G_H = Q_H would be the critic's own target
        feats, actions = t.roll.feats[:h], t.roll.actions[:h]
        returns, q_mean, weights = t.returns[:h], t.q_mean[:h], t.weights[:h]

        def critic_loss(critic):
            imagined = losses.imagined_critic_loss(
                self.critic_net.apply(critic, feats, actions),
                returns, q_mean, t.slow_mean, weights, self.tau, self.slowreg, self.bins,
            )  # fmt: skip
            data = losses.data_critic_loss(
                self.critic_net.apply(critic, t.real_feats, t.real_actions),
                t.data_targets, t.data_slow, self.slowreg, self.bins,
            )  # fmt: skip
            return imagined + self.data_scale * data, (imagined, data)

        critic, opt, (loss, (imagined, data)), norm = apply_gradients(
            self.critic_tx, state.critic, state.critic_opt, critic_loss, has_aux=True
        )
        metrics = {
            "train/critic_loss": loss,
            "train/critic_imagined_loss": imagined,
            "train/critic_data_loss": data,
            "train/critic_grad_norm": norm,
        }
        return critic, opt, metrics

    def _update_value(self, state: LEQPixelsState, t: Targets):
        """The baseline V(s) regresses the critic's imagined Q values at t = 0..H, one step."""
        feats = t.roll.feats

        def value_loss(value):
            return losses.value_loss(
                self.value_net.apply(value, feats), t.q_mean, t.weights, self.bins
            )

        value, opt, loss, norm = apply_gradients(
            self.value_tx, state.value, state.value_opt, value_loss
        )
        return value, opt, {"train/value_loss": loss, "train/value_grad_norm": norm}

    def _update_actor(self, state: LEQPixelsState, params, start, t: Targets, scale, dpg_key):
        """REINFORCE on the normalised lower-expectile advantage at t = 0..H (losses.actor_loss),
        or with `actor_objective: dpg` the per-step action gradients through the model (dpg.py)."""
        feats = t.roll.feats
        baseline = twohot_mean(self.value_net.apply(state.value, feats), self.bins)
        if self.actor_objective == "dpg":
            found = dpg.action_gradients(
                self.world, params,
                lambda f: jnp.tanh(self.actor_net.apply(state.actor, f)[0]),
                lambda f, a: self._q_mean(state.critic, f, a),
                start, dpg_key, self.horizon, self.lam, self.return_masks,
            )  # fmt: skip

        def actor_loss(actor):
            if self.actor_objective == "dpg":
                mean, std = self.actor_net.apply(actor, found.feats)
                loss = dpg.dpg_surrogate(
                    jnp.tanh(mean), found.grads, found.returns, found.q_values, self.tau
                )
                return loss, jnp.mean(losses.gaussian_entropy(std))
            mean, std = self.actor_net.apply(actor, feats)
            log_prob, entropy = losses.reparameterised_terms(mean, std, t.roll.noise)
            loss = losses.actor_loss(
                log_prob, entropy, t.returns, t.q_mean, baseline, t.weights, scale, self.tau,
                self.entropy_coef,
            )  # fmt: skip
            return loss, jnp.mean(entropy)

        actor, opt, (loss, entropy), norm = apply_gradients(
            self.actor_tx, state.actor, state.actor_opt, actor_loss, has_aux=True
        )
        metrics = {
            "train/actor_loss": loss,
            "train/actor_entropy": entropy,
            "train/actor_grad_norm": norm,
        }
        return actor, opt, metrics

    # ---------------------------------------------------------------------------- acting ----
    def policy(self, state: LEQPixelsState, carry, obs, mode, key):
        """Filter the frame into the latent (after the previous action): z ~ q(z | h, o) with
        `leq_pixels.act: sample` (DreamerV3's, the latents the actor trained on) or its mode;
        then act: tanh(mean) in evaluation, a tanh-Gaussian sample when exploring."""
        params = state.world
        latent_key, action_key = jax.random.split(key)
        prev = None if carry is None else carry.action
        latent_key = latent_key if self.act == "sample" else None
        _, latent = self.world.observe(params, carry, obs, prev, latent_key)
        feat = self.world.features(params, latent)
        if mode == EVAL:
            action = jnp.tanh(self.actor_net.apply(state.actor, feat)[0])
        else:
            action = self._sample_action(state.actor, feat, action_key)[2]
        return RssmCarry(latent, action), action
