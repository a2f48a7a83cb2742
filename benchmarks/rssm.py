"""The RSSM world model's training speed on this machine (or a GPU when run there).

For each size (`cpu`: the `rssm:` defaults of configs/defaults.yaml; `pixels_cpu`: the rssm
section of configs/leq_pixels_cpu.yaml; `dmc_vision`: LEQ_DV3's sizes,
configs/rssm_dmc_vision.yaml), one jitted gradient step of the world-model loss on random 64x64
sequence windows (batch x length: the size's rssm.batch_size x rssm.length unless given), in
two formulations of the same function (`rssm.formulation`): `plain` (hk.Conv2D as XLA
differentiates it, the filter's whole step inside its scan) and `production` (the config's
formulation, `fast` by default: agent/world_model/conv.py's gradients, per-frame and prior-head
products outside the scan). The two are timed in alternating rounds in one process, so their
ratio `production_over_plain` (plain seconds / production seconds) is fair on a shared machine.
Per formulation: median seconds per update (after compiling, `--repeats` timed calls) and the
process CPU seconds per update (all threads; less inflated than wall time when other processes
compete for the cores), updates per second, `xla_gflop_per_update` (XLA's cost analysis of
its compiled step: it counts a while loop's body once, so the plain filter's per-step prior
heads count once, not T+1 times, and the fast form's zero padding counts as work), and the
GFLOP/s reached on the update's work (`gflop_per_update`: the plain program's count, the same
for both, as both compute the same function) with their fraction of `matmul_peak_gflops`, the
float32 matrix-product rate measured in the same run (the faster of a [2048, 2048] square chain
and a [256, 256] x [256, 256] one,
benchmarks/matmul_peak.py). Then one LEQ-from-pixels step on the frozen production model in
each form of LEQ_STEPS: `leq_pixels_step_cached` draws its start latents and real transitions
from the latent cache (`leq_pixels.starts: episodes`; the windows filtered once as episodes),
`leq_pixels_step_windows` filters the windows at every step (LEQ_DV3's form); then imagination
from every latent, critic, value and actor updates, with the size's `leq_pixels` settings.
`production.chunk`: `--chunk-steps` production steps as one `lax.scan` against a host loop
over the jitted step, whose ratio `chunk_scan_over_host_loop` (and `_cpu`, of process CPU
seconds) says whether the model's chunks
may scan (the plain formulation's may not: its convolution gradients run many times slower
inside a scan on XLA:CPU, so it is not timed that way).

    python benchmarks/rssm.py [--sizes cpu pixels_cpu] [--batch B] [--length L] [--repeats 5]
                              [--no-leq] [--chunk-steps 3]

Prints ONE JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.allocator import restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages(__file__)  # before JAX loads: as run.py trains

import jax  # noqa: E402

from agent.config import load_config  # noqa: E402
from agent.world_model.rssm import RssmWorldModel  # noqa: E402
from agent.world_model.rssm_config import rssm_config  # noqa: E402
from agent.world_model.rssm_training import init_rssm_training, rssm_update  # noqa: E402
from benchmarks.matmul_peak import peak_gflops  # noqa: E402

SIZES = {"cpu": [], "pixels_cpu": ["leq_pixels_cpu"], "dmc_vision": ["rssm_dmc_vision"]}
DEFAULT_SIZES = ("cpu", "pixels_cpu")
# The LEQ-from-pixels steps timed on each size's frozen model: output key -> config overrides.
LEQ_STEPS: dict[str, list[str]] = {
    "leq_pixels_step_cached": [],  # starts: episodes, the production form
    "leq_pixels_step_windows": ["leq_pixels.starts=windows"],  # LEQ_DV3's, filtering each step
}
ACT_DIM = 6  # cheetah-run's
KEY = jax.random.PRNGKey(2)
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


def compiled_gflop(step, args) -> float:
    """GFLOP of one call of jitted `step(*args)` (XLA's cost analysis)."""
    cost = step.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / 1e9


def alternating(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Each named call once (compiling; its seconds `first_call_s`), then `repeats` rounds that
    call each in turn: per name the median wall and process-CPU seconds per call and the last
    call's output."""
    out = {}
    for name, call in calls.items():
        start = time.perf_counter()
        jax.block_until_ready(call())
        out[name] = {"first_call_s": time.perf_counter() - start, "wall": [], "cpu": []}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            out[name]["output"] = jax.block_until_ready(call())
            out[name]["wall"].append(time.perf_counter() - wall)
            out[name]["cpu"].append(time.process_time() - cpu)
    for figures in out.values():
        figures["seconds"] = float(np.median(figures.pop("wall")))
        figures["cpu_seconds"] = float(np.median(figures.pop("cpu")))
    return out


def rate_figures(seconds: float, cpu_seconds: float, gflop: float, peak: float) -> dict:
    """Speed figures of a step of `gflop` GFLOP that took `seconds` (wall) and `cpu_seconds`."""
    return {
        "seconds_per_update": seconds,
        "cpu_seconds_per_update": cpu_seconds,
        "updates_per_s": 1.0 / seconds,
        "gflop_per_update": gflop,
        "gflops_reached": gflop / seconds,
        "fraction_of_matmul_peak": gflop / seconds / peak,
    }


def leq_step_figures(cfg, world, params, windows, repeats: int, peak: float) -> dict:
    """One LEQ-from-pixels step (phase "leq") on the frozen `params`."""
    from agent import replay as replay_lib
    from agent.leq_pixels.agent import LEQ, LEQPixelsAgent
    from agent.leq_pixels.latent_cache import build_latent_cache
    from agent.protocol import Context, Field, Spec

    spec = Spec({"image": Field(IMAGE, np.dtype(np.uint8))}, ACT_DIM, 500)
    context = Context(data_size=100_000, world=world, world_params=params)
    agent = LEQPixelsAgent(cfg, spec, context)
    state = agent.init(jax.random.PRNGKey(0), spec)
    if agent.starts == "episodes":  # each window as an episode, filtered once into the cache
        rows = jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:]), windows)
        ends = np.zeros(rows["rewards"].shape, np.float32)
        ends[windows["rewards"].shape[1] - 1 :: windows["rewards"].shape[1]] = 1.0
        source = build_latent_cache(world, params, {**rows, "episode_ends": ends}, KEY)
    else:
        source = replay_lib.FedBatch(windows)
    step = jax.jit(lambda s, k: agent.train(LEQ, s, source, k))
    args = (state, jax.random.PRNGKey(1))
    gflop = compiled_gflop(step, args)
    figures = alternating({"leq": lambda: step(*args)}, repeats)["leq"]
    return {
        **rate_figures(figures["seconds"], figures["cpu_seconds"], gflop, peak),
        "first_call_s": figures["first_call_s"],
    }


def model_steps(size: str, batch: int | None, length: int | None, repeats: int, peak: float):
    """The world-model step of `size` in the plain and the production formulation, timed in
    alternating rounds; -> (figures, config, production world, its trained params, windows)."""
    cfg = load_config([*SIZES[size]], [])
    production = rssm_config(cfg.rssm)
    batch, length = batch or production.batch_size, length or production.length
    windows = jax.device_put(random_windows(batch, length))
    key = jax.random.PRNGKey(1)
    forms = {
        "plain": dataclasses.replace(production, formulation="plain"),
        "production": production,
    }
    worlds = {name: RssmWorldModel(rc, ACT_DIM, IMAGE) for name, rc in forms.items()}
    state = init_rssm_training(worlds["production"], jax.random.PRNGKey(0))  # same parameters
    steps = {
        name: jax.jit(lambda s, w, k, world=world: rssm_update(world, s, w, k))
        for name, world in worlds.items()
    }
    gflop = {name: compiled_gflop(step, (state, windows, key)) for name, step in steps.items()}
    timed = alternating(
        {name: (lambda step=step: step(state, windows, key)) for name, step in steps.items()},
        repeats,
    )
    figures = {
        "sizes": {
            k: getattr(production, k)
            for k in ("deter", "hidden", "stoch", "classes", "cnn_depth", "prior_heads")
        },
        "params": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "batch": [batch, length],
        "image": list(IMAGE),
    }
    for name, t in timed.items():
        figures[name] = {
            "formulation": forms[name].formulation,
            **rate_figures(t["seconds"], t["cpu_seconds"], gflop["plain"], peak),
            "xla_gflop_per_update": gflop[name],
            "first_call_s": t["first_call_s"],
            "loss": float(t["output"][1]["loss"]),
        }
    plain, fast = figures["plain"], figures["production"]
    figures["production_over_plain"] = plain["seconds_per_update"] / fast["seconds_per_update"]
    figures["production_over_plain_cpu"] = (
        plain["cpu_seconds_per_update"] / fast["cpu_seconds_per_update"]
    )
    trained = timed["production"]["output"][0].params
    return figures, cfg, worlds["production"], trained, windows


def chunk_forms(world: RssmWorldModel, windows: dict, steps: int, repeats: int) -> dict:
    """`steps` world-model steps as one jitted `lax.scan` over stacked batches (how a chunk runs
    by default) against a host loop over the jitted step (`Agent.host_loop_chunks`), timed in
    alternating rounds: seconds per update of each and `chunk_scan_over_host_loop` (host-loop
    seconds / scan seconds; above 1: the scan is faster)."""
    state = init_rssm_training(world, jax.random.PRNGKey(0))
    stacked = jax.tree.map(lambda x: jax.numpy.stack([x] * steps), windows)
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    one = jax.jit(lambda s, w, k: rssm_update(world, s, w, k)[0])
    scan = jax.jit(
        lambda s, ws, ks: jax.lax.scan(
            lambda s, inputs: (rssm_update(world, s, *inputs)[0], None), s, (ws, ks)
        )[0]
    )

    def host_loop():
        s = state
        for i in range(steps):
            s = one(s, jax.tree.map(lambda x, i=i: x[i], stacked), keys[i])
        return s

    timed = alternating({"scan": lambda: scan(state, stacked, keys), "host": host_loop}, repeats)
    scan, host = timed["scan"], timed["host"]
    return {
        "steps": steps,
        "scan_seconds_per_update": scan["seconds"] / steps,
        "host_loop_seconds_per_update": host["seconds"] / steps,
        "chunk_scan_over_host_loop": host["seconds"] / scan["seconds"],
        "chunk_scan_over_host_loop_cpu": host["cpu_seconds"] / scan["cpu_seconds"],
    }


def measure(size: str, args: argparse.Namespace, peak: float) -> dict:
    figures, cfg, world, params, windows = model_steps(
        size, args.batch, args.length, args.repeats, peak
    )
    if args.chunk_steps:
        figures["production"]["chunk"] = chunk_forms(world, windows, args.chunk_steps, args.repeats)
    if args.leq:
        for name, overrides in LEQ_STEPS.items():
            leq_cfg = load_config([*SIZES[size]], overrides) if overrides else cfg
            figures[name] = leq_step_figures(leq_cfg, world, params, windows, args.repeats, peak)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=None, help="default: the size's rssm")
    parser.add_argument("--length", type=int, default=None, help="default: the size's rssm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-leq", dest="leq", action="store_false", help="skip LEQ_STEPS")
    parser.add_argument(
        "--chunk-steps", type=int, default=3, help="chunk steps timed as scan vs host loop; 0: skip"
    )
    args = parser.parse_args()
    # first, before the models take memory: the float32 matrix-product rate of this machine now
    peak, rates = peak_gflops()
    out = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        # glibc.malloc.hugetlb=1 backs XLA's large buffers with huge pages (fewer page faults)
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "matmul_peak_gflops": peak,
        "matmul_gflops": rates,
        **{size: measure(size, args, peak) for size in args.sizes},
        "load_average_at_end": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
