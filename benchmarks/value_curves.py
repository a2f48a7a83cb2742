"""LEQ's critic against the data's own returns over training, from the runs' logs.

For each RUN (a `leq_pixels` run folder with `leq_pixels.starts: episodes`, the default: the
latent cache holds the data's returns) the logged means over each training batch are read from
its metrics.jsonl:

    train/q_mean          the critic at the imagined states and actions (every horizon step)
    train/data_q          the critic at the data's states and actions
    train/data_mc_return  the discounted Monte-Carlo return the data collected from those states

Prints ONE JSON object: per run the last logged value of each; with several runs also their
mean, of the keys every run logs. `--plot PATH` draws the three over training steps, the mean
over runs with a band of +- one standard deviation, as a PNG.

    python benchmarks/value_curves.py RUN [RUN ...] [--plot PATH] [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

KEYS = {
    "train/q_mean": "imagined Q",
    "train/data_q": "Q on the data",
    "train/data_mc_return": "data's Monte-Carlo return",
}


def read_curves(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (steps, values)} of every key in KEYS that `run`'s metrics.jsonl logs."""
    path = run / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"value_curves: {run} has no metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    curves = {}
    for key in KEYS:
        points = [(row["step"], row[key]) for row in rows if key in row]
        if points:
            steps, values = zip(*points, strict=True)
            curves[key] = (np.asarray(steps), np.asarray(values, np.float64))
    if not curves:
        raise SystemExit(f"value_curves: {path} logs none of {', '.join(KEYS)}")
    return curves


def common_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The runs' values at the steps every run logged: (steps [T], values [runs, T])."""
    steps = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
    values = [[dict(zip(s.tolist(), v, strict=True))[t] for t in steps] for s, v in curves]
    return np.asarray(steps), np.asarray(values)


def plot(all_curves: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for key, label in KEYS.items():
        present = [c[key] for c in all_curves if key in c]
        if len(present) < len(all_curves):
            continue
        steps, values = common_curve(present)
        mean, std = values.mean(0), values.std(0)
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("value (discounted return)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--title", default="critic against the data's returns")
    args = parser.parse_args(argv)
    all_curves = [read_curves(run) for run in args.runs]
    out = {
        str(run): {key: float(v[-1]) for key, (_, v) in curves.items()}
        for run, curves in zip(args.runs, all_curves, strict=True)
    }
    if len(args.runs) > 1:
        shared = [key for key in KEYS if all(key in c for c in all_curves)]
        out["mean"] = {key: float(np.mean([c[key][1][-1] for c in all_curves])) for key in shared}
    if args.plot is not None:
        plot(all_curves, args.title, args.plot)
        out["plot"] = str(args.plot)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
