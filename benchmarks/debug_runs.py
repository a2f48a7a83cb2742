"""Wall time of `python run.py train --config PRESET --config debug` for every preset.

Prints one JSON object: {preset: seconds} for this checkout, and with `--against DIR` the same
runs of another checkout (e.g. an older commit in a git worktree) for the presets it also has,
interleaved preset by preset so that both see the same machine load, plus the ratio this / other.
Each timed run follows an untimed one that builds the dataset. A preset of the same name may
mean another method in the other checkout (there, `td3_*` was GEM with its memory off).

    python benchmarks/debug_runs.py --against ../old-checkout
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def presets(repo: Path) -> list[str]:
    skip = {"defaults", "debug", "ranges"}
    return sorted(p.stem for p in (repo / "configs").glob("*.yaml") if p.stem not in skip)


def timed_run(repo: Path, preset: str, data_dir: Path, logdir: Path) -> float:
    """Seconds of one debug run (the dataset is built beforehand, so it is not timed)."""
    args = [sys.executable, "run.py", "train", "--config", preset, "--config", "debug"]
    args += ["--logdir", str(logdir), "--set", f"dataset.dir={data_dir}", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{repo}: {preset} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to time side by side")
    parser.add_argument("--preset", action="append", help="only these presets")
    args = parser.parse_args()
    names = args.preset or presets(ROOT)
    both = set(presets(args.against)) if args.against else set(names)
    out: dict = {"this": {}, "other": {}, "ratio": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data, other_data = Path(tmp) / "data", Path(tmp) / "other-data"
        for name in names:
            # The first run of a preset builds its dataset: untimed, in each checkout's own cache.
            timed_run(ROOT, name, data, Path(tmp) / f"warm-a-{name}")
            out["this"][name] = round(timed_run(ROOT, name, data, Path(tmp) / f"a-{name}"), 1)
            if args.against and name in both:
                timed_run(args.against, name, other_data, Path(tmp) / f"warm-b-{name}")
                other = timed_run(args.against, name, other_data, Path(tmp) / f"b-{name}")
                out["other"][name] = round(other, 1)
                out["ratio"][name] = round(out["this"][name] / other, 2)
            print(name, out["this"][name], out["other"].get(name), file=sys.stderr, flush=True)
    if not args.against:
        del out["other"], out["ratio"]
    else:
        this = sum(out["this"][name] for name in out["other"])
        other = sum(out["other"].values())
        out["total"] = {"this": round(this, 1), "other": round(other, 1), "ratio": this / other}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
