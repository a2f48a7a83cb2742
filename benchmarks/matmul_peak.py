"""This machine's float32 matmul rate under XLA, the yardstick for the update benchmarks.

`matmul_gflops(rows, inner)` times a jitted chain of [rows, inner] x [inner, inner] products
(each output feeds the next, so nothing runs ahead); `matmul_rates` measures the shapes the
benchmarks compare against. Imported by the throughput benchmarks; run alone it prints JSON:

    python benchmarks/matmul_peak.py
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp

# name -> (rows, inner, chain length): a large square product (what the hardware can do) and the
# shapes of the LEQ update's dense layers: all H+1 imagined steps at once ([B (H+1), 256] x
# [256, 256], B 256, H 10), one step inside the rollout ([B, 256] x [256, 256]) and one elite's
# share of a balanced ensemble step ([B / 5, 200] x [200, 200]).
SHAPES = {
    "square_2048": (2048, 2048, 4),
    "rows_2816_by_256": (2816, 256, 60),
    "rows_256_by_256": (256, 256, 400),
    "rows_52_by_200": (52, 200, 1000),
}


def matmul_gflops(rows: int, inner: int, chain: int, repeats: int = 10) -> float:
    """Best GFLOP/s over `repeats` calls of `chain` dependent [rows, inner] x [inner, inner]
    float32 products (2 rows inner^2 FLOP each)."""

    @jax.jit
    def run(x, w):
        return jax.lax.scan(lambda x, _: (x @ w, None), x, None, length=chain)[0]

    x = jnp.full((rows, inner), 0.01, jnp.float32)
    w = jnp.eye(inner, dtype=jnp.float32)  # keeps the chain bounded
    run(x, w).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(x, w).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * rows * inner**2 * chain / best / 1e9


def peak_gflops() -> tuple[float, dict[str, float]]:
    """(this machine's float32 matmul peak now, the rates it is the best of): the faster of a
    large square product chain (the hardware's rate) and the updates' [256, 256] one."""
    rates = {name: matmul_gflops(*SHAPES[name]) for name in ("square_2048", "rows_256_by_256")}
    return max(rates.values()), rates


def matmul_rates(shapes: dict[str, tuple[int, int, int]] | None = None) -> dict[str, float]:
    """GFLOP/s of each named shape (SHAPES by default), rounded to 0.1."""
    shapes = SHAPES if shapes is None else shapes
    return {name: round(matmul_gflops(*shape), 1) for name, shape in shapes.items()}


if __name__ == "__main__":
    rates = matmul_rates()
    print(json.dumps({"device": jax.devices()[0].device_kind, "matmul_gflop_per_s": rates}))
