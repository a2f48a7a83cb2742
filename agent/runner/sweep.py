"""`run.py sweep`: the runs of a grid of configs x seeds, on Ray when it is installed.

    python run.py sweep --config X [--config ...] --seeds 0-4 \
        --grid task=hopper,walker2d --grid method=leq,vem,bc [--set key=value ...]

Every run is `train(cfg, logdir)` of one config (the presets, the `--set` overrides, one value
per `--grid` key and one seed), in

    ROOT/<key>=<value>,<key>=<value>/seed<S>/          (ROOT/seed<S>/ without a grid)

A grid key named `config` or `config.<name>` takes preset names instead of values
(`--grid config=iql_hopper,td3bc_hopper`; `a+b` applies two): each run loads them after the
`--config` presets, in grid order, so one sweep can cover methods whose presets differ.

A sweep is idempotent: a run whose folder holds its final result is skipped (with `--page`,
also one whose record beside the page does: sweep_records.py), an interrupted one resumes from
its newest checkpoint, and a run is never trained twice. With Ray each run is
one task (`--cpus-per-run`, `--gpus-per-run` resources) on a local Ray instance, or on the
cluster at `--address` / $RAY_ADDRESS (whose nodes must see ROOT and the data folder, e.g. on a
shared file system); without Ray the runs go one after another in this process. At the end
sweep_report.py writes the table and the learning curves into ROOT.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import ConfigError, load_config
from agent.runner import rundir
from agent.runner.sweep_records import config_difference, holds_final_result, record_key

SWEEP_FILE = "sweep.json"  # in each run folder: wall time summed over the calls that trained it


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its grid values, seed, full override list and folder."""

    values: tuple[tuple[str, str], ...]  # (grid key, value) in --grid order
    seed: int
    overrides: tuple[str, ...]
    logdir: Path
    presets: tuple[str, ...] = ()  # from `config` grid keys, loaded after the --config ones

    def config(self, configs: list[str]):
        """The run's full config: `configs`, its grid presets, its overrides."""
        return load_config([*configs, *self.presets], list(self.overrides))

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.values)


def parse_seeds(text: str) -> list[int]:
    """ "0-4" -> [0, 1, 2, 3, 4]; "0,2,7" -> [0, 2, 7]; "3" -> [3]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if last < first:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise ConfigError(
            f"--seeds '{text}': expected a range like 0-4 or a list like 0,2,7"
        ) from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds '{text}': seeds must be distinct and >= 0")
    return seeds


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """["task=hopper,walker2d", "method=leq,bc"] -> [("task", [...]), ("method", [...])]."""
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise ConfigError(f"--grid '{item}': expected KEY=VALUE[,VALUE...]")
        if key.strip() in (k for k, _ in grid):
            raise ConfigError(f"--grid '{item}': key '{key.strip()}' is given twice")
        if key.strip() == "seed":
            raise ConfigError("--grid seed=...: use --seeds for seeds")
        grid.append((key.strip(), choices))
    return grid


def expand(
    configs: list[str], overrides: list[str], grid: list[tuple[str, list[str]]],
    seeds: list[int], root: Path,
) -> list[SweepRun]:  # fmt: skip
    """Every (grid point, seed) as a SweepRun; each config is loaded and its method and task
    looked up here, so a bad key or value stops the sweep with one line before any run starts."""
    keys = [k for k, _ in grid]
    runs = []
    for choice in itertools.product(*(values for _, values in grid)):
        values = tuple(zip(keys, choice, strict=True))
        point = [f"{k}={v}" for k, v in values]
        folder = root / ",".join(point) if point else root
        presets = tuple(n for k, v in values if is_preset_key(k) for n in v.split("+"))
        sets = [f"{k}={v}" for k, v in values if not is_preset_key(k)]
        for seed in seeds:
            run_overrides = (*overrides, *sets, f"seed={seed}")
            run = SweepRun(values, seed, run_overrides, folder / f"seed{seed}", presets)
            _check(run.config(configs))
            runs.append(run)
    return runs


def is_preset_key(key: str) -> bool:
    """A grid key whose values are preset names: `config` or `config.<name>`."""
    return key == "config" or key.startswith("config.")


def _check(cfg) -> None:
    """What `train` would reject only after creating the run folder: the method and task."""
    import envs
    from agent.methods import agent_class

    agent_class(cfg.method)
    envs.get_task(cfg.task)


def is_finished(run: SweepRun, configs: list[str], records: dict | None = None) -> bool:
    """The run's folder, or its record beside the sweep's page, holds the final result of all
    its steps."""
    result = rundir.read_result(run.logdir)
    cfg = run.config(configs)
    record = _record(run, records)
    done_here = result is not None and int(result.get("step", -1)) >= cfg.train.steps
    return done_here or holds_final_result(record, cfg)


def _record(run: SweepRun, records: dict | None) -> dict | None:
    return (records or {}).get(record_key(run.label, run.seed))


def execute(configs: list[str], run: SweepRun, workdir: str) -> dict:
    """Train one run (resuming it if interrupted) in `workdir`, where relative paths such as
    dataset.dir resolve as in the driver; -> its result and wall time."""
    os.chdir(workdir)
    from agent.runner import train

    cfg = run.config(configs)
    before = _read_sweep_file(run.logdir)
    start = time.perf_counter()
    try:
        return train(cfg, run.logdir, quiet=True)
    finally:  # also when interrupted: a resumed run's wall time is the sum of its calls
        if run.logdir.is_dir():
            wall = before.get("wall_s", 0.0) + time.perf_counter() - start
            calls = before.get("calls", 0) + 1
            rundir.write_json_atomic(
                run.logdir / SWEEP_FILE, {"wall_s": round(wall, 1), "calls": calls}
            )


def run_sweep(
    configs: list[str], runs: list[SweepRun], address: str | None, cpus: float, gpus: float,
    records: dict | None = None,
) -> None:  # fmt: skip
    """Train every unfinished run (neither its folder nor its record in `records` holds its
    final result): Ray tasks when Ray is installed, else one after another."""
    pending = []
    for run in runs:
        if is_finished(run, configs, records):
            print(f"skip {run.logdir} (finished)", flush=True)
            continue
        record = _record(run, records)
        if record is not None and (key := config_difference(record, run.config(configs))):
            print(f"{run.logdir}: its record is of another config (key '{key}'); training it")
        pending.append(run)
    if not pending:
        return
    workdir = os.getcwd()
    try:
        import ray
    except ImportError:
        print(
            f"sweep: Ray is not installed (pip install -e '.[sweep]'); running {len(pending)} "
            "runs one after another in this process",
            flush=True,
        )
        for i, run in enumerate(pending, 1):
            print(f"[{i}/{len(pending)}] {run.logdir}", flush=True)
            _report_done(run, execute(configs, run, workdir))
        return
    _run_on_ray(ray, configs, pending, workdir, address, cpus, gpus)


def _run_on_ray(ray, configs, pending, workdir, address, cpus, gpus) -> None:
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    resources = ray.cluster_resources()
    print(
        f"sweep: {len(pending)} runs on {where} ({resources.get('CPU', 0):g} CPUs, "
        f"{resources.get('GPU', 0):g} GPUs; {cpus:g} CPUs and {gpus:g} GPUs per run)",
        flush=True,
    )
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(execute)
    futures = {task.remote(configs, run, workdir): run for run in pending}
    failures = []
    try:
        while futures:
            done, _ = ray.wait(list(futures), num_returns=1)
            run = futures.pop(done[0])
            try:
                _report_done(run, ray.get(done[0]))
            except ray.exceptions.RayTaskError as exc:
                failures.append(run)
                print(f"failed {run.logdir}: {str(exc.cause)[:300]}", flush=True)
    finally:
        ray.shutdown()
    if failures:
        raise ConfigError(
            f"{len(failures)} of {len(pending)} runs failed (first: {failures[0].logdir}); "
            "rerun the sweep to retry them (finished runs are skipped)"
        )


def _report_done(run: SweepRun, result: dict) -> None:
    score = result.get("eval/normalized_score")
    shown = "" if score is None else f": normalized score {score:.1f}"
    print(f"done {run.logdir}{shown}", flush=True)


def _read_sweep_file(logdir: Path) -> dict:
    path = Path(logdir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def wall_seconds(logdir: Path) -> float | None:
    """The run's wall time summed over the sweep calls that trained it (a call killed with
    SIGKILL is not counted)."""
    return _read_sweep_file(logdir).get("wall_s")
