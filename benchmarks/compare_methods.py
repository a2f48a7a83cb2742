"""Compare methods on the same config and data over several seeds; prints one JSON object.

Each (method, seed) is one call of `agent.runner.loop.train(cfg, logdir)` with `method` and `seed`
overridden, so every method sees the same dataset (dataset.seed is not changed), the same
gradient-step budget (train.steps) and the same evaluation protocol. Runs resume if their
logdir already holds a finished or interrupted run.

    python benchmarks/compare_methods.py --config default --methods leq bc --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.config import load_config  # noqa: E402
from agent.runner import train  # noqa: E402


def run_one(configs: list[str], overrides: list[str], method: str, seed: int, root: Path) -> dict:
    cfg = load_config(configs, [*overrides, f"method={method}", f"seed={seed}"])
    logdir = root / f"{method}_s{seed}"
    start = time.perf_counter()
    result = train(cfg, logdir, quiet=True)
    return {
        "seed": seed,
        "normalized_score": result["eval/normalized_score"],
        "return": result["eval/return"],
        "episodes": result["episodes"],
        "wall_s": round(time.perf_counter() - start, 1),
        "logdir": str(logdir),
    }


def summary(runs: list[dict]) -> dict:
    scores = np.array([r["normalized_score"] for r in runs])
    return {
        "mean": round(float(scores.mean()), 2),
        "std": round(float(scores.std()), 2),
        "min": round(float(scores.min()), 2),
        "max": round(float(scores.max()), 2),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=None)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--methods", nargs="+", default=["leq", "bc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs/compare"))
    args = parser.parse_args()
    configs = args.config or ["default"]
    out = {"configs": configs, "overrides": args.overrides, "methods": {}}
    for method in args.methods:
        runs = [run_one(configs, args.overrides, method, s, args.root) for s in args.seeds]
        out["methods"][method] = summary(runs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
