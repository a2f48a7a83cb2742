"""The networks of the RSSM, in haiku, as separately callable pieces.

    sequence model   h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})         `core`
    prior heads      p_k(z_t | h_t), k = 1..K                     `prior` (one head or all)
    posterior        q(z_t | h_t, e_t), e_t = encoder(image_t)     `posterior`, `encode`
    heads            image, reward (two-hot), continue on feature = concat(h_t, flat z_t)

Every hidden layer is Linear -> RMSNorm -> SiLU (DreamerV3's choice). Images enter as uint8 and
are scaled to [-0.5, 0.5]; the decoder ends in a sigmoid and predicts frames in [0, 1].

`cfg.formulation` "fast" computes the convolutions with `conv.conv2d` (the same function as
hk.Conv2D, with gradients in XLA:CPU's fast forms) and offers the posterior in two pieces
(`posterior_embed`, `posterior_from_embed`), so a sequence filter can project every frame's
embedding once, outside its scan; "plain" is hk.Conv2D. The parameters are the same in both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp

from agent.distributions import unimix_logits
from agent.world_model.conv import conv2d
from agent.world_model.rssm_config import RssmConfig

MIN_RESOLUTION = 4  # the encoder downsamples by 2 per stage until 4x4


class RssmApply(NamedTuple):
    """The pure apply functions, each `f(params, *args)`."""

    encode: object  # images uint8 [..., H, W, C] -> embed [..., E]
    core: object  # (h [.., D], z [.., S, C], action [.., A]) -> h' [.., D]
    prior: object  # (h [.., D], head int | None) -> logits [.., S, C] or [.., K, S, C]
    posterior: object  # (h, embed) -> logits [.., S, C]
    posterior_embed: object  # embed [.., E] -> its part of the posterior's first layer [.., hid]
    posterior_from_embed: object  # (h, posterior_embed's output) -> logits [.., S, C]
    decode: object  # feature [.., F] -> image in [0, 1] [.., H, W, C]
    reward: object  # feature -> two-hot logits [.., bins]
    cont: object  # feature -> continue logit [..]


def gru_update(h: jax.Array, gates: jax.Array) -> jax.Array:
    """DreamerV3's GRU update from the gate pre-activations [.., 3 D] = (r, c, u):
    reset = sigmoid(r), cand = tanh(reset * c), update = sigmoid(u - 1),
    h' = update * cand + (1 - update) * h."""
    r, c, u = jnp.split(gates, 3, axis=-1)
    reset = jax.nn.sigmoid(r)
    cand = jnp.tanh(reset * c)
    update = jax.nn.sigmoid(u - 1.0)
    return update * cand + (1.0 - update) * h


def scale_action(action: jax.Array) -> jax.Array:
    """a / max(1, |a|), elementwise: actions enter the GRU bounded by 1."""
    return action / jax.lax.stop_gradient(jnp.maximum(1.0, jnp.abs(action)))


def feature(h: jax.Array, z: jax.Array) -> jax.Array:
    """concat(h, flat z): [.., D] and [.., S, C] -> [.., D + S C]."""
    return jnp.concatenate([h, z.reshape(*z.shape[:-2], -1)], axis=-1)


def encoder_stages(image_size: int) -> int:
    """Stride-2 stages from `image_size` down to 4x4; the size must be 4 * 2^n, n >= 1."""
    stages = int(round(math.log2(max(image_size, 1) / MIN_RESOLUTION)))
    if stages < 1 or MIN_RESOLUTION * 2**stages != image_size:
        raise ValueError(
            f"the RSSM's CNN needs square images of 8, 16, 32, 64 ... px, got {image_size}"
        )
    return stages


class FastConv2D(hk.Module):
    """hk.Conv2D's "SAME" convolution plus bias, with its parameters (names, shapes,
    initialisers), computed by `conv.conv2d`: y = conv_s(x, w) + b, with fast gradients."""

    def __init__(self, channels: int, kernel: int, stride: int, name: str) -> None:
        super().__init__(name=name)
        self.channels, self.kernel, self.stride = channels, kernel, stride

    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel, self.kernel, x.shape[-1], self.channels)
        # hk.Conv2D's default initialiser: truncated normal, stddev 1 / sqrt(fan in)
        init = hk.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(math.prod(shape[:-1])))
        w = hk.get_parameter("w", shape, x.dtype, init=init)
        b = hk.get_parameter("b", (self.channels,), x.dtype, init=jnp.zeros)
        return conv2d(x, w, self.stride, "SAME") + b


def conv_layer(
    x: jax.Array, channels: int, kernel: int, stride: int, name: str, fast: bool
) -> jax.Array:
    """A "SAME" convolution with bias named `name`: `FastConv2D` when `fast`, else hk.Conv2D
    (the same parameters and function)."""
    if fast:
        return FastConv2D(channels, kernel, stride, name)(x)
    return hk.Conv2D(channels, kernel, stride=stride, padding="SAME", name=name)(x)


def upsample(x: jax.Array, channels: int, name: str, fast: bool = False) -> jax.Array:
    """2x upsampling [B, H, W, C] -> [B, 2H, 2W, channels] as a sub-pixel convolution: a 2x2
    convolution to 4 * channels, each group of four becoming a 2x2 block of pixels. The same
    function class as a stride-2 4x4 transposed convolution (whose four output phases are 2x2
    convolutions) and, measured on XLA's CPU backend, 3.4x faster: XLA lowers a strided
    transposed convolution to a dilated one, which misses its fast convolution path. `fast`:
    the convolution by `FastConv2D` (same parameters)."""
    y = conv_layer(x, 4 * channels, 2, 1, name, fast)
    batch, height, width, _ = y.shape
    y = y.reshape(batch, height, width, 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(batch, 2 * height, 2 * width, channels)


def _norm_act(x: jax.Array, name: str) -> jax.Array:
    return jax.nn.silu(hk.RMSNorm(-1, create_scale=True, name=name)(x))


def _dense(x: jax.Array, size: int, name: str) -> jax.Array:
    return _norm_act(hk.Linear(size, name=name)(x), f"{name}_norm")


class _Rssm(hk.Module):
    def __init__(self, cfg: RssmConfig, act_dim: int, image_shape: tuple[int, int, int]):
        super().__init__(name="rssm")
        self.cfg, self.act_dim, self.image_shape = cfg, act_dim, tuple(image_shape)
        self.stages = encoder_stages(image_shape[0])
        self.depths = [cfg.cnn_depth * min(2**i, 8) for i in range(self.stages)]
        self.embed_dim = MIN_RESOLUTION * MIN_RESOLUTION * self.depths[-1]
        self.fast = cfg.fast

    # --- images -------------------------------------------------------------------------
    def encode(self, images: jax.Array) -> jax.Array:
        lead = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        for i, depth in enumerate(self.depths):
            x = conv_layer(x, depth, 4, 2, f"enc_conv{i}", self.fast)
            x = _norm_act(x, f"enc_norm{i}")
        return x.reshape(*lead, -1)

    def decode(self, feat: jax.Array) -> jax.Array:
        lead = feat.shape[:-1]
        top = self.depths[-1]
        x = hk.Linear(MIN_RESOLUTION * MIN_RESOLUTION * top, name="dec_in")(
            feat.reshape(-1, feat.shape[-1])
        )
        x = x.reshape(-1, MIN_RESOLUTION, MIN_RESOLUTION, top)
        for i, depth in reversed(list(enumerate(self.depths[:-1]))):
            x = _norm_act(upsample(x, depth, f"dec_conv{i}", self.fast), f"dec_norm{i}")
        x = upsample(x, self.image_shape[-1], "dec_out", self.fast)
        return jax.nn.sigmoid(x).reshape(*lead, *self.image_shape)

    # --- latent dynamics ----------------------------------------------------------------
    def core(self, h: jax.Array, z: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([z.reshape(*z.shape[:-2], -1), scale_action(action)], axis=-1)
        x = _dense(x, self.cfg.hidden, "core_in")
        gates = hk.Linear(3 * self.cfg.deter, name="core_gates")(jnp.concatenate([x, h], -1))
        gates = hk.RMSNorm(-1, create_scale=True, name="core_gates_norm")(gates)
        return gru_update(h, gates)

    def prior(self, h: jax.Array, head: jax.Array | int | None = None) -> jax.Array:
        """Logits of prior head `head`, or of all K heads stacked on axis -3 when None."""
        cfg = self.cfg
        k, d, hid, out = cfg.prior_heads, cfg.deter, cfg.hidden, cfg.stoch * cfg.classes
        init1 = hk.initializers.VarianceScaling(1.0, "fan_avg", "truncated_normal")
        w1 = hk.get_parameter("prior_w1", [k, d, hid], init=init1)
        b1 = hk.get_parameter("prior_b1", [k, hid], init=jnp.zeros)
        scale = hk.get_parameter("prior_norm_scale", [k, hid], init=jnp.ones)
        w2 = hk.get_parameter("prior_w2", [k, hid, out], init=init1)
        b2 = hk.get_parameter("prior_b2", [k, out], init=jnp.zeros)
        if head is None:
            x = jnp.einsum("...d,kdh->...kh", h, w1) + b1
            x = jax.nn.silu(_rms(x) * scale)
            logits = jnp.einsum("...kh,kho->...ko", x, w2) + b2
        else:
            x = jax.nn.silu(_rms(h @ w1[head] + b1[head]) * scale[head])
            logits = x @ w2[head] + b2[head]
        logits = logits.reshape(*logits.shape[:-1], cfg.stoch, cfg.classes)
        return unimix_logits(logits, cfg.unimix)

    def posterior(self, h: jax.Array | None, embed: jax.Array, split: str | None = None):
        """q(z | h, e) logits = post_out(silu(rmsnorm(concat(h, e) W + b))), W and b being
        post_hidden's. concat(h, e) W = h W[:D] + e W[D:], so the frame's share can be computed
        apart, for every frame at once: split "embed" -> e W[D:] + b [.., hidden] (h unused);
        split "from_embed" -> the logits from h and embed = that share. (One method for the
        three, so the parameters keep `posterior`'s names.)"""
        cfg = self.cfg
        if split is None:
            x = _dense(jnp.concatenate([h, embed], -1), cfg.hidden, "post_hidden")
        else:
            w, b = _LinearParams(cfg.deter + self.embed_dim, cfg.hidden, "post_hidden")()
            if split == "embed":
                return embed @ w[cfg.deter :] + b
            x = _norm_act(h @ w[: cfg.deter] + embed, "post_hidden_norm")
        logits = hk.Linear(cfg.stoch * cfg.classes, name="post_out")(x)
        return unimix_logits(logits.reshape(*x.shape[:-1], cfg.stoch, cfg.classes), cfg.unimix)

    # --- heads --------------------------------------------------------------------------
    def reward(self, feat: jax.Array) -> jax.Array:
        x = _dense(feat, self.cfg.hidden, "reward_hidden")
        # zero output weights: the first predictions are 0 for every input (DreamerV3)
        return hk.Linear(self.cfg.reward_bins, w_init=jnp.zeros, name="reward_out")(x)

    def cont(self, feat: jax.Array) -> jax.Array:
        x = _dense(feat, self.cfg.hidden, "cont_hidden")
        return hk.Linear(1, name="cont_out")(x)[..., 0]


class _LinearParams(hk.Module):
    """The weight [inputs, outputs] and bias of an hk.Linear named `name` (its names, shapes
    and initialisers), for using the weight in pieces."""

    def __init__(self, inputs: int, outputs: int, name: str) -> None:
        super().__init__(name=name)
        self.inputs, self.outputs = inputs, outputs

    def __call__(self) -> tuple[jax.Array, jax.Array]:
        init = hk.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(self.inputs))
        w = hk.get_parameter("w", (self.inputs, self.outputs), init=init)
        return w, hk.get_parameter("b", (self.outputs,), init=jnp.zeros)


def _rms(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def build_rssm(
    cfg: RssmConfig, act_dim: int, image_shape: tuple[int, int, int]
) -> tuple[object, RssmApply]:
    """(init(key, images [B, H, W, C]) -> params, RssmApply) for an RSSM of these sizes."""

    def make():
        net = _Rssm(cfg, act_dim, image_shape)

        def init(images):
            embed = net.encode(images)
            batch = embed.shape[:-1]
            h = jnp.zeros((*batch, cfg.deter))
            z = jnp.zeros((*batch, cfg.stoch, cfg.classes))
            h = net.core(h, z, jnp.zeros((*batch, act_dim)))
            net.prior(h)
            net.posterior(h, embed)
            feat = feature(h, z)
            return net.decode(feat), net.reward(feat), net.cont(feat)

        return init, (
            net.encode,
            net.core,
            net.prior,
            net.posterior,
            lambda embed: net.posterior(None, embed, "embed"),
            lambda h, embed_part: net.posterior(h, embed_part, "from_embed"),
            net.decode,
            net.reward,
            net.cont,
        )

    transformed = hk.without_apply_rng(hk.multi_transform(make))
    return transformed.init, RssmApply(*transformed.apply)
