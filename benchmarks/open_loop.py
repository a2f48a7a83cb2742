"""A trained RSSM's open-loop image error on held-out episodes.

The world model of RUN (its `world_model/` folder, written by methods `model` and `leq_pixels`)
filters `--context` frames of a window and predicts the next `--horizon` frames from the
actions alone (a random prior head per step, as in imagination). The windows come from a
dataset of the run's task and quality built with another seed (`--data-seed`, default the
run's seed + 1), so no frame was seen in training; or, with `--held-out-rows`, from the last
`model.holdout_fraction` of the run's own dataset, the rows its world model never trained on
(no second dataset to build). Prints ONE JSON object: the mean squared
pixel error (frames in [0, 1]) per predicted step, averaged over `--windows` windows, and its
mean over all steps, beside the same error of copying the last filtered frame (the trivial
prediction); `--gif` also writes one window as real | model | difference, and `--plot` both
errors per predicted step as a PNG.

    python benchmarks/open_loop.py --run RUN [--horizon 50] [--context 5] [--windows 32]
        [--data-seed S | --held-out-rows] [--gif PATH] [--plot PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from agent import replay as replay_lib  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.protocol import Context  # noqa: E402
from agent.runner.rundir import WORLD_MODEL_DIR  # noqa: E402
from agent.runner.sources import config_task, dataset_arrays, task_spec  # noqa: E402
from agent.runner.world_models import build_world_model, load_world_model  # noqa: E402
from agent.world_model.rssm import sequence_from_window  # noqa: E402
from agent.world_model.rssm_report import OpenLoopReport, holdout_split  # noqa: E402
from envs.datasets import load_task_dataset  # noqa: E402


def held_out_windows(
    cfg, data_seed: int, count: int, length: int, seed: int, tail: bool = False
) -> dict:
    """`count` windows of `length` transitions from a dataset built with `data_seed`, its frames
    at the run's `image_size`; `tail`: inside its last `model.holdout_fraction` of rows."""
    data_cfg = {**cfg.dataset.to_dict(), "seed": data_seed}
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the one JSON object
        data = load_task_dataset(config_task(cfg), data_cfg)
    replay = replay_lib.HostReplay(dataset_arrays(data))
    rows = holdout_split(replay.size, float(cfg.model.holdout_fraction))[1] if tail else None
    return replay.sample_windows(np.random.default_rng(seed), count, length, rows=rows)


def copy_last_frame_error(window: dict, context: int) -> np.ndarray:
    """The same error for the trivial prediction "every future frame = the last context frame":
    the scale that says how much of the motion the model predicts."""
    seq = sequence_from_window(window)
    images = np.asarray(seq["images"], np.float32) / 255.0
    return np.mean(np.square(images[:, context:] - images[:, context - 1 : context]), (0, 2, 3, 4))


def plot_errors(model: np.ndarray, copy: np.ndarray, title: str, path: Path) -> None:
    """Both errors per predicted step, the model's and copying the last filtered frame's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, len(model) + 1)
    ax.plot(steps, model * 1e3, label="RSSM, open loop")
    ax.plot(steps, copy * 1e3, label="copy the last filtered frame", linestyle="--")
    ax.set_xlabel("predicted step")
    ax.set_ylabel("mean squared pixel error (x 1e-3)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--context", type=int, default=5)
    parser.add_argument("--windows", type=int, default=32)
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--data-seed", type=int, default=None)
    held_out.add_argument("--held-out-rows", action="store_true")
    parser.add_argument("--gif", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    cfg = load_config([str(args.run / "config.yaml")])
    spec = task_spec(config_task(cfg))
    world = build_world_model(cfg, spec, Context())
    params = load_world_model(world, args.run / WORLD_MODEL_DIR, label="--run")
    if args.held_out_rows:
        data_seed = cfg.dataset.seed
    else:
        data_seed = cfg.dataset.seed + 1 if args.data_seed is None else args.data_seed
    report = OpenLoopReport(world, args.windows, args.context, args.horizon, rows=None)
    window = held_out_windows(
        cfg, data_seed, args.windows, report.length, seed=0, tail=args.held_out_rows
    )
    errors, frames = report.predict(params, window, jax.random.PRNGKey(0))
    baseline = copy_last_frame_error(window, args.context)
    if args.gif is not None:
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(args.gif, save_all=True, append_images=images[1:], duration=80)
    if args.plot is not None:
        held = "the dataset's held-out rows" if args.held_out_rows else f"data seed {data_seed}"
        title = f"{cfg.task} {cfg.dataset.quality}\n{held}, {args.context} frames filtered"
        plot_errors(errors, baseline, title, args.plot)
    print(
        json.dumps(
            {
                "run": str(args.run),
                "task": cfg.task,
                "quality": cfg.dataset.quality,
                "data_seed": data_seed,
                "held_out_rows": args.held_out_rows,
                "windows": args.windows,
                "context": args.context,
                "horizon": args.horizon,
                "mse_mean": float(errors.mean()),
                "mse_per_step": [round(float(e), 6) for e in errors],
                "copy_last_frame_mse_mean": float(baseline.mean()),
                "copy_last_frame_mse_per_step": [round(float(e), 6) for e in baseline],
            }
        )
    )


if __name__ == "__main__":
    from agent.config import ConfigError
    from envs.datasets import DatasetError

    try:
        main()
    except (ConfigError, DatasetError) as exc:
        sys.exit(f"error: {exc}")
