"""Throughput of the LEQ actor + critic update, and how close it gets to this machine's peak.

Prints ONE JSON object. Every program runs the agent's own update (agent/leq/update.py: actor
DPG-lambda step, critic lambda-return expectile step, EMA) on the same shapes in one process, for
each combination of
  * elite sampling of the world model: "balanced" (the project's default: each sample still gets
    a uniformly random elite, evaluated once) and "iid" (the official code: every elite on every
    sample, then one picked);
  * rollout form: "separate" (the official code: the critic step imagines its own rollout with
    another key) and "shared" (`leq.shared_rollout`: it fits the actor step's rollout);
  * action-gradient variant: "production" (`action_gradients.production_policy_grad`: every g_t
    and the surrogate's parameter gradient from one backward sweep) and "reference" (per-step
    `jacrev`, H+1 backward passes, then the surrogate by ordinary AD).
Defaults are hopper-shaped: batch 256, H 10, a 7-member 4x200 Swish ensemble with 5 elites
(`EnsembleWorldModel.imagine_step`, Hopper's termination function as its continue flag), 3x256
actor and critic, obs 11, act 3.

The same run measures the float32 matmul rate of this machine (benchmarks/matmul_peak.py: a
large square product and the update's own layer shapes, before and after the timed calls, best
kept); `peak_gflop_per_s` is the best of them and `fraction_of_peak` = achieved GFLOP/s / peak.
GFLOP per update comes from XLA's cost analysis of the compiled multi-update chunk: it counts a
loop body once, so the chunk's count is one update's; the H-step scans are fully unrolled, so
they are counted in full. Timing: interleaved calls of `chunk` updates each, best call per
program (the machine is shared; the best call is the least disturbed).

    python benchmarks/leq_throughput.py [--quick] [--elite balanced iid] [--forms separate shared]
        [--variants production reference] [--profile DIR]

--profile DIR also traces every production program (after the timing) and adds to its record
where its op time goes, by kind of XLA op (benchmarks/xla_profile.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.allocator import restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages(__file__)  # before JAX loads: as run.py trains

import jax
import jax.numpy as jnp
import numpy as np

from agent.leq import update as update_lib  # noqa: E402
from agent.world_model import EnsembleConfig, EnsembleWorldModel  # noqa: E402
from benchmarks.matmul_peak import SHAPES, matmul_rates  # noqa: E402
from benchmarks.xla_profile import op_time_shares  # noqa: E402
from envs.tasks.termination import hopper_termination as termination_fn  # noqa: E402

GAMMA, LAM, TAU, BETA, EMA_RATE = 0.997, 0.95, 0.1, 0.25, 0.005
OBS_DIM, ACT_DIM = 11, 3
ELITE_MODES = ("balanced", "iid")
FORMS = ("separate", "shared")
VARIANTS = ("production", "reference")

FULL = dict(batch=256, horizon=10, hidden=(256, 256, 256), wm_hidden=(200,) * 4, members=7,
            elites=5, chunk_prod=4, chunk_ref=2, calls=8)  # fmt: skip
QUICK = dict(batch=16, horizon=3, hidden=(32, 32), wm_hidden=(32, 32), members=3, elites=2,
             chunk_prod=4, chunk_ref=2, calls=3)  # fmt: skip


class State(NamedTuple):
    ac: update_lib.ActorCritic
    key: jax.Array


def build_world_step(cfg: dict, key: jax.Array, elite_sampling: str):
    """The project's ensemble (random weights) as the agent runs it:
    (obs, action, key) -> (next obs, reward, continue = 1 - hopper termination)."""
    wm_cfg = EnsembleConfig(
        num_members=cfg["members"],
        num_elites=cfg["elites"],
        hidden_sizes=cfg["wm_hidden"],
        weight_decays=(0.0,) * (len(cfg["wm_hidden"]) + 1),
        max_logvar_init=-4.0,  # modest noise keeps random rollouts alive longer
        elite_sampling=elite_sampling,
    )
    model = EnsembleWorldModel(OBS_DIM, ACT_DIM, wm_cfg, termination_fn)
    params = jax.jit(model.init)(key)
    step = functools.partial(model.imagine_step, params)
    return step, model.input_scaler(params)


def make_update(cfg, variant, world_step, scaler, shared_rollout: bool = False):
    """The agent's own LEQ update (agent/leq/update.py) with the given action-gradient variant
    and rollout form."""
    hyper = update_lib.LEQHyper(gamma=GAMMA, lam=LAM, horizon=cfg["horizon"], tau=TAU, beta=BETA,
                                ema_rate=EMA_RATE, shared_rollout=shared_rollout)  # fmt: skip
    nets = update_lib.make_nets(ACT_DIM, cfg["hidden"], 3e-5, 1e-4, 1_000_000)

    def update(state: State, batch: dict) -> tuple[State, dict]:
        key, k_update = jax.random.split(state.key)
        ac, metrics = update_lib.leq_update(
            nets, hyper, world_step, state.ac, scaler, batch["model_obs"],
            batch["data"], jax.random.split(k_update), variant,
        )  # fmt: skip
        return State(ac, key), {k: metrics[k] for k in ("train/actor_loss", "train/critic_loss")}

    def init(key: jax.Array, obs: jax.Array) -> State:
        k_a, k_c, key = jax.random.split(key, 3)
        actor = nets.actor.init(k_a, obs, *scaler)
        critic = nets.critic.init(k_c, obs, jnp.zeros((obs.shape[0], ACT_DIM)), *scaler)
        ema = jax.tree_util.tree_map(jnp.copy, critic)
        opts = (nets.actor_tx.init(actor), nets.critic_tx.init(critic))
        return State(update_lib.ActorCritic(actor, critic, ema, *opts), key)

    return update, init


def make_pool(key: jax.Array, size: int) -> dict:
    """Random hopper-like transitions (height about 1.25, small angles and velocities)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    offset = jnp.zeros(OBS_DIM).at[0].set(1.25)
    obs = offset + 0.05 * jax.random.normal(k1, (size, OBS_DIM))
    return {
        "observations": obs,
        "actions": jax.random.uniform(k2, (size, ACT_DIM), minval=-1, maxval=1),
        "rewards": jax.random.normal(k3, (size,)),
        "next_observations": obs + 0.01 * jax.random.normal(k4, (size, OBS_DIM)),
        "masks": jnp.ones((size,)),
    }


def sample_batch(pool: dict, key: jax.Array, batch: int) -> dict:
    k_data, k_model = jax.random.split(key)
    n = pool["observations"].shape[0]
    data = jax.tree_util.tree_map(lambda x: x[jax.random.randint(k_data, (batch,), 0, n)], pool)
    starts = pool["observations"][jax.random.randint(k_model, (batch,), 0, n)]
    return {"data": data, "model_obs": starts}


def make_chunk(update, pool: dict, batch: int, length: int):
    """`length` updates per call, fused with lax.scan (dispatch overhead paid once)."""

    def chunk(state: State) -> tuple[State, dict]:
        def body(state, _):
            key, sample_key = jax.random.split(state.key)
            state, metrics = update(state._replace(key=key), sample_batch(pool, sample_key, batch))
            return state, metrics

        state, metrics = jax.lax.scan(body, state, None, length=length)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    return jax.jit(chunk)


def gflop_per_update(compiled_chunk) -> float:
    """XLA's flop count of a compiled chunk = one update: the cost analysis counts the body of
    the multi-update loop once (checked against a separately compiled single update)."""
    cost = compiled_chunk.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"]) / 1e9


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _compile(cfg, elite, form, variant, world_step, scaler, pool, key_init) -> dict:
    update, init = make_update(cfg, variant, world_step, scaler, form == "shared")
    state = init(key_init, pool["observations"][: cfg["batch"]])
    length = cfg["chunk_prod"] if variant == "production" else cfg["chunk_ref"]
    t0 = time.perf_counter()
    chunk = make_chunk(update, pool, cfg["batch"], length).lower(state).compile()
    state, metrics = jax.block_until_ready(chunk(state))  # warm-up
    return {
        "chunk": chunk,
        "state": state,
        "record": {
            "updates_per_call": length,
            "compile_and_first_call_s": round(time.perf_counter() - t0, 2),
            "gflop_per_update": gflop_per_update(chunk),
            "finite_losses": bool(all(np.isfinite(float(v)) for v in metrics.values())),
            "call_s": [],
        },
    }


def _summarise(r: dict, peak: float) -> dict:
    best = min(r["call_s"])
    r["updates_per_s"] = _sig(r["updates_per_call"] / best)
    r["gflop_per_s"] = _sig(r["gflop_per_update"] * r["updates_per_s"])
    r["fraction_of_peak"] = round(r["gflop_per_s"] / peak, 3)
    r["gflop_per_update"] = _sig(r["gflop_per_update"])
    r["call_s"] = [round(t, 3) for t in r["call_s"]]
    return r


def _ratios(fast: dict, slow: dict) -> dict:
    """How much faster `fast` runs, and how many fewer FLOPs it needs, than `slow`."""
    return {
        "updates_per_s": round(fast["updates_per_s"] / slow["updates_per_s"], 2),
        "gflop_per_update": round(slow["gflop_per_update"] / fast["gflop_per_update"], 2),
    }


def measure(
    cfg: dict, elites=ELITE_MODES, forms=FORMS, variants=VARIANTS, profile_dir: str | None = None
) -> dict:
    key_model, key_pool, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    pool = make_pool(key_pool, 4096)
    shapes = {k: v for k, v in SHAPES.items() if cfg["batch"] == 256 or k == "square_2048"}
    rates_before = matmul_rates(shapes)
    programs = {}
    for elite in elites:
        world_step, scaler = build_world_step(cfg, key_model, elite)
        for form in forms:
            for variant in variants:
                args = (cfg, elite, form, variant, world_step, scaler, pool, key_init)
                programs[elite, form, variant] = _compile(*args)
    for _ in range(cfg["calls"]):  # interleaved, so background load hits all alike
        for p in programs.values():
            t0 = time.perf_counter()
            p["state"], _ = jax.block_until_ready(p["chunk"](p["state"]))
            p["record"]["call_s"].append(time.perf_counter() - t0)
    rates_after = matmul_rates(shapes)
    if profile_dir:  # after the timing, so that tracing cannot slow the timed calls
        for (elite, form, variant), p in programs.items():
            if variant == "production":
                run = functools.partial(p["chunk"], p["state"])
                folder = Path(profile_dir) / f"{elite}_{form}"
                p["record"]["profile"] = op_time_shares(run, 2, folder)
    rates = {k: max(rates_before[k], rates_after[k]) for k in rates_before}
    peak = max(rates.values())
    results: dict = {}
    for (elite, form, variant), p in programs.items():
        results.setdefault(elite, {}).setdefault(form, {})[variant] = _summarise(p["record"], peak)
    for by_form in results.values():
        for r in by_form.values():
            if {"production", "reference"} <= r.keys():
                r["production_over_reference"] = _ratios(r["production"], r["reference"])
        if {"separate", "shared"} <= by_form.keys() and "production" in variants:
            ratios = _ratios(by_form["shared"]["production"], by_form["separate"]["production"])
            by_form["production_shared_over_separate"] = ratios
    return {
        "benchmark": "leq_actor_critic_update",
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "shapes": {k: cfg[k] for k in ("batch", "horizon", "hidden", "wm_hidden", "members")}
        | {"elites": cfg["elites"], "obs_dim": OBS_DIM, "act_dim": ACT_DIM},
        "model_step": "agent.world_model.EnsembleWorldModel.imagine_step",
        "matmul_gflop_per_s": {"before": rates_before, "after": rates_after},
        "peak_gflop_per_s": peak,
        "results": results,
        "production_fraction_of_peak": {
            f"{elite}/{form}": by_form[form]["production"]["fraction_of_peak"]
            for elite, by_form in results.items()
            for form in forms
            if "production" in by_form[form]
        },
        "timing": "best of interleaved timed calls, after one compile+warm-up call",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    parser.add_argument("--elite", nargs="+", choices=ELITE_MODES, default=list(ELITE_MODES))
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--profile", metavar="DIR", help="also trace each production program into DIR and report "
        "where its op time goes (benchmarks/xla_profile.py)",
    )  # fmt: skip
    args = parser.parse_args()
    t0 = time.perf_counter()
    cfg = QUICK if args.quick else FULL
    out = measure(cfg, args.elite, args.forms, args.variants, args.profile)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
