"""The RSSM world model for pixels behind `WorldModel`.

Its latent is (h, z): the GRU state and a one-hot categorical sample. Training reads sequence
windows of replay transitions (`sequence_from_window`): L transitions give the L + 1 frames
o_0 .. o_L, the actions a_0 .. a_{L-1} and the rewards and masks of the L transitions. Step t's
latent is filtered from o_t after a_{t-1}, so the reward and continue heads at step t + 1
predict transition t's reward and mask (DreamerV3's alignment: a reward belongs to the frame
it leads to). A window starts from the zero state, as it starts a trajectory or a piece of one.

Loss (DreamerV3 / LEQ_DV3), averaged over batch and steps:
    L = image_scale * sum_pixels (decoder(s_t) - o_t / 255)^2
      + reward_scale * -log p_R(r_t | s_{t+1}) + cont_scale * -log p_C(c_t | s_{t+1})
      + dyn_scale * mean_k max(free, KL[sg(q_t) || p_k,t])
      + rep_scale * mean_k max(free, KL[q_t || sg(p_k,t)])
with c_t = mask_t * (1 - 1 / cont_horizon) (the discount folded into the continue head) and the
KL against all K prior heads (LEQ_DV3's choice); in imagination one head is drawn per step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agent.distributions import (
    bernoulli_log_prob,
    categorical_kl,
    categorical_mode,
    straight_through_sample,
    twohot_bins,
    twohot_log_prob,
    twohot_mean,
)
from agent.protocol import Metrics, WorldModel
from agent.world_model.rssm_config import RssmConfig
from agent.world_model.rssm_net import build_rssm, feature

IMAGE = "image"


class RssmLatent(NamedTuple):
    h: jax.Array  # [..., deter]
    z: jax.Array  # [..., stoch, classes], one-hot


class RssmCarry(NamedTuple):
    """The filter's memory between environment steps: the latent and the previous action."""

    latent: RssmLatent
    action: jax.Array  # [..., act_dim]


def sequence_from_window(window: dict) -> dict:
    """A replay window of L transitions [B, L, ...] -> the RSSM's sequence:
    images [B, L + 1, H, W, C] (o_0 .. o_L), actions [B, L, A], rewards [B, L], masks [B, L]."""
    images = jnp.concatenate(
        [window["observations"][IMAGE], window["next_observations"][IMAGE][:, -1:]], axis=1
    )
    return {
        "images": images,
        "actions": window["actions"],
        "rewards": window["rewards"],
        "masks": window["masks"],
    }


def free_kl(kl: jax.Array, free: float) -> jax.Array:
    """max(free, KL), elementwise (free bits per step)."""
    return jnp.maximum(kl, free)


class RssmWorldModel(WorldModel):
    kind = "rssm"
    fitted_before_training = False

    def __init__(self, cfg: RssmConfig, act_dim: int, image_shape: tuple[int, int, int]) -> None:
        self.cfg, self.act_dim, self.image_shape = cfg, act_dim, tuple(image_shape)
        self._init, self.net = build_rssm(cfg, act_dim, self.image_shape)
        self.bins = twohot_bins(cfg.reward_bins)

    def init(self, key: jax.Array) -> Any:
        return self._init(key, jnp.zeros((1, *self.image_shape), jnp.uint8))

    @property
    def steps_loop_on_host(self) -> bool:
        """Whether chunks of this model's gradient steps must run as a host loop: XLA on CPU
        runs the plain formulation's convolution gradients many times slower inside a
        `lax.scan` (Agent.host_loop_chunks); the fast one's scan is faster than a host loop
        (benchmarks/rssm.py, `chunk_scan_over_host_loop`)."""
        return not self.cfg.fast

    def initial_latent(self, batch_shape: tuple[int, ...]) -> RssmLatent:
        cfg = self.cfg
        return RssmLatent(
            jnp.zeros((*batch_shape, cfg.deter)), jnp.zeros((*batch_shape, cfg.stoch, cfg.classes))
        )

    # --- filtering ----------------------------------------------------------------------
    def observe_sequence(self, params: Any, images: jax.Array, actions: jax.Array, key: jax.Array):
        """Filter frames [B, T+1, ...] after actions [B, T, A] from the zero state.

        -> (latents [B, T+1], posterior logits [B, T+1, S, C], prior logits [B, T+1, K, S, C]).

        The scan carries only what depends on the previous step: h_t = GRU(h, z, a) and
        q(z_t | h_t, e_t). With the fast formulation, what needs no carry runs on all B (T+1)
        steps at once, as matrix products of T+1 times the rows: each frame's share of the
        posterior's first layer (`posterior_embed`) before the scan, and the K prior heads on
        every h_t after it. The plain formulation computes all of it per step.
        """
        net = self.net
        embed = net.encode(params, images)
        batch, steps = embed.shape[:2]
        prev = jnp.concatenate([jnp.zeros((batch, 1, self.act_dim)), actions], axis=1)
        keys = jax.random.split(key, steps)
        fast = self.cfg.fast
        # fast: the posterior reads e W[D:] + b, computed here for every frame
        frames = net.posterior_embed(params, embed) if fast else embed
        posterior = net.posterior_from_embed if fast else net.posterior

        def step(latent, xs):
            e, a, k = xs
            h = net.core(params, latent.h, latent.z, a)
            post = posterior(params, h, e)
            z = straight_through_sample(k, post)
            prior = () if fast else net.prior(params, h, None)
            return RssmLatent(h, z), (RssmLatent(h, z), post, prior)

        time_major = lambda x: jnp.swapaxes(x, 0, 1)
        _, outs = jax.lax.scan(
            step, self.initial_latent((batch,)), (time_major(frames), time_major(prev), keys)
        )
        latents, post, prior = jax.tree.map(time_major, outs)
        if fast:
            prior = net.prior(params, latents.h, None)
        return latents, post, prior

    def loss(self, params: Any, batch: dict, key: jax.Array) -> tuple[jax.Array, Metrics]:
        """The world-model loss of the module docstring on a replay window batch [B, L, ...]."""
        cfg, net = self.cfg, self.net
        seq = sequence_from_window(batch)
        latents, post, prior = self.observe_sequence(params, seq["images"], seq["actions"], key)
        feat = feature(latents.h, latents.z)
        target = seq["images"].astype(jnp.float32) / 255.0
        image_loss = jnp.sum(jnp.square(net.decode(params, feat) - target), axis=(-3, -2, -1))
        next_feat = feat[:, 1:]
        reward_nll = -twohot_log_prob(net.reward(params, next_feat), seq["rewards"], self.bins)
        cont_target = seq["masks"] * (1.0 - 1.0 / cfg.cont_horizon)
        cont_nll = -bernoulli_log_prob(net.cont(params, next_feat), cont_target)
        post_k = post[:, :, None]  # broadcast against the K prior heads
        dyn = categorical_kl(jax.lax.stop_gradient(post_k), prior)
        rep = categorical_kl(post_k, jax.lax.stop_gradient(prior))
        dyn_loss = jnp.mean(free_kl(dyn, cfg.free_nats))
        rep_loss = jnp.mean(free_kl(rep, cfg.free_nats))
        total = (
            cfg.image_scale * jnp.mean(image_loss)
            + cfg.reward_scale * jnp.mean(reward_nll)
            + cfg.cont_scale * jnp.mean(cont_nll)
            + cfg.dyn_scale * dyn_loss
            + cfg.rep_scale * rep_loss
        )
        metrics = {
            "image_loss": jnp.mean(image_loss),
            "reward_loss": jnp.mean(reward_nll),
            "cont_loss": jnp.mean(cont_nll),
            "dyn_loss": dyn_loss,
            "rep_loss": rep_loss,
            "kl": jnp.mean(dyn),
            "loss": total,
        }
        kl_heads = jnp.mean(dyn, axis=(0, 1))
        metrics.update({f"kl_head{k}": kl_heads[k] for k in range(cfg.prior_heads)})
        return total, metrics

    def observe(
        self,
        params: Any,
        carry: RssmCarry | None,
        obs: dict,
        prev_action: Any,
        key: jax.Array | None = None,
    ) -> tuple:
        """One filter step: h = GRU(h, z, a_prev), z ~ q(z | h, encoder(image)) with `key`
        (DreamerV3's acting), or the posterior's mode when `key` is None.

        carry None starts an episode (zero state and action). -> (carry, latent)."""
        net = self.net
        image = obs[IMAGE]
        if carry is None:
            latent = self.initial_latent(image.shape[:-3])
            prev_action = jnp.zeros((*image.shape[:-3], self.act_dim))
        else:
            latent = carry.latent
        h = net.core(params, latent.h, latent.z, prev_action)
        post = net.posterior(params, h, net.encode(params, image))
        z = categorical_mode(post) if key is None else straight_through_sample(key, post)
        latent = RssmLatent(h, z)
        return RssmCarry(latent, prev_action), latent

    # --- imagination --------------------------------------------------------------------
    def imagine_step(self, params: Any, latent: RssmLatent, action: jax.Array, key: jax.Array):
        """h' = GRU(h, z, a); z' ~ p_k(z | h') with one head k drawn for the whole batch;
        -> (latent', reward = two-hot mean, continue = sigmoid(logit), discount folded in)."""
        net = self.net
        head_key, z_key = jax.random.split(key)
        head = jax.random.randint(head_key, (), 0, self.cfg.prior_heads)
        h = net.core(params, latent.h, latent.z, action)
        z = straight_through_sample(z_key, net.prior(params, h, head))
        feat = feature(h, z)
        reward = twohot_mean(net.reward(params, feat), self.bins)
        return RssmLatent(h, z), reward, jax.nn.sigmoid(net.cont(params, feat))

    def features(self, params: Any, latent: RssmLatent) -> jax.Array:
        return feature(latent.h, latent.z)

    def decode(self, params: Any, latent: RssmLatent) -> jax.Array:
        """Predicted frames in [0, 1] for latents [...]: [..., H, W, C]."""
        return self.net.decode(params, feature(latent.h, latent.z))

    def input_scaler(self, params: Any) -> tuple[jax.Array, jax.Array]:
        # the features are bounded already (GRU state in [-1, 1], one-hot samples)
        size = self.cfg.feature_dim + self.act_dim
        return jnp.zeros(size), jnp.ones(size)

    def file_config(self) -> dict:
        return {
            "kind": self.kind,
            "act_dim": self.act_dim,
            "image_shape": list(self.image_shape),
            **self.cfg.file_config(),
        }
