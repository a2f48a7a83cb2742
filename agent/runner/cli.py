"""Command line: `python run.py [train|eval|collect|export|sweep|presets] ...`; no subcommand means
`train`.

User mistakes (a missing config, an unknown key, a wrong type, a bad dataset file) and a run
folder that another process is training into print one line, `error: ...`, and exit with status
2; a run that diverges exits with 3 and a failed write (a full disk) with 1, each after one line.
Nothing already saved is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUBCOMMANDS = ("train", "eval", "collect", "export", "sweep", "presets")
USER_ERROR = 2


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        metavar="NAME_OR_PATH",
        help="a preset name (configs/NAME.yaml, or an alias: `run.py presets` lists both) or a "
        "YAML path; repeatable, later ones override earlier ones (default: default)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one key, e.g. --set train.steps=5000; repeatable; the value is parsed as "
        "YAML and must have the type of the default",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Train and evaluate world-model agents (LEQ, VEM, GEM) and baselines "
        "(BC, SAC, TD3).",
    )
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,collect,export,sweep,presets}")

    train = sub.add_parser(
        "train",
        help="train an agent (resumes from LOGDIR's newest checkpoint)",
        description="Build the dataset if needed, train, evaluate periodically and at the end. "
        "Rerunning the same command with the same --logdir resumes exactly where it stopped.",
    )
    _add_config_flags(train)
    train.add_argument(
        "--logdir", type=Path, help="run folder (default: runs/<config names joined by '-'>)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = sub.add_parser(
        "eval",
        help="evaluate the newest checkpoint of a run",
        description="Evaluate the newest checkpoint in LOGDIR and print the mean return and the "
        "D4RL normalised score.",
    )
    evaluate.add_argument("--logdir", type=Path, required=True, help="the run folder")
    evaluate.add_argument(
        "--episodes", type=int, default=None, help="episodes (default: eval.final_episodes)"
    )

    collect = sub.add_parser(
        "collect",
        help="build datasets in the real simulators (D4RL HDF5 layout)",
        description="Build the dataset that the config's task and dataset section name, or the "
        "ones named by --task/--quality, in D4RL HDF5 layout; existing files are reused.",
    )
    _add_config_flags(collect)
    collect.add_argument("--task", action="append", help="task name; repeatable")
    collect.add_argument("--quality", action="append", help="dataset quality; repeatable")

    from envs.datasets.export import DESCRIPTION, add_export_arguments

    export = sub.add_parser(
        "export",
        help="export a run's policy snapshots as behaviour policies",
        description=DESCRIPTION,
    )
    add_export_arguments(export)
    _add_sweep_parser(sub)
    sub.add_parser(
        "presets",
        help="list the presets and aliases that --config takes, each with its purpose",
        description="List configs/*.yaml presets (the first line of each file's comment) and "
        "the aliases of configs/aliases.yaml (what each stands for).",
    )
    return parser


def _add_sweep_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="train a grid of configs x seeds (on Ray when installed) and tabulate the results",
        description="Train one run per grid point and seed (Ray tasks when Ray is installed, "
        "else one after another), skipping finished runs and resuming interrupted ones; then "
        "write ROOT/results.csv, ROOT/results.md and ROOT/curves_*.png (or --page).",
    )
    _add_config_flags(sweep)
    sweep.add_argument("--seeds", default="0", help="seeds: a range 0-4 or a list 0,2,7")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a config key and its values, e.g. --grid method=leq,vem,bc; repeatable (the "
        "runs are every combination); the key config (or config.NAME) takes preset names, "
        "e.g. --grid config=iql_hopper,td3bc_hopper (a+b: both)",
    )
    sweep.add_argument(
        "--root", type=Path, help="sweep folder (default: runs/sweep-<config names>)"
    )
    sweep.add_argument(
        "--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local)"
    )
    sweep.add_argument(
        "--page",
        type=Path,
        help="write the report into this Markdown page (its section for this sweep; CSV, plots "
        "and the finished runs' records in PAGE_FOLDER/<root name>/) instead of ROOT; a run "
        "recorded there is not trained again",
    )
    sweep.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild the report from the runs that have finished so far",
    )
    sweep.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray CPUs per run")
    sweep.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray GPUs per run")


def default_logdir(config_names: list[str]) -> Path:
    return Path("runs") / "-".join(Path(name).stem for name in config_names)


def _cmd_train(args) -> int:
    from agent.config import load_config
    from agent.runner import train

    names = args.config or ["default"]
    cfg = load_config(names, args.overrides)
    logdir = args.logdir or default_logdir(names)
    result = train(cfg, logdir, quiet=args.quiet)
    print(json.dumps({"logdir": str(logdir), **result}))
    return 0


def _cmd_eval(args) -> int:
    from agent.runner import evaluate_logdir

    result = evaluate_logdir(args.logdir, args.episodes)
    print(
        f"step {result['step']}: {result['episodes']} episodes, "
        f"mean return {result['eval/return']:.2f} +- {result['eval/return_std']:.2f}, "
        f"normalized score {result['eval/normalized_score']:.2f}"
    )
    print(json.dumps(result))
    return 0


def _cmd_collect(args) -> int:
    import envs
    from agent.config import load_config
    from envs.datasets import ensure_dataset

    cfg = load_config(args.config or ["default"], args.overrides)
    tasks = args.task or [cfg.task]
    qualities = args.quality or [cfg.dataset.quality]
    for task in tasks:
        spec = envs.get_task(task).with_fast_render(cfg.fast_render)  # the look train sees
        for quality in qualities:
            dataset_cfg = {**cfg.dataset.to_dict(), "quality": quality, "path": None}
            path = ensure_dataset(spec, dataset_cfg)
            print(f"{task} {quality}: {path} ({dataset_summary(task, path)})", flush=True)
    return 0


def dataset_summary(task_name: str, path: Path) -> str:
    """Steps, trajectories (split at terminals and timeouts), mean return and normalised score;
    for a V-D4RL folder (pixel tasks): episodes, mean return and size on disk."""
    import envs
    from envs.datasets.d4rl_hdf5 import read_d4rl_hdf5
    from envs.datasets.preprocess import return_stats

    if Path(path).is_dir():
        from envs.datasets.pixel_datasets import folder_summary

        s = folder_summary(Path(path))
        return (
            f"{s['steps']} steps, {s['episodes']} episodes, mean return {s['return_mean']:.1f} "
            f"+- {s['return_std']:.1f}, {s['megabytes']:.1f} MB on disk"
        )

    raw = read_d4rl_hdf5(path)
    ends = (raw["terminals"] > 0) | (raw["timeouts"] > 0)
    stats = return_stats(raw["rewards"], ends)
    score = envs.get_task(task_name).normalized_score(stats["return_mean"])
    return (
        f"{len(raw['rewards'])} steps, {stats['n_episodes']} trajectories, "
        f"mean return {stats['return_mean']:.1f}, normalized score {score:.1f}"
    )


def _cmd_sweep(args) -> int:
    from agent.runner.sweep import expand, parse_grid, parse_seeds, run_sweep
    from agent.runner.sweep_records import read_records, records_folder
    from agent.runner.sweep_report import write_report

    names = args.config or ["default"]
    root = args.root or Path("runs") / f"sweep-{default_logdir(names).name}"
    grid, seeds = parse_grid(args.grid), parse_seeds(args.seeds)
    runs = expand(names, args.overrides, grid, seeds, root)
    print(f"sweep: {len(runs)} runs in {root}", flush=True)
    words = [w for w in sys.argv[1:] if w != "--report-only"]
    command = " ".join(["python run.py", *words]) if words[:1] == ["sweep"] else ""
    try:
        if not args.report_only:
            records = read_records(records_folder(root, args.page)) if args.page else {}
            run_sweep(names, runs, args.address, args.cpus_per_run, args.gpus_per_run, records)
    finally:  # failed or interrupted runs: the report still shows the finished ones
        for path in write_report(names, runs, root, command or "python run.py sweep", args.page):
            print(f"wrote {path}", flush=True)
    return 0


def _cmd_presets(args) -> int:
    from agent.presets import describe_presets

    print("\n".join(describe_presets()))
    return 0


def _cmd_export(args) -> int:
    from envs.datasets.export import run_export

    return run_export(args)


COMMANDS = {
    "train": _cmd_train,
    "eval": _cmd_eval,
    "collect": _cmd_collect,
    "export": _cmd_export,
    "sweep": _cmd_sweep,
    "presets": _cmd_presets,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["train", *argv]
    args = build_parser().parse_args(argv)

    from agent.config import ConfigError
    from agent.failures import Diverged, RunFolderBusy, WriteFailed
    from agent.runner.interrupts import terminate_as_interrupt
    from envs import UnknownTaskError
    from envs.datasets.errors import DatasetError

    terminate_as_interrupt()  # `kill` saves and stops like Ctrl-C (a background run ignores ^C)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DatasetError, UnknownTaskError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return USER_ERROR
    except (Diverged, WriteFailed, RunFolderBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
