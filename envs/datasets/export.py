"""Export the behaviour policies of a GEM run: `python run.py export --run RUN --task TASK ...`.

Picks the expert / medium / medium-replay snapshots of a run folder (see
envs/datasets/trained_policies.py for what each role means), copies them as float16 to
OUT/<task>/ with a `policies.json` manifest, and records a fingerprint: the reward sums of short
collections from the written files, which a test re-collects so that a changed file, simulator
or collector shows.

The command line lives here (`add_export_arguments`, `run_export`, `export_command`); the
top-level CLI (run.py) only wires it in. Also runnable as `python -m envs.datasets.export`.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from envs.datasets.collect import collect_task
from envs.datasets.errors import DatasetError
from envs.datasets.trained_policies import MANIFEST, POLICY_DIR, TRAINED_FACTORIES
from envs.tasks.registry import UnknownTaskError, get_task

MAX_REPLAY_SNAPSHOTS = 10
FINGERPRINT_STEPS = 300
USER_ERROR = 2  # exit status for bad input, as run.py's other commands


def _eval_returns(run: Path) -> dict[int, float]:
    """Evaluation return per env step from the run's metrics.jsonl (the last entry wins)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (is {run} a run folder?)")
    returns = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if "eval/return" in entry:
            returns[int(entry["step"])] = float(entry["eval/return"])
    return returns


def select_snapshots(
    steps: list[int], returns: dict[int, float], learning_starts: int
) -> tuple[int, int, list[int]]:
    """(expert step, medium step, replay snapshot steps) from the evaluated snapshots.

    expert = the last snapshot; medium = the earlier snapshot whose return is closest to a third
    of the expert's; replay = at most MAX_REPLAY_SNAPSHOTS trained snapshots up to medium, evenly
    spaced, the medium one last.
    """
    trained = [s for s in sorted(steps) if s > learning_starts and s in returns]
    if len(trained) < 2:
        raise ValueError("need at least two evaluated snapshots after learning_starts")
    expert = trained[-1]
    target = returns[expert] / 3.0
    medium = min(trained[:-1], key=lambda s: (abs(returns[s] - target), s))
    upto = [s for s in trained if s <= medium]
    picks = np.linspace(0, len(upto) - 1, min(MAX_REPLAY_SNAPSHOTS, len(upto)))
    replay = sorted({upto[int(round(i))] for i in picks})
    return expert, medium, replay


def _read_run(run: Path) -> tuple[dict[str, Any], dict[int, Path], dict[int, float]]:
    """(config, snapshot file per env step, eval return per env step); DatasetError if unusable."""
    if not run.is_dir():
        raise DatasetError(f"{run}: no such run folder")
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise DatasetError(f"{config_path}: no such file (is {run} a run folder?)")
    config = _read_yaml(config_path)
    snaps = {int(p.stem.split("_")[1]): p for p in (run / "snapshots").glob("actor_*.npz")}
    if not snaps:
        raise DatasetError(
            f"{run / 'snapshots'}: no actor_*.npz snapshots (train GEM with gem.snapshot_every > 0)"
        )
    return config, snaps, _eval_returns(run)


def export(run: Path, task: str, out: Path, command: str) -> dict[str, Any]:
    """Copy the chosen snapshots of GEM run `run` (float16) to out/<task>/, with the manifest.

    Raises UnknownTaskError for an unknown task and DatasetError for an unusable run folder.
    """
    get_task(task)  # fail before writing anything
    run, out = Path(run), Path(out)
    config, snaps, returns = _read_run(run)
    starts = int(config["gem"]["learning_starts"])
    try:
        expert, medium, replay = select_snapshots(list(snaps), returns, starts)
    except ValueError as err:
        raise DatasetError(f"{run}: {err}") from None
    folder = out / task
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("actor_*.npz"):
        old.unlink()
    for step in sorted({expert, medium, *replay}):
        with np.load(snaps[step]) as f:
            weights = {k: f[k].astype(np.float16) for k in f.files}
        np.savez_compressed(folder / snaps[step].name, **weights)

    def entry(step: int) -> dict[str, Any]:
        return {"file": snaps[step].name, "env_step": step, "eval_return": returns[step]}

    manifest = {
        "task": task,
        "made_by": {
            "command": command,
            "seed": config["seed"],
            "method": "gem" if config["gem"]["memory"] else "td3",
            "env_steps": config["train"]["steps"],
            "learning_starts": starts,
            "eval_episodes": config["eval"]["episodes"],
        },
        "expert": entry(expert),
        "medium": entry(medium),
        "medium_replay": {
            "random_steps": starts,
            "segments": [{**entry(s), "stop": s} for s in replay],
        },
        "snapshot_returns": {str(s): returns[s] for s in sorted(snaps) if s in returns},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["fingerprint"] = fingerprint(task, out)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def fingerprint(task_name: str, folder: Path) -> dict[str, Any]:
    """Reward sums of short collections (FINGERPRINT_STEPS steps, seed 0) from the files in
    `folder` (holding <task_name>/policies.json): a test re-collects them, so a changed file,
    simulator or collector shows."""
    task = get_task(task_name)
    sums = {}
    for quality in ("medium", "expert", "medium-replay"):
        factory = functools.partial(TRAINED_FACTORIES[quality], folder=Path(folder))
        raw = collect_task(task, quality, FINGERPRINT_STEPS, 0, False, factory=factory)
        sums[quality] = float(raw["rewards"].sum())
    return {"steps": FINGERPRINT_STEPS, "seed": 0, "reward_sums": sums}


def _read_yaml(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(path.read_text())


# ------------------------------------------------------------------------------------------
# Command line


DESCRIPTION = (
    "Export the expert / medium / medium-replay actor snapshots of a GEM run (float16) with a "
    "policies.json manifest to OUT/<task>/, from which `collect --quality medium|expert|"
    "medium-replay|medium-expert` then builds datasets."
)


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the export options (--run, --task, --out, --made-with) to `parser`."""
    parser.add_argument("--run", type=Path, required=True, help="a GEM run folder with snapshots/")
    parser.add_argument("--task", required=True, help="the task the run trained on")
    parser.add_argument(
        "--out",
        type=Path,
        default=POLICY_DIR,
        help="policy folder; writes OUT/<task>/ (default: the package's policy_files)",
    )
    parser.add_argument("--made-with", default="", help="the training command, for the manifest")
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Run an export from parsed arguments; prints the chosen expert and medium snapshots.

    Raises DatasetError / UnknownTaskError for bad input (the caller prints them)."""
    manifest = export(args.run, args.task, args.out, args.made_with)
    print(json.dumps({k: manifest[k] for k in ("expert", "medium")}, indent=1))
    return 0


def export_command(argv: list[str] | None = None, prog: str = "run.py export") -> int:
    """Parse `argv` (the arguments after `export`), run the export, return the exit status:
    0, or 2 after printing `error: <one line>` for bad input."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    args = add_export_arguments(parser).parse_args(argv)
    try:
        return run_export(args)
    except UnknownTaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return USER_ERROR


if __name__ == "__main__":
    sys.exit(export_command(prog="python -m envs.datasets.export"))
