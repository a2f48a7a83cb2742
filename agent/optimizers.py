"""The optimiser step every agent uses, and the optimisers of the pixel agents (optax chains).

`apply_gradients` is one step theta <- theta + tx(grad L(theta)) that also reports the global
gradient norm ||grad L||_2 (the agents log it as `train/*_grad_norm`).

`laprop` is DreamerV3's (and LEQ_DV3's) optimiser: adaptive gradient
clipping, then LaProp (momentum of RMS-normalised gradients, both moments debiased), then a
learning rate with linear warm-up and cosine anneal:

    g <- AGC(g, ratio)                    per unit: g * min(1, ratio max(|p|, 1e-3) / |g|)
    v <- b2 v + (1 - b2) g^2;   u = g / (sqrt(v / (1 - b2^t)) + eps)
    m <- b1 m + (1 - b1) u;     update = -lr_t m / (1 - b1^t)
    lr_t = lr min(1, t / warmup), cosine-annealed to 0 over `steps`

optax's AGC clips unit-wise (each output unit of a layer) where DreamerV3 clips each
parameter tensor as a whole; both bound the update relative to the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

OPTIMIZERS = ("laprop", "adam")


def apply_updates(
    tx: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any
) -> tuple[Any, Any, jax.Array]:
    """params <- params + tx(grads): -> (params, opt_state, global gradient norm ||g||_2)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def apply_gradients(
    tx: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    loss_fn: Callable,
    has_aux: bool = False,
) -> tuple[Any, Any, Any, jax.Array]:
    """One optimiser step on `loss_fn(params)`: -> (params, opt_state, loss or (loss, aux),
    global gradient norm ||g||_2)."""
    value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params)
    params, opt_state, norm = apply_updates(tx, params, opt_state, grads)
    return params, opt_state, value, norm


def lr_schedule(lr: float, warmup: int, steps: int, anneal: str) -> optax.Schedule:
    """lr * min(1, t / warmup), then (anneal="cosine") cosine to 0 at step `steps`."""
    if anneal == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), 0.0)
    if warmup:
        return optax.linear_schedule(0.0, lr, warmup)
    return optax.constant_schedule(lr)


def laprop(
    schedule: optax.Schedule, agc: float = 0.3, eps: float = 1e-20, b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:  # fmt: skip
    """DreamerV3's optimiser (module docstring)."""
    return optax.chain(
        optax.adaptive_grad_clip(agc),
        optax.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        optax.ema(b1, debias=True),
        optax.scale_by_learning_rate(schedule),
    )


def adam(schedule: optax.Schedule, clip: float) -> optax.GradientTransformation:
    """Adam after global-norm clipping at `clip`."""
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(schedule))
