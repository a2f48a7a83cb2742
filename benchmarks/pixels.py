"""Frames per second of the pixel tasks on this machine, default look against the fast settings.

For each pixel task, one environment per renderer setting steps with random actions (action
repeat 2, so physics costs two control steps per frame) and the frames/s are measured; the
settings are timed in alternating rounds in one process, so the ratio is fair on a noisy
machine. `render_only` renders the same state again and again (no physics).

    python benchmarks/pixels.py [--size 64] [--frames 200] [--rounds 3]

Prints ONE JSON object: per task and setting, frames_per_s (stepping + rendering) and
render_only_per_s, and the fast/default ratio.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=200, help="frames per round and setting")
    parser.add_argument("--rounds", type=int, default=3)
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
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
