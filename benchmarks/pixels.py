"""The pixel pipeline's speed on this machine: rendering, the image replay, the encoder's step.

1. Rendering: for each pixel task, one environment per renderer setting (default look, fast)
   steps with random actions (action repeat 2: two control steps per frame); the settings are
   timed in alternating rounds in one process, so their ratio is fair on a noisy machine.
   `render_only` renders the same state again and again (no physics).
2. Image replay: a host replay of `--replay-rows` random 64x64 frames (observations and next
   observations, uint8, 500-step episodes); batches/s of uniform transitions (256) and of
   sequence windows (16 x 64, what an RSSM trains on), gathered without a Python loop per row.
3. BC's encoder step (DrQ's encoder, bc defaults): seconds per gradient step at batch 256 run
   as one jitted step in a Python loop, and at batch 32 that against the same steps inside one
   lax.scan (XLA on CPU runs convolutions inside a loop many times slower: why
   Agent.host_loop_chunks exists).

    python benchmarks/pixels.py [--size 64] [--frames 200] [--rounds 3] [--replay-rows 50000]

Prints ONE JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402, F401  (chooses the OpenGL platform before mujoco loads)
from envs.tasks.dmc_pixels import make_dmc_pixels  # noqa: E402

TASKS = ("walker-walk-pixels", "cheetah-run-pixels", "cartpole-swingup-pixels")
SETTINGS = {"default": False, "fast": True}


def step_rate(env, frames: int, rng: np.random.Generator) -> float:
    """Frames per second of env.step (physics and rendering), resetting at episode ends."""
    start = time.perf_counter()
    for _ in range(frames):
        *_, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        if terminated or truncated:
            env.reset()
    return frames / (time.perf_counter() - start)


def render_rate(env, frames: int) -> float:
    """Frames per second of rendering alone."""
    renderer = env.unwrapped._renderer
    start = time.perf_counter()
    for _ in range(frames):
        renderer.render()
    return frames / (time.perf_counter() - start)


def replay_rates(rows: int, size: int, repeats: int = 20) -> dict[str, float]:
    """Batches/s of uniform transitions (256) and windows (16 x 64) from a host image replay."""
    from agent import replay as replay_lib

    rng = np.random.default_rng(0)
    frames = lambda: rng.integers(0, 256, (rows, size, size, 3), dtype=np.uint8)  # noqa: E731
    arrays = {
        "observations": {"image": frames()},
        "next_observations": {"image": frames()},
        "actions": rng.uniform(-1, 1, (rows, 6)).astype(np.float32),
        "rewards": np.zeros(rows, np.float32),
        "masks": np.ones(rows, np.float32),
        "timeouts": np.zeros(rows, np.float32),
        "episode_ends": ((np.arange(rows) % 500) == 499).astype(np.float32),
    }
    replay = replay_lib.HostReplay(arrays)
    out = {}
    for name, draw in (
        ("transitions_256_per_s", lambda r: replay.sample(r, 256)),
        ("windows_16x64_per_s", lambda r: replay.sample_windows(r, 16, 64)),
    ):
        draw(replay_lib.host_rng(0, 0))
        start = time.perf_counter()
        for i in range(repeats):
            draw(replay_lib.host_rng(0, i))
        out[name] = repeats / (time.perf_counter() - start)
    return out


def encoder_step_seconds(size: int, batch: int, steps: int = 2) -> dict[str, float]:
    """Seconds per BC-from-pixels gradient step (bc defaults): host loop vs scan."""
    import jax
    import jax.numpy as jnp

    from agent.bc.networks import pixel_policy
    from agent.config import load_config
    from agent.protocol import Field, Spec

    bc = load_config(["default"]).bc
    spec = Spec({"image": Field((size, size, 3), np.dtype(np.uint8))}, 6, 500)
    net = pixel_policy(spec, bc.hidden, bc.encoder_depth, bc.encoder_layers, bc.feature_dim)
    rng = np.random.default_rng(0)
    obs = {"image": jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))}
    target = jnp.zeros((batch, 6))
    mean, std = jnp.zeros(spec.flat_obs_dim), jnp.ones(spec.flat_obs_dim)
    params = net.init(jax.random.PRNGKey(0), obs, mean, std)

    def step(params, _=None):
        loss = lambda p: jnp.mean((net.apply(p, obs, mean, std) - target) ** 2)  # noqa: E731
        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1e-4 * g, params, grads), None

    one = jax.jit(step)
    scanned = jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps)[0])
    jax.block_until_ready(one(params))
    jax.block_until_ready(scanned(params))
    start = time.perf_counter()
    p = params
    for _ in range(steps):
        p = one(p)[0]
    jax.block_until_ready(p)
    loop = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    jax.block_until_ready(scanned(params))
    scan = (time.perf_counter() - start) / steps
    return {"host_loop_s": loop, "lax_scan_s": scan, "scan_over_loop": scan / loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=200, help="frames per round and setting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replay-rows", type=int, default=50_000)
    args = parser.parse_args()
    out = {"size": args.size, "mujoco_gl": os.environ.get("MUJOCO_GL"), "tasks": {}}
    for task in TASKS:
        made = {
            name: make_dmc_pixels(task, seed=0, image_size=args.size, fast_render=fast)
            for name, fast in SETTINGS.items()
        }
        for env in made.values():
            env.reset(seed=0)
            step_rate(env, 5, np.random.default_rng(0))  # warm-up: GL context, first frames
        steps = {name: [] for name in SETTINGS}
        renders = {name: [] for name in SETTINGS}
        rng = np.random.default_rng(0)
        for _ in range(args.rounds):
            for name, env in made.items():
                steps[name].append(step_rate(env, args.frames, rng))
                renders[name].append(render_rate(env, args.frames))
        result = {
            name: {
                "frames_per_s": float(np.median(steps[name])),
                "render_only_per_s": float(np.median(renders[name])),
            }
            for name in SETTINGS
        }
        result["fast_over_default"] = (
            result["fast"]["frames_per_s"] / result["default"]["frames_per_s"]
        )
        out["tasks"][task] = result
        for env in made.values():
            env.close()
    out["image_replay"] = {"rows": args.replay_rows, **replay_rates(args.replay_rows, args.size)}
    out["bc_encoder_step_batch_256_s"] = encoder_step_seconds(args.size, 256)["host_loop_s"]
    out["bc_encoder_step_batch_32"] = encoder_step_seconds(args.size, 32)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
