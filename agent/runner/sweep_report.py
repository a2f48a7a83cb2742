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
With `--page`, each finished run is also recorded in runs.jsonl beside the CSV, and a run whose
folder is absent (another machine trained it) is read from its record (sweep_records.py).
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
from agent.runner.sweep_records import (
    holds_final_result,
    read_records,
    record_key,
    records_folder,
    update_records,
)

SPEED_KEYS = ("train/updates_per_second", "train/env_steps_per_second")
SCORE_KEY = "eval/normalized_score"
CARRIED_NOTE = (
    "† Kept from this page's previous report: these runs finished before sweeps kept per-run "
    "records, on a machine since replaced, so their table row and plot remain but no run folder "
    "or record does."
)
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


def run_row(configs: list[str], run: SweepRun, record: dict | None = None) -> dict:
    """What one run contributes: final score (None until it finished), wall time, speed, curve;
    from its folder, or from its record (sweep_records.py) when the folder holds no result."""
    cfg = run.config(configs)
    result = rundir.read_result(run.logdir)
    row = {
        "label": run.label or "(config)",
        "values": tuple(v for _, v in run.values),
        "seed": run.seed,
    }
    row |= {"task": cfg.task, "method": cfg.method, "config": cfg.to_dict()}
    if result is None and holds_final_result(record, cfg):
        return (
            row
            | {k: record[k] for k in ("step", "score", "wall_s", "speed")}
            | {"curve": [tuple(point) for point in record["curve"]]}
        )
    result = result or {}
    metrics = read_metrics(run.logdir)
    return row | {
        "step": result.get("step"),
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
    cell = f"{row['score mean']:.1f} ± {row['score std']:.1f}" + (
        " †" if row.get("carried") else ""
    )
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
    mark = lambda row, c: " †" if c == "runs" and row.get("carried") else ""
    lines += [
        "| " + " | ".join(cell(row[c]) + mark(row, c) for c in COLUMNS) + " |" for row in table
    ]
    if any(row.get("carried") for row in table):
        lines += ["", CARRIED_NOTE]
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


def plot_curves(rows: list[dict], folder: Path, keep: frozenset[str] = frozenset()) -> list[Path]:
    """One PNG per value of the leading grid keys (per task without a grid): each last-key
    value's mean +- std score over the steps all its finished seeds logged; older curves_*.png in
    `folder` are removed, except those of the plot groups in `keep` (nothing without matplotlib:
    `pip install -e '.[sweep]'` brings it)."""
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
            head, line = _plot_head(row["values"], row["task"]), _plot_line(row)
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
        path = plot_path(folder, head)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    kept = {plot_path(folder, head) for head in keep}
    for stale in set(folder.glob("curves_*.png")) - set(paths) - kept:
        stale.unlink()  # a group that left the grid must not keep an old plot beside the table
    return paths


def plot_path(folder: Path, head: str) -> Path:
    return folder / f"curves_{head.replace(', ', '_')}.png"


def _plot_head(values: tuple[str, ...], task: str) -> str:
    """The plot a run or grid point is drawn in: its leading grid values, or its task."""
    return ", ".join(values[:-1]) if len(values) >= 2 else task


def _plot_line(row: dict) -> str:
    """The line a run is drawn on: its last grid value, or its label."""
    return row["values"][-1] if len(row["values"]) >= 2 else row["label"]


def carry_previous(table: list[dict], folder: Path) -> list[dict]:
    """The table, where a grid point with no finished run (no run folder, no record) takes its
    row from the previous results.csv in `folder` if that report had all its runs finished, marked
    `carried`: runs that finished before sweeps kept records keep their measured row when a
    replaced machine has lost their folders."""
    path = folder / "results.csv"
    if not path.exists():
        return table
    with path.open(newline="") as handle:
        previous = {row["grid point"]: row for row in csv.DictReader(handle)}
    carried = []
    for row in table:
        old = previous.get(row["grid point"])
        if row["finished"] == 0 and old and old["runs"] == str(row["planned"]):
            numbers = {
                key: _number(old[key]) for key in ("score mean", "score std", "wall s", "speed")
            }
            row = row | numbers | {"finished": row["planned"], "runs": old["runs"], "carried": True}
        carried.append(row)
    return carried


def _number(text: str) -> float | None:
    return float(text) if text not in ("", "None") else None


def write_report(
    configs: list[str], runs: list[SweepRun], root: Path, command: str, page: Path | None = None
) -> list[Path]:
    """Table and plots of `runs` (the finished ones, and how many of each point are unfinished)
    into ROOT/results.md, or into the page's section for this sweep with the CSV and plots in
    PAGE_FOLDER/<root name>/ (docs/RESULTS.md -> docs/results/<root name>/); -> files written."""
    folder = root if page is None else records_folder(root, page)
    folder.mkdir(parents=True, exist_ok=True)
    records = read_records(folder) if page is not None else {}
    rows = [run_row(configs, run, records.get(record_key(run.label, run.seed))) for run in runs]
    table = summarise(rows)
    if page is not None:
        update_records(folder, rows)
        table = carry_previous(table, folder)
    fresh = {_plot_head(r["values"], r["task"]) for r in rows if r["score"] is not None}
    carried = {_plot_head(r["values"], r["task"]) for r in table if r.get("carried")} - fresh
    drawn = set(plot_curves(rows, folder, keep=frozenset(carried)))
    heads = dict.fromkeys(_plot_head(r["values"], r["task"]) for r in table)  # in table order
    plots = [
        path
        for head in heads
        if (path := plot_path(folder, head)) in drawn or (head in carried and path.exists())
    ]
    md_dir = root if page is None else page.parent
    lines = markdown(table, command, [str(p.relative_to(md_dir)) for p in plots])
    if page is None:
        md_path = root / "results.md"
        rundir.write_text_atomic(md_path, "\n".join(lines) + "\n")
    else:
        md_path = page
        splice(page, root.name, lines)
    return [write_csv(table, folder), md_path, *plots]
