"""Cost of one episodic-memory refresh over 1M stored transitions (VEM / GEM, agent/memory.py).

Prints ONE JSON object with, all in seconds (median of timed runs after a warm-up; compile
time reported separately):

* kernel: Form A (`memory_returns_max`, [N] values), Form B (`memory_returns_twin`, [N, 2]) and
  Form C (`memory_returns_mixture`) on two layouts of N = 1M rows given the values: 1000
  trajectories x 1000 steps, and mixed lengths drawn from 1..1000 (about half end in a true
  terminal, the rest are truncated). Form B is also timed with ~1000 parallel lanes
  (`num_lanes`), the layout that would pay off where a scan step is expensive.
* networks (median of 2 runs, no warm-up): the forward passes that produce the values, over
  the 1M successor states in large jitted chunks: VEM's V (4 heads, each 2x256 ReLU), GEM's 4
  Q critics ([400, 300], LayerNorm, the action re-concatenated after the first hidden layer;
  obs 17 / act 6) and GEM's target actor for the smoothed actions (reported separately: that
  is network arithmetic).
* reference: the official codes' per-trajectory T x T construction (numpy: every horizon of every
  row materialised, arg-max per row) on 20 trajectories x 1000, the kernel on the same rows, the
  ratio, and the largest difference between the two.

    python benchmarks/memory_update.py [--quick]
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
import numpy as np

from agent import memory  # noqa: E402
from agent.gem.networks import critics  # noqa: E402
from agent.losses import smoothed_target_actions  # noqa: E402
from agent.networks import deterministic_actor  # noqa: E402
from agent.vem.networks import value_heads  # noqa: E402

GAMMA, BETA = 0.99, 0.5
OBS_DIM, ACT_DIM = 17, 6

FULL = dict(n=1_000_000, traj_len=1000, runs=5, net_runs=2, chunk=50_000, lanes=1000,
            ref_trajs=20, ref_len=1000)  # fmt: skip
QUICK = dict(n=20_000, traj_len=100, runs=2, net_runs=1, chunk=5_000, lanes=100, ref_trajs=4,
             ref_len=100)  # fmt: skip


def timed(fn, *args, runs: int, warm_up: bool = True) -> dict:
    """Compile (lower + compile, no execution), one warm-up call, then the median of `runs`.

    Caches are cleared first so that every compile time is a real compilation. The network
    passes (tens of seconds) skip the warm-up: a first call's allocation overhead is noise there.
    """
    jax.clear_caches()
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    if warm_up:
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "compile_s": compile_s}


def make_memory(rng: np.random.Generator, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Flat storage of trajectories with the given lengths; each ends terminal or truncated."""
    n = int(lengths.sum())
    last = np.cumsum(lengths) - 1
    ends = np.zeros(n, np.float32)
    ends[last] = 1
    terminals = np.zeros(n, np.float32)
    terminals[last[rng.random(len(last)) < 0.5]] = 1
    return {
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_values": (rng.normal(size=(n, 2)) * 10).astype(np.float32),
        "terminals": terminals,
        "episode_ends": ends,
    }


def mixed_lengths(rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
    lengths = rng.integers(1, max_len + 1, size=2 * n // max_len + 10)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n)]
    return np.append(lengths, n - lengths.sum())  # the remainder closes the storage


def bench_kernel(data: dict[str, np.ndarray], cfg: dict) -> dict:
    d = {k: jnp.asarray(v) for k, v in data.items()}
    r, v, term, ends = d["rewards"], d["next_values"], d["terminals"], d["episode_ends"]
    lanes = cfg["lanes"]
    return {
        "max_form_a": timed(
            memory.memory_returns_max, r, v[:, 0], term, ends, GAMMA, runs=cfg["runs"]
        ),
        "twin_form_b": timed(memory.memory_returns_twin, r, v, term, ends, GAMMA, runs=cfg["runs"]),
        "mixture_form_c": timed(
            memory.memory_returns_mixture, r, v, term, ends, GAMMA, BETA, runs=cfg["runs"]
        ),
        f"twin_form_b_{lanes}_lanes": timed(
            jax.jit(lambda *a: memory.memory_returns_twin(*a, num_lanes=lanes)),
            r,
            v,
            term,
            ends,
            GAMMA,
            runs=cfg["runs"],
        ),  # fmt: skip
    }


# --- networks (plain jnp, random weights: only the arithmetic matters) ------------------------


def chunked(fn, chunk: int):
    """jit(fn applied to [N, ...] inputs in chunks of `chunk` rows with lax.map).

    fn(params, chunk_index, *chunk_arrays); the index lets a stochastic fn fold it into its key.
    """

    def run(params, *xs):
        n = xs[0].shape[0]
        split = [x.reshape(n // chunk, chunk, *x.shape[1:]) for x in xs]
        index = jnp.arange(n // chunk)
        out = jax.lax.map(lambda c: fn(params, c[0], *c[1:]), (index, *split))
        return out.reshape(n, *out.shape[2:])

    return jax.jit(run)


def bench_networks(cfg: dict) -> dict:
    """The agents' own networks (agent.vem.networks, agent.gem.networks) over N rows."""
    n, chunk, runs = cfg["n"], cfg["chunk"], cfg["net_runs"]
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.normal(size=(n, OBS_DIM)).astype(np.float32))
    act = jnp.asarray(rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32))
    key = jax.random.PRNGKey(0)
    v_net, q_net = value_heads([256, 256]), critics([400, 300])
    pi_net = deterministic_actor([400, 300], ACT_DIM, layer_norm=True)
    v_params = v_net.init(key, obs[:1], 0.0, 1.0)
    q_params = q_net.init(key, obs[:1], act[:1])
    pi_params = pi_net.init(key, obs[:1])

    def smoothed(p, i, o):
        action = pi_net.apply(p, o)
        return smoothed_target_actions(action, jax.random.fold_in(key, i), 0.2, 0.5)

    v_fn = chunked(lambda p, i, o: v_net.apply(p, o, 0.0, 1.0), chunk)
    q_fn = chunked(lambda p, i, o, a: q_net.apply(p, o, a), chunk)
    pi_fn = chunked(smoothed, chunk)
    return {
        "vem_v_4heads_2x256": timed(v_fn, v_params, obs, runs=runs, warm_up=False),
        "gem_q_4critics_400x300_ln": timed(q_fn, q_params, obs, act, runs=runs, warm_up=False),
        "gem_target_actor_400x300_ln": timed(pi_fn, pi_params, obs, runs=runs, warm_up=False),
        "chunk_rows": chunk,
    }


# --- official-style T x T reference -------------------------------------------------------------


def twin_reference_txt(data: dict[str, np.ndarray], gamma: float) -> np.ndarray:
    """Form B per trajectory with a T x T matrix per estimator (numpy), as the official codes do.

    rtn[X][t, h] = R^X_{t,h}; rows are filled backward in time, row t from row t+1 shifted by one
    horizon; horizons past the trajectory end are -inf so that the arg-max ignores them.
    """
    r, v = data["rewards"].astype(np.float64), data["next_values"].astype(np.float64)
    term, ends = data["terminals"], data["episode_ends"]
    out = np.zeros((len(r), 2))
    for start, length in zip(*_bounds(ends), strict=True):
        sl = slice(start, start + length)
        a = r[sl, None] + gamma * np.where(term[sl, None] > 0.5, 0.0, v[sl])  # [T, 2]
        rtn = np.full((2, length, length), -np.inf)
        for t in range(length - 1, -1, -1):
            rtn[:, t, 0] = a[t]
            if t + 1 < length:
                rtn[:, t, 1:] = r[start + t] + gamma * rtn[:, t + 1, :-1]
        rows = np.arange(length)
        h1, h2 = rtn[0].argmax(1), rtn[1].argmax(1)
        out[sl, 0] = np.maximum(rtn[1, rows, h1], a[:, 0])
        out[sl, 1] = np.maximum(rtn[0, rows, h2], a[:, 1])
    return out


def _bounds(ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    last = np.flatnonzero(ends > 0.5)
    starts = np.concatenate([[0], last[:-1] + 1])
    return starts, last - starts + 1


def bench_reference(cfg: dict) -> dict:
    rng = np.random.default_rng(2)
    data = make_memory(rng, np.full(cfg["ref_trajs"], cfg["ref_len"]))
    t0 = time.perf_counter()
    want = twin_reference_txt(data, GAMMA)
    ref_s = time.perf_counter() - t0
    d = {k: jnp.asarray(v) for k, v in data.items()}
    args = (d["rewards"], d["next_values"], d["terminals"], d["episode_ends"], GAMMA)
    kernel = timed(memory.memory_returns_twin, *args, runs=cfg["runs"])
    got = np.asarray(memory.memory_returns_twin(*args))
    return {
        "rows": int(len(data["rewards"])),
        "txt_numpy_s": ref_s,
        "kernel_s": kernel["median_s"],
        "speedup": ref_s / kernel["median_s"],
        "max_abs_diff": float(np.abs(got - want).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    cfg = QUICK if parser.parse_args().quick else FULL
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    n, tl = cfg["n"], cfg["traj_len"]
    uniform = make_memory(rng, np.full(n // tl, tl))
    mixed = make_memory(rng, mixed_lengths(rng, n, tl))
    result = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "rows": n,
        "kernel": {
            f"uniform_{n // tl}x{tl}": bench_kernel(uniform, cfg),
            f"mixed_1..{tl}_{int(mixed['episode_ends'].sum())}_trajs": bench_kernel(mixed, cfg),
        },
        "networks": bench_networks(cfg),
        "reference_txt": bench_reference(cfg),
    }
    result["total_wall_s"] = time.perf_counter() - t_start
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
