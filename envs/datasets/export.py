"""Export the behaviour policies of an online run (SAC, GEM or TD3):
`python run.py export --run RUN --task TASK ...`.

Picks the expert / medium / medium-replay / full-replay snapshots of a run folder (see
envs/datasets/trained_policies.py for what each role means), copies them as float16 to
OUT/<task>/ with a `policies.json` manifest, and records a fingerprint: the reward sums of short
collections from the written files, which a test re-collects so that a changed file, simulator
or collector shows.

The command's options live here (`add_export_arguments`, `run_export`); `python run.py export`
(agent/runner/cli.py) is its only entry point.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from envs.datasets.collect import collect_task
from envs.datasets.errors import DatasetError
from envs.datasets.trained_policies import (
    DETERMINISTIC,
    MANIFEST,
    POLICY_DIR,
    TANH_GAUSSIAN,
    TRAINED_FACTORIES,
    read_manifest,
)
from envs.tasks.registry import get_task

MAX_REPLAY_SNAPSHOTS = 10
FINGERPRINT_STEPS = 300


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
    steps: list[int], returns: dict[int, float], learning_starts: int, upto: int | None = None
) -> tuple[int, int, list[int], list[int]]:
    """(expert, medium, medium-replay snapshots, full-replay snapshots) from evaluated snapshots.

    expert = the last snapshot (at or before `upto` when given), as D4RL trained its experts to
    the end. medium = D4RL's early-stopped policy: of the snapshots up to the first one whose
    return reaches half the expert's (later ones can dip to a third while already expert-like),
    the one whose return is closest to a third of the expert's. Each replay = at most
    MAX_REPLAY_SNAPSHOTS trained snapshots up to medium (expert), evenly spaced, medium (expert)
    last.
    """
    trained = [s for s in sorted(steps) if s > learning_starts and s in returns]
    if upto is not None:
        trained = [s for s in trained if s <= upto]
    if len(trained) < 2:
        raise ValueError("need at least two evaluated snapshots after learning_starts")
    expert = trained[-1]
    target = returns[expert] / 3.0
    halfway = next(
        (i for i, s in enumerate(trained) if returns[s] >= returns[expert] / 2.0), len(trained)
    )
    early = trained[: max(halfway, 1) + 1][: len(trained) - 1]
    medium = min(early, key=lambda s: (abs(returns[s] - target), s))
    return expert, medium, _spread(trained, medium), _spread(trained, expert)


def _spread(trained: list[int], last: int) -> list[int]:
    """At most MAX_REPLAY_SNAPSHOTS of `trained` up to `last`, evenly spaced, `last` included."""
    upto = [s for s in trained if s <= last]
    picks = np.linspace(0, len(upto) - 1, min(MAX_REPLAY_SNAPSHOTS, len(upto)))
    return sorted({upto[int(round(i))] for i in picks})


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
            f"{run / 'snapshots'}: no actor_*.npz snapshots (train with snapshot_every > 0)"
        )
    return config, snaps, _eval_returns(run)


# online method -> the kind of actor its snapshots hold (trained_policies.ACTOR_KINDS)
METHOD_ACTORS = {"sac": TANH_GAUSSIAN, "td3": DETERMINISTIC, "gem": DETERMINISTIC}


def _method(config: dict[str, Any], run: Path) -> tuple[str, str, int]:
    """(method label, actor kind, learning_starts) of the run's config; DatasetError if none."""
    method = config.get("method", "gem")  # GEM runs before the method key had none
    if method not in METHOD_ACTORS or "learning_starts" not in config.get(method, {}):
        raise DatasetError(
            f"{run / 'config.yaml'}: method '{method}' has no actor snapshots to export "
            f"(online methods: {', '.join(METHOD_ACTORS)})"
        )
    label = method
    if method == "gem" and not config["gem"].get("memory", True):
        label = "gem (memory off)"
    return label, METHOD_ACTORS[method], int(config[method]["learning_starts"])


def export(
    run: Path, task: str, out: Path, command: str, upto: int | None = None
) -> dict[str, Any]:
    """Copy the chosen snapshots of online run `run` (float16) to out/<task>/, with the manifest.

    `upto` treats the run as if it had ended at that env step (expert = the last snapshot at or
    before it). Raises UnknownTaskError for an unknown task and DatasetError for an unusable run
    folder.
    """
    get_task(task)  # fail before writing anything
    run, out = Path(run), Path(out)
    config, snaps, returns = _read_run(run)
    label, kind, starts = _method(config, run)
    try:
        expert, medium, medium_replay, full_replay = select_snapshots(
            list(snaps), returns, starts, upto
        )
    except ValueError as err:
        raise DatasetError(f"{run}: {err}") from None
    folder = out / task
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("actor_*.npz"):
        old.unlink()
    for step in sorted({expert, medium, *medium_replay, *full_replay}):
        with np.load(snaps[step]) as f:
            weights = {k: f[k].astype(np.float16) for k in f.files}
        np.savez_compressed(folder / snaps[step].name, **weights)

    def entry(step: int) -> dict[str, Any]:
        return {"file": snaps[step].name, "env_step": step, "eval_return": returns[step]}

    def schedule(picks: list[int]) -> dict[str, Any]:
        return {"random_steps": starts, "segments": [{**entry(s), "stop": s} for s in picks]}

    manifest = {
        "task": task,
        "actor": kind,
        "made_by": {
            "command": command,
            "seed": config["seed"],
            "method": label,
            "env_steps": config["train"]["steps"],
            "exported_upto": expert,
            "learning_starts": starts,
            "eval_episodes": config["eval"]["episodes"],
        },
        "expert": entry(expert),
        "medium": entry(medium),
        "medium_replay": schedule(medium_replay),
        "full_replay": schedule(full_replay),
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
    qualities = ["medium", "expert", "medium-replay"]
    if "full_replay" in read_manifest(task_name, Path(folder)):
        qualities.append("full-replay")
    for quality in qualities:
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
    "Export the expert / medium / medium-replay / full-replay actor snapshots of an online run "
    "(SAC, GEM or TD3; float16) with a policies.json manifest to OUT/<task>/, from which "
    "`collect --quality medium|expert|medium-replay|full-replay|medium-expert` then builds "
    "datasets."
)


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the export options (--run, --task, --out, --made-with) to `parser`."""
    parser.add_argument(
        "--run", type=Path, required=True, help="an online run folder with snapshots/"
    )
    parser.add_argument("--task", required=True, help="the task the run trained on")
    parser.add_argument(
        "--out",
        type=Path,
        default=POLICY_DIR,
        help="policy folder; writes OUT/<task>/ (default: the package's policy_files)",
    )
    parser.add_argument("--made-with", default="", help="the training command, for the manifest")
    parser.add_argument(
        "--upto",
        type=int,
        default=None,
        help="export as if the run had ended at this env step (default: its last snapshot)",
    )
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Run an export from parsed arguments; prints the chosen expert and medium snapshots.

    Raises DatasetError / UnknownTaskError for bad input (the caller prints them)."""
    manifest = export(args.run, args.task, args.out, args.made_with, args.upto)
    print(json.dumps({k: manifest[k] for k in ("expert", "medium")}, indent=1))
    return 0
