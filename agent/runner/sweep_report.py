"""A sweep's results: one table (CSV and Markdown) and learning-curve plots.

    results.csv, results.md     one row per grid point: finished runs, normalised score mean and
                                std over seeds (final evaluation), wall time (mean per run) and
                                training speed (updates/s, or env steps/s)
    curves_<group>.png          normalised score over training steps, mean +- std over seeds, one
                                line per value of the last grid key (one plot per value of the
                                others; per task without a grid)

With two or more grid keys, results.md also shows the scores as a matrix: a row per value of
the leading keys (e.g. datasets), a column per value of the last one (e.g. methods). A grid point
whose runs have not all finished says how many have.

Everything is read back from the run folders (result.json, metrics.jsonl, sweep.json), so the
report can be rebuilt at any time (`run.py sweep ... --report-only`), also while the sweep runs.
By default it goes into the sweep's ROOT; `--page FILE.md` writes the Markdown into FILE.md, between
markers named after ROOT (the page's other text and other sweeps' sections stay), and the CSV
and plots into FOLDER/<ROOT name>/ beside it (docs/RESULTS.md -> docs/results/<ROOT name>/).
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


def overall_speed(rates: list[float]) -> float | None:
    """Steps per second over the whole run from per-log-interval rates of equal step counts:
    the harmonic mean, n / sum(1 / r_i) (an arithmetic mean would overweight fast phases, such as
    LEQ's BC and FQE steps against its imagination steps)."""
    rates = [r for r in rates if r > 0]
    return len(rates) / sum(1.0 / r for r in rates) if rates else None


def run_row(configs: list[str], run: SweepRun) -> dict:
    """What one run contributes: final score (None until it finished), wall time, speed, curve."""
    cfg = run.config(configs)
    result = rundir.read_result(run.logdir) or {}
    metrics = read_metrics(run.logdir)
    return {
        "label": run.label or "(config)",
        "values": tuple(v for _, v in run.values),
        "task": cfg.task,
        "method": cfg.method,
        "seed": run.seed,
        "score": result.get(SCORE_KEY),
        "wall_s": wall_seconds(run.logdir),
        "speed": overall_speed([m[k] for m in metrics for k in SPEED_KEYS if k in m]),
        "curve": [(m["step"], m[SCORE_KEY]) for m in metrics if SCORE_KEY in m],
    }


def summarise(rows: list[dict]) -> list[dict]:
    """One line per grid point: mean and std (population) over its finished seeds' final scores;
    wall time and speed over the same runs."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["label"]].append(row)
    table = []
    for label, members in groups.items():
        done = [r for r in members if r["score"] is not None]
        scores = [r["score"] for r in done]
        walls = [r["wall_s"] for r in done if r["wall_s"] is not None]
        speeds = [r["speed"] for r in done if r["speed"] is not None]
        table.append(
            {
                "grid point": label,
                "values": members[0]["values"],
                "task": members[0]["task"],
                "method": members[0]["method"],
                "finished": len(done),
                "planned": len(members),
                "runs": str(len(done)) + ("" if len(done) == len(members) else f"/{len(members)}"),
                "score mean": _round(np.mean(scores)) if scores else None,
                "score std": _round(np.std(scores)) if scores else None,
                "wall s": _round(np.mean(walls)) if walls else None,
                "speed": _round(np.mean(speeds)) if speeds else None,
            }
        )
    return table


def _round(x: float) -> float:
    return round(float(x), 2)


def score_cell(row: dict) -> str:
    """'mean +- std' over the finished seeds; unfinished runs say how many of them finished."""
    if row["finished"] == 0:
        return f"not finished (0/{row['planned']} runs)"
    cell = f"{row['score mean']:.1f} ± {row['score std']:.1f}"
    if row["finished"] == row["planned"]:
        return cell
    return f"{cell} ({row['finished']}/{row['planned']} runs finished)"


def score_matrix(table: list[dict]) -> list[str]:
    """Markdown rows: one per value of the leading grid keys, one column per last key's value."""
    rows = list(dict.fromkeys(r["values"][:-1] for r in table))
    cols = list(dict.fromkeys(r["values"][-1] for r in table))
    cells = {r["values"]: score_cell(r) for r in table}
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for head in rows:
        values = [cells.get((*head, col), "not in the grid") for col in cols]
        lines.append(f"| {', '.join(head)} | " + " | ".join(values) + " |")
    return lines


def write_csv(table: list[dict], folder: Path) -> Path:
    path = folder / "results.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    return path


def markdown(table: list[dict], command: str, plots: list[str]) -> list[str]:
    """The report's Markdown lines: the command, the score matrix (two or more grid keys), the
    table and the plots (paths relative to the Markdown file)."""
    cell = lambda v: "-" if v is None else str(v)
    lines = [f"Produced by `{command}`.", ""]
    if table and len(table[0]["values"]) >= 2:
        lines += [
            "D4RL normalised score of the final evaluation, mean ± std over seeds:",
            "",
            *score_matrix(table),
            "",
        ]
    lines += [
        "Score: D4RL normalised score of the final evaluation, mean ± std over the finished "
        "seeds. Wall s: mean per run, summed over the calls that trained it. Speed: updates/s "
        "(offline) or environment steps/s (online) over the training steps, evaluation and "
        "world-model fit excluded.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in table]
    lines += ["", *(f"![{Path(p).stem}]({p})" for p in plots)] if plots else []
    return lines


def splice(page: Path, name: str, lines: list[str]) -> None:
    """Put `lines` between the page's markers for sweep `name` (appended when it has none), so
    the page's other text and other sweeps' sections survive a rebuild."""
    begin, end = f"<!-- sweep {name}: begin -->", f"<!-- sweep {name}: end -->"
    block = "\n".join([begin, *lines, end])
    text = page.read_text() if page.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    rundir.write_text_atomic(page, text)  # a crash never loses the page's hand-written text


def plot_curves(rows: list[dict], folder: Path) -> list[Path]:
    """One PNG per value of the leading grid keys (per task without a grid): each last-key
    value's mean +- std score over the steps all its finished seeds logged; older curves_*.png in
    `folder` are removed (nothing without matplotlib: `pip install -e '.[sweep]'` brings it)."""
    try:
        import matplotlib
    except ImportError:
        print("sweep: matplotlib is not installed, so no learning-curve plots", flush=True)
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["curve"] and row["score"] is not None:  # finished runs only, as in the table
            head, line = _plot_group(row)
            groups[head][line].append(dict(row["curve"]))
    paths = []
    for head, lines in groups.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for line, curves in lines.items():
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[s] for s in steps] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=f"{line} ({len(curves)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set(title=head, xlabel="step", ylabel="normalised score")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"curves_{head.replace(', ', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    for stale in set(folder.glob("curves_*.png")) - set(paths):
        stale.unlink()  # a group that left the grid must not keep an old plot beside the table
    return paths


def _plot_group(row: dict) -> tuple[str, str]:
    """(plot, line) of a run: leading grid values and last grid value, or task and label."""
    if len(row["values"]) >= 2:
        return ", ".join(row["values"][:-1]), row["values"][-1]
    return row["task"], row["label"]


def write_report(
    configs: list[str], runs: list[SweepRun], root: Path, command: str, page: Path | None = None
) -> list[Path]:
    """Table and plots of `runs` (the finished ones, and how many of each point are unfinished)
    into ROOT/results.md, or into the page's section for this sweep with the CSV and plots in
    PAGE_FOLDER/<root name>/ (docs/RESULTS.md -> docs/results/<root name>/); -> files written."""
    rows = [run_row(configs, run) for run in runs]
    folder = root if page is None else page.parent / page.stem.lower() / root.name
    folder.mkdir(parents=True, exist_ok=True)
    table = summarise(rows)
    plots = plot_curves(rows, folder)
    md_dir = root if page is None else page.parent
    lines = markdown(table, command, [str(p.relative_to(md_dir)) for p in plots])
    if page is None:
        md_path = root / "results.md"
        rundir.write_text_atomic(md_path, "\n".join(lines) + "\n")
    else:
        md_path = page
        splice(page, root.name, lines)
    return [write_csv(table, folder), md_path, *plots]
