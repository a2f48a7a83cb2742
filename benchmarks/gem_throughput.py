"""Learning cost of GEM vs its TD3 switch (`gem.memory: false, gem.alpha: 1`, reported as
"td3"; stock TD3 is `method: td3`, see online_throughput.py): one chunk (targets, memory
refresh, 200 gradient steps for 100 environment steps) with a full 100k-row memory, at the
preset sizes ([400, 300] LayerNorm networks, batch 128). Prints ONE JSON object (seconds,
median of timed calls after a warm-up; environment stepping is not included: it is ~1 % of a
chunk on CPU).

A chunk is timed as the runner runs it (agent/runner/loop.py): the chunk's 100 rows are written
into the replay (`Programs.add`), then the jitted chunk program (`Programs.chunk`: `begin_chunk`
= targets + memory refresh, then `gem.gradient_steps` `train` steps in a `lax.scan`).
`gem_memory_refresh_s` times `GEMAgent.refresh_memory` alone.

    python benchmarks/gem_throughput.py [--task hopper] [--runs 5] [--quick]

The two agents are timed alternately in one process, so their ratio is robust to machine noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from agent.actor_critic import LEARN  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.gem import GEMAgent  # noqa: E402
from agent.programs import Programs  # noqa: E402
from agent.runner.sources import online_context, task_spec  # noqa: E402
from benchmarks.online_throughput import filled_replay, random_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="debug sizes (smoke run)")
    args = parser.parse_args()
    task = envs.get_task(args.task)
    spec = task_spec(task)
    context = online_context(task, spec)
    presets = ["debug"] if args.quick else []
    memory_off = ["gem.memory=false", "gem.alpha=1.0"]  # GEM's TD3-style switch
    agents = {
        name: GEMAgent(load_config([f"gem_{args.task}", *presets], sets), spec, context)
        for name, sets in (("gem", []), ("td3", memory_off))
    }
    g = agents["gem"].g
    rng = jax.random.PRNGKey(0)
    programs = {name: Programs(agent) for name, agent in agents.items()}
    setups = {}
    for name, agent in agents.items():
        state = agent.init(rng, spec)
        replay = filled_replay(programs[name], spec, g.capacity)
        rows = random_rows(spec, np.random.default_rng(1), 0, g.train_every)
        chunk = programs[name].chunk(LEARN, agent.updates_per_chunk)
        setups[name] = (state, replay, rows, chunk)
    refresh = jax.jit(agents["gem"].refresh_memory)
    times: dict[str, list[float]] = {"gem": [], "td3": [], "gem_refresh": []}
    for run in range(args.runs + 1):  # run 0 compiles
        for name in agents:
            state, replay, rows, chunk = setups[name]
            start = time.perf_counter()
            replay = programs[name].add(replay, rows)  # consumes the old replay
            setups[name] = (state, replay, rows, chunk)
            jax.block_until_ready(chunk(state, replay, rng, 0))
            if run:
                times[name].append(time.perf_counter() - start)
        state, replay, _, _ = setups["gem"]
        start = time.perf_counter()
        jax.block_until_ready(refresh(state, replay, rng))
        if run:
            times["gem_refresh"].append(time.perf_counter() - start)
    median = {k: float(np.median(v)) for k, v in times.items()}
    print(
        json.dumps(
            {
                "task": args.task,
                "backend": jax.default_backend(),
                "capacity": g.capacity,
                "gradient_steps_per_chunk": g.gradient_steps,
                "env_steps_per_chunk": g.train_every,
                "gem_chunk_s": median["gem"],
                "td3_chunk_s": median["td3"],
                "gem_memory_refresh_s": median["gem_refresh"],
                "gem_over_td3": median["gem"] / median["td3"],
                "gem_env_steps_per_s": g.train_every / median["gem"],
                "td3_env_steps_per_s": g.train_every / median["td3"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
