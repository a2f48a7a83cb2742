"""A sweep's results: one table (CSV and Markdown) and one learning-curve plot per task.

    ROOT/results.csv, ROOT/results.md   one row per grid point: runs, normalised score mean and
                                        std over seeds (final evaluation), wall time (mean per
                                        run) and training speed (updates/s, or env steps/s)
    ROOT/curves_<task>.png              normalised score over training steps, mean +- std over
                                        seeds, one line per grid point of that task

Everything is read back from the run folders (result.json, metrics.jsonl, sweep.json), so the
report of a finished sweep can be rebuilt at any time.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from agent.runner import rundir
from agent.runner.sweep import SweepRun, wall_seconds

SPEED_KEYS = ("train/updates_per_second", "train/env_steps_per_second")
SCORE_KEY = "eval/normalized_score"
COLUMNS = ("grid point", "task", "method", "runs", "score mean", "score std", "wall s", "speed")


def read_metrics(logdir: Path) -> list[dict]:
    path = Path(logdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_row(configs: list[str], run: SweepRun) -> dict:
    """What one finished run contributes: final score, wall time, mean training speed, curve."""
    cfg = run.config(configs)
    result = rundir.read_result(run.logdir) or {}
    metrics = read_metrics(run.logdir)
    speeds = [m[k] for m in metrics for k in SPEED_KEYS if k in m]
    curve = [(m["step"], m[SCORE_KEY]) for m in metrics if SCORE_KEY in m]
    return {
        "label": run.label or "(config)",
        "task": cfg.task,
        "method": cfg.method,
        "seed": run.seed,
        "score": result.get(SCORE_KEY),
        "wall_s": wall_seconds(run.logdir),
        "speed": float(np.mean(speeds)) if speeds else None,
        "curve": curve,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """One line per grid point: mean and std over its seeds' final scores (population std)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["label"]].append(row)
    table = []
    for label, members in groups.items():
        scores = [r["score"] for r in members if r["score"] is not None]
        walls = [r["wall_s"] for r in members if r["wall_s"] is not None]
        speeds = [r["speed"] for r in members if r["speed"] is not None]
        table.append(
            {
                "grid point": label,
                "task": members[0]["task"],
                "method": members[0]["method"],
                "runs": len(scores),
                "score mean": _round(np.mean(scores)) if scores else None,
                "score std": _round(np.std(scores)) if scores else None,
                "wall s": _round(np.mean(walls)) if walls else None,
                "speed": _round(np.mean(speeds)) if speeds else None,
            }
        )
    return table


def _round(x: float) -> float:
    return round(float(x), 2)


def write_table(table: list[dict], root: Path, command: str) -> tuple[Path, Path]:
    csv_path, md_path = root / "results.csv", root / "results.md"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    cell = lambda v: "-" if v is None else str(v)
    lines = [
        f"Produced by `{command}`.",
        "",
        "Score: D4RL normalised score of the final evaluation, mean +- std over seeds. "
        "Wall s: mean per run (the call that finished it). Speed: updates/s (offline) or "
        "environment steps/s (online), mean over the run's logs.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in table]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def plot_curves(rows: list[dict], root: Path) -> list[Path]:
    """One PNG per task: each grid point's mean +- std score over the steps all seeds logged
    (none without matplotlib: `pip install -e '.[sweep]'` brings it)."""
    try:
        import matplotlib
    except ImportError:
        print("sweep: matplotlib is not installed, so no learning-curve plots", flush=True)
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["curve"]:
            by_task[row["task"]][row["label"]].append(dict(row["curve"]))
    paths = []
    for task, labels in by_task.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, curves in labels.items():
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[s] for s in steps] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=f"{label} ({len(curves)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set(title=task, xlabel="step", ylabel="normalised score")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = root / f"curves_{task}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(configs: list[str], runs: list[SweepRun], root: Path, command: str) -> list:
    """Table and plots of the finished runs among `runs`; -> the files written."""
    rows = [run_row(configs, run) for run in runs if rundir.read_result(run.logdir) is not None]
    table = summarise(rows)
    files = [*write_table(table, root, command), *plot_curves(rows, root)]
    return files
