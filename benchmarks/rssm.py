"""The RSSM world model's training speed on this machine (or a GPU when run there).

For each size (`cpu`: the `rssm:` defaults of configs/defaults.yaml; `dmc_vision`: LEQ_DV3's
sizes, configs/rssm_dmc_vision.yaml), one jitted gradient step of the world-model loss on
random 64x64 sequence windows (batch x length, 16 x 64 by default): updates per second (after
compiling, median of `--repeats` timed steps) and the FLOPs of one update from XLA's cost
analysis, hence the GFLOP/s reached; and the same for one LEQ-from-pixels step on that frozen
model (`leq_pixels` defaults: posterior filtering of the windows, 5-step imagination from
every latent, critic, value and actor updates).

    python benchmarks/rssm.py [--sizes cpu dmc_vision] [--batch 16] [--length 64] [--repeats 5]

Prints ONE JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from agent.config import load_config  # noqa: E402
from agent.world_model.rssm import RssmWorldModel  # noqa: E402
from agent.world_model.rssm_config import rssm_config  # noqa: E402
from agent.world_model.rssm_training import init_rssm_training, rssm_update  # noqa: E402

SIZES = {"cpu": [], "dmc_vision": ["rssm_dmc_vision"]}
ACT_DIM = 6  # cheetah-run's
IMAGE = (64, 64, 3)


def random_windows(batch: int, length: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, length + 1, *IMAGE), dtype=np.uint8)
    return {
        "observations": {"image": frames[:, :-1]},
        "next_observations": {"image": frames[:, 1:]},
        "actions": rng.uniform(-1, 1, (batch, length, ACT_DIM)).astype(np.float32),
        "rewards": rng.uniform(0, 1, (batch, length)).astype(np.float32),
        "masks": np.ones((batch, length), np.float32),
    }


def timed(step, args, repeats: int) -> dict:
    """Figures of jitted `step(*args)`, called `repeats` times after a first (compiling) call:
    median seconds per call, updates/s, GFLOP per call (XLA's cost analysis) and GFLOP/s, the
    first call's seconds; `output` is the last call's result."""
    cost = step.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    start = time.perf_counter()
    jax.block_until_ready(step(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = jax.block_until_ready(step(*args))
        times.append(time.perf_counter() - start)
    seconds, gflop = float(np.median(times)), float(cost["flops"]) / 1e9
    return {
        "seconds_per_update": seconds,
        "updates_per_s": 1.0 / seconds,
        "gflop_per_update": gflop,
        "gflops_reached": gflop / seconds,
        "first_call_s": first,
        "output": output,
    }


def leq_step_figures(cfg, world, params, windows, repeats: int) -> dict:
    """One LEQ-from-pixels step (phase "leq") on the frozen `params`."""
    from agent import replay as replay_lib
    from agent.leq_pixels.agent import LEQ, LEQPixelsAgent
    from agent.protocol import Context, Field, Spec

    spec = Spec({"image": Field(IMAGE, np.dtype(np.uint8))}, ACT_DIM, 500)
    context = Context(data_size=100_000, world=world, world_params=params)
    agent = LEQPixelsAgent(cfg, spec, context)
    state = agent.init(jax.random.PRNGKey(0), spec)
    fed = replay_lib.FedBatch(windows)
    step = jax.jit(lambda s, k: agent.train(LEQ, s, fed, k))
    figures = timed(step, (state, jax.random.PRNGKey(1)), repeats)
    del figures["output"]
    return figures


def measure(size: str, batch: int, length: int, repeats: int) -> dict:
    cfg = load_config([*SIZES[size]], [])
    rcfg = rssm_config(cfg.rssm)
    world = RssmWorldModel(rcfg, ACT_DIM, IMAGE)
    state = init_rssm_training(world, jax.random.PRNGKey(0))
    windows = jax.device_put(random_windows(batch, length))
    step = jax.jit(lambda s, w, k: rssm_update(world, s, w, k))
    figures = timed(step, (state, windows, jax.random.PRNGKey(1)), repeats)
    _, metrics = figures.pop("output")
    params = sum(x.size for x in jax.tree.leaves(state.params))
    return {
        "sizes": {
            k: getattr(rcfg, k)
            for k in ("deter", "hidden", "stoch", "classes", "cnn_depth", "prior_heads")
        },
        "params": int(params),
        "batch": [batch, length],
        **figures,
        "loss": float(metrics["loss"]),
        "leq_pixels_step": leq_step_figures(cfg, world, state.params, windows, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    out = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        **{s: measure(s, args.batch, args.length, args.repeats) for s in args.sizes},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
