"""N seeds of the LEQ update as one vmapped program against N separate programs, one after
another: the speed `train.seeds: N` buys on this machine (agent/runner/seeds.py).

The update is benchmarks/leq_throughput.py's (the agent's own `leq_update` with its production
action gradients, the 7-member ensemble with balanced elite routing, hopper-shaped batch 256,
H 10, 3x256 nets). Each seed has its own initialisation and keys. "sequential" runs one jitted
chunk per seed; "vmapped" runs one jitted vmap of the same chunk over the stacked seeds.
Interleaved timed calls, best call per form. Also: the projected wall time of one LEQ run at the
official budget (1.4M gradient steps: 200k BC + 200k FQE + 1M LEQ, all counted at the LEQ
update's rate, so an upper bound) at the measured single-seed rate, and of N seeds vmapped.

    python benchmarks/seeds.py [--seeds 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.allocator import restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages(__file__)  # before JAX loads: as run.py trains

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from leq_throughput import (  # noqa: E402  (sibling benchmark module)
    FULL,
    QUICK,
    build_world_step,
    make_chunk,
    make_pool,
    make_update,
)

OFFICIAL_STEPS = 1_400_000


def measure(cfg: dict, seeds: int) -> dict:
    key_model, key_pool, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    world_step, scaler, _ = build_world_step(cfg, key_model)
    pool = make_pool(key_pool, 4096)
    update, init = make_update(cfg, "production", world_step, scaler)
    obs = pool["observations"][: cfg["batch"]]
    states = [init(k, obs) for k in jax.random.split(key_init, seeds)]
    length = cfg["chunk_prod"]
    chunk = make_chunk(update, pool, cfg["batch"], length)
    vmapped = jax.jit(jax.vmap(chunk))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    states = [jax.block_until_ready(chunk(s)[0]) for s in states]  # compile + warm up
    stacked = jax.block_until_ready(vmapped(stacked)[0])
    times = {"sequential": [], "vmapped": []}
    for _ in range(cfg["calls"]):  # interleaved: background load hits both forms alike
        t0 = time.perf_counter()
        states = [jax.block_until_ready(chunk(s)[0]) for s in states]
        times["sequential"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stacked = jax.block_until_ready(vmapped(stacked)[0])
        times["vmapped"].append(time.perf_counter() - t0)
    out = {}
    for name, calls in times.items():
        best = min(calls)
        out[name] = {
            "seed_updates_per_s": round(seeds * length / best, 2),
            "call_s": [round(t, 3) for t in calls],
        }
    seq, vec = out["sequential"]["seed_updates_per_s"], out["vmapped"]["seed_updates_per_s"]
    return {
        "benchmark": "leq_update_seeds",
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "seeds": seeds,
        "updates_per_call": length,
        "shapes": {k: cfg[k] for k in ("batch", "horizon", "hidden", "wm_hidden", "members")},
        **out,
        "ratio_vmapped_over_sequential": round(vec / seq, 2),
        # sequential: one seed at a time, so its rate is one run's updates per second
        "projected_hours_one_run_official_budget": round(OFFICIAL_STEPS / seq / 3600, 1),
        "projected_hours_all_seeds_vmapped": round(OFFICIAL_STEPS * seeds / vec / 3600, 1),
        "timing": "best of interleaved timed calls, after one compile+warm-up call per form",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    out = measure(QUICK if args.quick else FULL, args.seeds)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
