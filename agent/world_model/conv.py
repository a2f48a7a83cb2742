"""2-D convolutions whose gradients take XLA:CPU's fast paths; the same function as `lax.conv`.

    y[n, i, j, o] = sum_{a, b, c} xpad[n, s i + a, s j + b, c] w[a, b, c, o]       (NHWC, HWIO)

with xpad the input zero-padded as "SAME" or "VALID" asks and s the stride. `conv2d` computes
this forward with `lax.conv_general_dilated` and its gradients by hand (`jax.custom_vjp`), on
the stride-1 rewrite of the convolution: with k a multiple of s,

    y = conv_1(X, K),  X[n, p, q, (da, db, c)] = xpad[n, s p + da, s q + db, c]   (space-to-depth)
                       K[α, β, (da, db, c), o] = w[s α + da, s β + db, c, o]      (k/s x k/s)

(for s = 1, X = xpad and K = w).

- input gradient: XLA differentiates a stride-s convolution into an input-dilated one, which
  misses its fast convolution path. Through the rewrite it is a stride-1 convolution of dy with
  the flipped, transposed kernel, dX = conv_1(pad(dy, k/s - 1), flip(K)^T), put back by
  depth-to-space and cropped (`input_grad`).
- weight gradient: XLA runs it as a convolution whose "kernel" is the whole dy, several times
  slower than the forward. The dot form (`weight_grad`) writes each kernel offset as a shift of
  X's rows, flattened over n, p, q: one matrix product per offset, no copy of X's windows.

Shapes the rewrite does not cover (k not a multiple of s, uneven "SAME" windows) fall back to
XLA's gradient. `plain_conv2d` is the reference: `lax.conv` as XLA differentiates it.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], tuple[int, int]]  # (low, high) zeros on H and on W


def plain_conv2d(x: jax.Array, w: jax.Array, stride: int, padding: str = "SAME") -> jax.Array:
    """y = conv_s(x, w) by `lax.conv_general_dilated` (x [N, H, W, Ci], w [k, k, Ci, Co])."""
    return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DIMENSIONS)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(low, high) zero padding of "SAME": total max((ceil(size / s) - 1) s + k - size, 0),
    the odd one at the high end (XLA's and TensorFlow's convention)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def space_to_depth(x: jax.Array, s: int) -> jax.Array:
    """[N, s H, s W, C] -> [N, H, W, s s C]:
    X[n, p, q, (da, db, c)] = x[n, s p + da, s q + db, c]."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // s, w // s, s * s * c)


def depth_to_space(x: jax.Array, s: int) -> jax.Array:
    """The inverse of `space_to_depth`: [N, H, W, s s C] -> [N, s H, s W, C]."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, s, s, c // (s * s)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * s, w * s, c // (s * s))


def strided_kernel(w: jax.Array, s: int) -> jax.Array:
    """[k, k, Ci, Co] -> [k/s, k/s, s s Ci, Co]: K[α, β, (da, db, c), o] = w[s α + da, s β + db,
    c, o], the kernel of the stride-1 convolution on `space_to_depth` inputs."""
    k, _, ci, co = w.shape
    w = w.reshape(k // s, s, k // s, s, ci, co).transpose(0, 2, 1, 3, 4, 5)
    return w.reshape(k // s, k // s, s * s * ci, co)


def unstrided_kernel(kernel: jax.Array, s: int) -> jax.Array:
    """The inverse of `strided_kernel`: [k/s, k/s, s s Ci, Co] -> [k, k, Ci, Co]."""
    kk, _, cs, co = kernel.shape
    kernel = kernel.reshape(kk, kk, s, s, cs // (s * s), co).transpose(0, 2, 1, 3, 4, 5)
    return kernel.reshape(kk * s, kk * s, cs // (s * s), co)


def conv_pads(x_shape: tuple[int, ...], kernel: int, stride: int, padding: str) -> Pads:
    """The (low, high) zeros that "SAME" or "VALID" adds on H and W."""
    if padding == "VALID":
        return (0, 0), (0, 0)
    return same_pads(x_shape[1], kernel, stride), same_pads(x_shape[2], kernel, stride)


def rewritable(x_shape: tuple[int, ...], kernel: int, stride: int, pads: Pads) -> bool:
    """Whether the stride-1 rewrite covers this convolution: k a multiple of s, and the padded
    input exactly s (out - 1) + k wide (no row is left unread past the last window)."""
    if kernel % stride:
        return False
    return all(
        (size + low + high - kernel) % stride == 0
        for size, (low, high) in zip(x_shape[1:3], pads, strict=True)
    )


def rewritten_input(x: jax.Array, stride: int, pads: Pads) -> jax.Array:
    """X: the zero-padded input, by space-to-depth when s > 1."""
    xpad = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return space_to_depth(xpad, stride) if stride > 1 else xpad


def input_grad(dy: jax.Array, w: jax.Array, x_shape: tuple[int, ...], stride: int, pads: Pads):
    """dx of y = conv_s(x, w) by the stride-1 rewrite: dX = conv_1(dy padded by k/s - 1 on
    both sides, flip(K) with in/out swapped), then depth-to-space and the padding cropped."""
    kernel = strided_kernel(w, stride) if stride > 1 else w
    kk = kernel.shape[0]
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    if stride == 1:
        # padding inside the convolution (no padded copy of dy): the transposed convolution's
        # pads are k - 1 - low and k - 1 - high, which also crops x's padding
        (lh, hh), (lw, hw) = pads
        transposed = ((kk - 1 - lh, kk - 1 - hh), (kk - 1 - lw, kk - 1 - hw))
        return lax.conv_general_dilated(
            dy, flipped, (1, 1), transposed, dimension_numbers=DIMENSIONS
        )
    full = ((kk - 1, kk - 1), (kk - 1, kk - 1))
    dx_s2d = lax.conv_general_dilated(dy, flipped, (1, 1), full, dimension_numbers=DIMENSIONS)
    (lh, _), (lw, _) = pads
    return depth_to_space(dx_s2d, stride)[:, lh : lh + x_shape[1], lw : lw + x_shape[2]]


def weight_grad(x: jax.Array, dy: jax.Array, kernel: int, stride: int, pads: Pads) -> jax.Array:
    """dw of y = conv_s(x, w) by the dot form. With X flattened to rows [R, C] (R = N Hx Wx) and
    dy placed on X's grid as G [R, Co] (zeros past its Ho x Wo corner), kernel offset (α, β)
    is the row shift d = α Wx + β (the zero rows and columns keep a shift inside its image):

        dK[α, β] = sum_r X[r + d]^T G[r] = sum_r X[r]^T G[r - d]   (rows out of range: zero).

    One matrix product per offset. The operand with fewer channels is the shifted one (one
    row-window copy per offset); the other is transposed once, so each product reads both
    operands in the layout XLA's dot wants."""
    xs = rewritten_input(x, stride, pads)
    n, hx, wx, c = xs.shape
    ho, wo, co = dy.shape[1:]
    kk, rows = kernel // stride, n * hx * wx
    margin = (kk - 1) * (wx + 1)  # the largest shift
    flat = xs.reshape(rows, c)
    g = jnp.pad(dy, ((0, 0), (0, hx - ho), (0, wx - wo), (0, 0))).reshape(rows, co)
    shifts = [[a * wx + b for b in range(kk)] for a in range(kk)]
    if c <= co:  # dK[α, β]^T = G^T X[r + d]
        flat, g_t = jnp.pad(flat, ((0, margin), (0, 0))), g.T
        dk = [[(g_t @ flat[d : d + rows]).T for d in row] for row in shifts]
    else:  # dK[α, β] = X^T G[r - d]
        g, flat_t = jnp.pad(g, ((margin, 0), (0, 0))), flat.T
        dk = [[flat_t @ g[margin - d : margin - d + rows] for d in row] for row in shifts]
    dk = jnp.stack([jnp.stack(row) for row in dk])  # [k/s, k/s, s s Ci, Co]
    return unstrided_kernel(dk, stride) if stride > 1 else dk


def weight_grad_form(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int
) -> Literal["dot", "conv"]:
    """The faster weight-gradient form for a rewritable layer on XLA:CPU: "dot" (`weight_grad`)
    or "conv" (XLA's). Measured inside the RSSM's gradient step (cpu sizes, 1040 frames): the
    dot form is faster or equal for each of its encoder (4x4, stride 2) and decoder (2x2,
    stride 1) layers; for the 3-channel image layer the two are equal."""
    del x_shape, w_shape, stride
    return "dot"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, stride: int, padding: str = "SAME") -> jax.Array:
    """y = conv_s(x, w): the same values as `plain_conv2d` (x [N, H, W, Ci], w [k, k, Ci, Co],
    square kernel, padding "SAME" or "VALID"); its gradients in the forms of the module
    docstring."""
    return plain_conv2d(x, w, stride, padding)


def _conv2d_fwd(x: jax.Array, w: jax.Array, stride: int, padding: str):
    return plain_conv2d(x, w, stride, padding), (x, w)


def _conv2d_bwd(stride: int, padding: str, residuals: tuple, dy: jax.Array):
    x, w = residuals
    kernel = w.shape[0]
    pads = conv_pads(x.shape, kernel, stride, padding)
    if w.shape[0] != w.shape[1] or not rewritable(x.shape, kernel, stride, pads):
        _, vjp = jax.vjp(lambda x, w: plain_conv2d(x, w, stride, padding), x, w)
        return vjp(dy)
    dx = input_grad(dy, w, x.shape, stride, pads)
    if weight_grad_form(x.shape, w.shape, stride) == "dot":
        return dx, weight_grad(x, dy, kernel, stride, pads)
    _, vjp = jax.vjp(lambda w: plain_conv2d(x, w, stride, padding), w)
    return dx, vjp(dy)[0]


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
