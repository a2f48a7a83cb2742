"""Fingerprints of the debug runs of every method: final metrics and the final policy's actions.

`python -m tests.fingerprint --write` records them in tests/records/fingerprints.json, under this
processor's signature (its vector extensions, `cpu_signature`); the test in
tests/test_fingerprints.py compares the session's debug runs (tests/conftest.py's fixtures: RUNS
plus OBSERVERS) with the record of its signature.
A fingerprint is functional, so it survives a change of the state's layout: the last logged
training metrics, the final evaluation, and the final policy's deterministic actions on fixed
probe observations (every parameter of the actor shows there; the critics show through the
losses and through the actor they trained).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from agent.config import load_config

DATA = Path(__file__).resolve().parent / "records" / "fingerprints.json"
RUNS = {
    "bc": (["default", "debug"], ["method=bc"]),
    "leq": (["default", "debug"], []),
    "vem": (["vem_maze2d_umaze", "debug"], []),
    "gem": (["gem_hopper", "debug"], []),
}
# Settings the test suite's shared debug runs add to RUNS for its other checks. They only add
# observations (videos, evaluations, kept checkpoints, snapshots), never change what is trained:
# evaluation runs its own simulators with its own seeds and never draws from the training RNG.
# The fingerprint test holds them to that.
OBSERVERS = {
    "bc": [],
    "leq": ["eval.video_every=200", "train.keep_checkpoints=10"],
    "vem": ["train.keep_checkpoints=10"],
    "gem": ["train.keep_checkpoints=10", "train.eval_every=100", "gem.snapshot_every=100"],
}
PROBES = 16
# XLA compiles for the host's vector extensions, so float results (and, through the simulators'
# chaotic dynamics, evaluation returns) are reproducible only on a processor with the same ones.
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16")


def cpu_signature() -> str:
    """The vector extensions of this processor that XLA's CPU code generation may use, joined by
    spaces, then " O0" when XLA_FLAGS sets LLVM optimisation level 0 (the test suite's,
    tests/conftest.py; any other level uses the records without it): the key of this
    processor's records."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return " ".join(f for f in CPU_FEATURES if f in flags) + (" O0" if at_level_0() else "")


def at_level_0() -> bool:
    """Whether XLA_FLAGS sets LLVM optimisation level 0 (the test suite's, tests/conftest.py)."""
    flags = os.environ.get("XLA_FLAGS", "")
    return re.search(r"--xla_backend_optimization_level=0\b", flags) is not None


def load_records() -> dict[str, dict]:
    """{signature key: {method: fingerprint}} from tests/records/fingerprints.json."""
    return json.loads(DATA.read_text()) if DATA.exists() else {}


def probe_observations(task: str) -> np.ndarray:
    """Reset observations of the task's simulator for seeds 0..PROBES-1, plus a fixed jitter."""
    import envs

    env = envs.make_env(task)
    obs = np.stack([env.reset(seed=s)[0] for s in range(PROBES)]).astype(np.float32)
    env.close()
    jitter = np.random.default_rng(0).normal(0.0, 0.1, obs.shape).astype(np.float32)
    return obs + jitter


def final_policy_actions(logdir: Path, obs: np.ndarray) -> np.ndarray:
    """The deterministic actions of the newest checkpoint's policy on `obs`."""
    from agent.programs import Programs
    from agent.runner.evaluation import policy_fn
    from agent.runner.run_folder import load_run

    agent, run = load_run(logdir)  # as `run.py eval` rebuilds a run
    act = policy_fn(Programs(agent), run.agent)
    return np.asarray(act(obs), np.float64)


def fingerprint(method: str, data_dir: Path, work: Path) -> dict:
    """Run the method's debug run (seed 0) and summarise what it ended with."""
    from agent.runner import train

    names, sets = RUNS[method]
    cfg = load_config(names, [*sets, f"dataset.dir={data_dir}", "seed=0"])
    logdir = work / method
    result = train(cfg, logdir, quiet=True)
    return summarise(logdir, result, cfg.task)


def summarise(logdir: Path, result: dict, task: str) -> dict:
    """The fingerprint of a finished run: its final evaluation, the last value of every
    training metric, and its final policy's actions on the task's probe observations."""
    records = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    train_metrics = {}
    for record in records:  # the last value of every training metric
        train_metrics.update(
            {
                k: v
                for k, v in record.items()
                if k.startswith(("train/", "pretrain/")) and "per_second" not in k
            }
        )
    actions = final_policy_actions(logdir, probe_observations(task))
    return {
        "result": {k: v for k, v in result.items() if k.startswith("eval/")},
        "train": train_metrics,
        "actions": actions.round(6).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"record {DATA}")
    parser.add_argument("--method", action="append", help="only these methods")
    args = parser.parse_args()
    methods = args.method or list(RUNS)
    with tempfile.TemporaryDirectory() as tmp:
        found = {m: fingerprint(m, Path(tmp) / "data", Path(tmp)) for m in methods}
    if args.write:
        stored = load_records()
        stored.setdefault(cpu_signature(), {}).update(found)
        DATA.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    print(json.dumps(found, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
