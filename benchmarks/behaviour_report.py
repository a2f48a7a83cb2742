"""The behaviour policies and their datasets, measured: learning curves and the dataset table.

    python benchmarks/behaviour_report.py --plot docs/behaviour_runs.png
    python benchmarks/behaviour_report.py --table [--size 200000] [--seed 0] [--data-dir data]

--plot draws the evaluation return of every snapshot of the committed behaviour runs (from each
task's policies.json, so it needs no run folder), marking the medium and expert snapshots.
--table builds (or reuses, see `python run.py collect`) every quality's dataset for every task
with committed policies, prints one JSON line per dataset and then a markdown table beside the
published D4RL v2 trajectory counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from envs.datasets.trained_policies import POLICY_DIR, read_manifest  # noqa: E402
from envs.tasks.registry import get_task  # noqa: E402

QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")

# Trajectories of the D4RL v2 datasets: the 'train' split sizes (one example per episode,
# cut at terminals and timeouts) of the TFDS catalog pages d4rl_mujoco_hopper, _walker2d and
# _halfcheetah (https://www.tensorflow.org/datasets/catalog/d4rl_mujoco_hopper etc.); the
# medium / medium-replay / expert counts agree with the Hugging Face viewer of
# edbeeching/decision_transformer_gym_replay.
D4RL_V2_TRAJECTORIES = {
    "hopper": {
        "random": 45240,
        "medium": 2187,
        "medium-replay": 2041,
        "medium-expert": 3214,
        "expert": 1028,
        "full-replay": 3515,
    },
    "walker2d": {
        "random": 48908,
        "medium": 1191,
        "medium-replay": 1093,
        "medium-expert": 2191,
        "expert": 1001,
        "full-replay": 1888,
    },
    "halfcheetah": {
        "random": 1000,
        "medium": 1000,
        "medium-replay": 202,
        "medium-expert": 2000,
        "expert": 1000,
        "full-replay": 1000,
    },
}


def policy_tasks(folder: Path = POLICY_DIR) -> list[str]:
    """The tasks with a committed policies.json, sorted."""
    return sorted(p.parent.name for p in Path(folder).glob("*/policies.json"))


def plot_curves(out: Path, folder: Path = POLICY_DIR) -> list[str]:
    """One panel per task (three to a row): evaluation return per snapshot, medium and expert
    marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = policy_tasks(folder)
    if not tasks:
        raise SystemExit(f"error: {folder}: no <task>/policies.json to plot")
    columns = min(3, len(tasks))
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        manifest = read_manifest(task, folder)
        made = manifest["made_by"]
        points = sorted((int(s), r) for s, r in manifest["snapshot_returns"].items())
        steps, returns = np.array(points, dtype=float).T
        ax.plot(steps / 1e3, returns, lw=1.2, color="tab:blue", label="snapshot (10 episodes)")
        for role, color in (("medium", "tab:orange"), ("expert", "tab:green")):
            entry = manifest[role]
            ax.scatter(entry["env_step"] / 1e3, entry["eval_return"], color=color, zorder=3)
            ax.annotate(role, (entry["env_step"] / 1e3, entry["eval_return"]), fontsize=8)
        ax.axvline(made["learning_starts"] / 1e3, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{task}: {made['method']}, seed {made['seed']}", fontsize=10)
        ax.set_xlabel("environment steps (thousands)")
        ax.set_ylabel("evaluation return (deterministic)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return tasks


def dataset_row(task_name: str, quality: str, size: int, seed: int, data_dir: str) -> dict:
    """Build or reuse one dataset and measure it: steps, trajectories, mean return, score."""
    from envs.datasets.d4rl_hdf5 import read_d4rl_hdf5
    from envs.datasets.loading import build_or_reuse
    from envs.datasets.preprocess import return_stats

    task = get_task(task_name)
    path = build_or_reuse(task, quality, size, seed, data_dir)
    raw = read_d4rl_hdf5(path)
    ends = (raw["terminals"] > 0) | (raw["timeouts"] > 0)
    stats = return_stats(raw["rewards"], ends)
    return {
        "dataset": f"{task_name}-{quality}",
        "steps": int(len(raw["rewards"])),
        "trajectories": int(stats["n_episodes"]),
        "return_mean": float(stats["return_mean"]),
        "normalized_score": float(task.normalized_score(stats["return_mean"])),
        "d4rl_v2_trajectories": D4RL_V2_TRAJECTORIES.get(task_name, {}).get(quality),
        "seed": seed,
    }


def markdown(rows: list[dict]) -> str:
    """The dataset table of docs/data.md, from `rows`."""
    lines = [
        "| dataset | steps | trajectories | mean return | normalised score "
        "| D4RL v2 trajectories |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        d4rl = r["d4rl_v2_trajectories"]
        lines.append(
            f"| {r['dataset']} | {r['steps']:,} | {r['trajectories']:,} | "
            f"{r['return_mean']:.1f} | {r['normalized_score']:.1f} | "
            f"{'-' if d4rl is None else f'{d4rl:,}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", type=Path, help="write the learning curves to this PNG")
    parser.add_argument("--table", action="store_true", help="build and measure every dataset")
    parser.add_argument("--task", action="append", help="limit the table to these tasks")
    parser.add_argument("--size", type=int, default=200_000, help="steps per dataset")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--data-dir", default="data", help="dataset cache folder")
    args = parser.parse_args(argv)
    if not args.plot and not args.table:
        parser.error("give --plot PNG and/or --table")
    if args.plot:
        tasks = plot_curves(args.plot)
        print(json.dumps({"plot": str(args.plot), "tasks": tasks}), flush=True)
    if args.table:
        rows = []
        for task in args.task or policy_tasks():
            for quality in QUALITIES:
                rows.append(dataset_row(task, quality, args.size, args.seed, args.data_dir))
                print(json.dumps(rows[-1]), flush=True)
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
