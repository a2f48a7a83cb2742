"""Where GEM's gradient step loses speed against stock TD3's: the critic step alone, priced.

Each variant runs `--steps` critic gradient steps (squared error on random targets, Adam through
`agent.optimizers.apply_gradients`, as the agents update) in one jitted `lax.scan`, on random
Hopper-sized inputs:

* `gem`: GEM's critics as trained (agent/gem/networks.py: four stacked official critics,
  [400, 300] Dense-LayerNorm-ReLU, applied with one vmap), batch `gem.batch_size` (128);
* `gem_no_layer_norm`: the same products without the LayerNorms (what the LayerNorms cost);
* `td3`: stock TD3's twins as trained (agent/networks.py `critics`: two separate [256, 256]
  MLPs on [s, a]), batch `td3.batch_size` (256);
* `td3_stacked`: the same twins with stacked parameters under one vmap, as GEM's critics are.

The variants are timed in alternating rounds in one process. Prints ONE JSON object: per
variant the median seconds of a scan, GFLOP per step (XLA's cost analysis of one step), the
achieved GFLOP/s, its fraction of the matmul peak measured in the same run
(benchmarks/matmul_peak.py) and its ratio to `td3`'s.

    python benchmarks/critic_step.py [--steps 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.allocator import restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages(__file__)  # before JAX loads: as run.py trains

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.gem import networks as gem_networks  # noqa: E402
from agent.networks import critics as td3_critics  # noqa: E402
from agent.networks import mlp  # noqa: E402
from agent.optimizers import apply_gradients  # noqa: E402
from agent.runner.sources import task_spec  # noqa: E402
from benchmarks.matmul_peak import peak_gflops  # noqa: E402


def stacked_td3_critics(hidden: Sequence[int], count: int = 2) -> hk.Transformed:
    """TD3's twins with parameters stacked on a leading axis and applied with one vmap."""
    separate = td3_critics(hidden, count)
    single = hk.without_apply_rng(
        hk.transform(lambda obs, action: mlp(hidden, 1)(jnp.concatenate([obs, action], -1)))
    )

    def init(key, obs, action):
        params = separate.init(key, obs, action)
        return gem_networks.stack_members(params, "q", count)

    def apply(params, obs, action):
        return jax.vmap(single.apply, in_axes=(0, None, None))(params, obs, action)[..., 0].T

    return hk.Transformed(init, apply)


def variants(task: str) -> dict[str, tuple[hk.Transformed, int]]:
    """name -> (critic network, batch size), at the presets' sizes."""
    gem, td3 = load_config([f"gem_{task}"]).gem, load_config([f"td3_{task}"]).td3
    return {
        "gem": (gem_networks.critics(gem.hidden, form=gem.critic_form), gem.batch_size),
        "gem_no_layer_norm": (
            gem_networks.critics(gem.hidden, form=gem.critic_form, layer_norm=False),
            gem.batch_size,
        ),
        "td3": (td3_critics(td3.hidden), td3.batch_size),
        "td3_stacked": (stacked_td3_critics(td3.hidden), td3.batch_size),
    }


def critic_program(
    net: hk.Transformed, batch: int, steps: int, obs_dim: int, act_dim: int
) -> tuple[Callable, tuple, float]:
    """-> (jitted scan of `steps` Adam steps, its arguments, one step's FLOPs)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    obs = jax.random.normal(keys[0], (steps, batch, obs_dim))
    actions = jax.random.uniform(keys[1], (steps, batch, act_dim), minval=-1.0, maxval=1.0)
    targets = jax.random.normal(keys[2], (steps, batch))
    params = net.init(keys[3], obs[0], actions[0])
    tx = optax.adam(3e-4)

    def step(carry, inputs):
        params, opt_state = carry
        o, a, y = inputs

        def loss(p):
            return jnp.mean(jnp.square(net.apply(p, o, a) - y[:, None]))

        params, opt_state, _, _ = apply_gradients(tx, params, opt_state, loss)
        return (params, opt_state), None

    def run(carry, data):
        return jax.lax.scan(step, carry, data)[0]

    carry, data = (params, tx.init(params)), (obs, actions, targets)
    one = jax.tree.map(lambda x: x[0], data)
    cost = jax.jit(step).lower(carry, one).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return jax.jit(run), (carry, data), float(cost["flops"])


def timed(fn: Callable, args: tuple) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--steps", type=int, default=100, help="gradient steps per timed scan")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = task_spec(envs.get_task(args.task))
    peak, _ = peak_gflops()
    programs = {
        name: critic_program(net, batch, args.steps, spec.flat_obs_dim, spec.act_dim)
        for name, (net, batch) in variants(args.task).items()
    }
    for fn, fn_args, _ in programs.values():
        timed(fn, fn_args)  # compiles
    seconds: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(args.rounds):
        for name, (fn, fn_args, _) in programs.items():
            seconds[name].append(timed(fn, fn_args))
    out: dict = {"task": args.task, "steps": args.steps, "backend": jax.default_backend()}
    for name, (_, _, flops) in programs.items():
        s = float(np.median(seconds[name]))
        gflops = flops * args.steps / s / 1e9
        out[name] = {
            "scan_s": s,
            "gflop_per_step": flops / 1e9,
            "gflops_achieved": gflops,
            "fraction_of_matmul_peak": gflops / peak,
        }
    for name in programs:
        out[name]["gflops_vs_td3"] = out[name]["gflops_achieved"] / out["td3"]["gflops_achieved"]
    out["matmul_peak_gflops"] = peak
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
