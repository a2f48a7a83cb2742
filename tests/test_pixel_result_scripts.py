"""benchmarks/value_curves.py (the critic against the data's returns, from run logs) and
benchmarks/open_loop.py's held-out windows: what the pixel results are read with."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "benchmarks" / "value_curves.py"
    spec = importlib.util.spec_from_file_location("value_curves", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_last_values_mean_and_plot(tmp_path, capsys):
    script = _script()
    a = _run(
        tmp_path / "a",
        [
            {"step": 10, "train/q_mean": 1.0, "train/data_q": 2.0, "train/data_mc_return": 9.0},
            {"step": 15, "eval/return": 3.0},  # rows without the keys are skipped
            {"step": 20, "train/q_mean": 3.0, "train/data_q": 4.0, "train/data_mc_return": 9.5},
        ],
    )
    b = _run(
        tmp_path / "b",
        [{"step": s, "train/q_mean": q, "train/data_q": q, "train/data_mc_return": 8.0}
         for s, q in ((10, 0.0), (20, 5.0), (30, 7.0))],
    )  # fmt: skip
    png = tmp_path / "plot.png"
    script.main([str(a), str(b), "--plot", str(png)])
    out = json.loads(capsys.readouterr().out)
    assert out[str(a)] == {"train/q_mean": 3.0, "train/data_q": 4.0, "train/data_mc_return": 9.5}
    assert out["mean"]["train/q_mean"] == pytest.approx((3.0 + 7.0) / 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    steps, values = script.common_curve(
        [script.read_curves(a)["train/q_mean"], script.read_curves(b)["train/q_mean"]]
    )
    # only the steps both runs logged, each run's value at them
    np.testing.assert_array_equal(steps, [10, 20])
    np.testing.assert_array_equal(values, [[1.0, 3.0], [0.0, 5.0]])


def test_a_run_without_the_keys_is_named(tmp_path):
    run = _run(tmp_path / "bc", [{"step": 10, "train/bc_loss": 0.3}])
    with pytest.raises(SystemExit, match=r"bc/metrics.jsonl logs none of train/q_mean"):
        _script().read_curves(run)


def test_open_loop_windows_from_the_held_out_rows_stay_in_them(monkeypatch):
    """benchmarks/open_loop.py --held-out-rows: every window lies in the dataset's last
    model.holdout_fraction of rows, the ones a world model never trains on."""
    spec = importlib.util.spec_from_file_location("open_loop", ROOT / "benchmarks/open_loop.py")
    open_loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(open_loop)
    from agent.config import load_config

    rows, episode = 400, 20
    data = {
        "observations": {"image": np.zeros((rows, 2, 2, 3), np.uint8)},
        "rewards": np.arange(rows, dtype=np.float32),  # each row's index
        "episode_ends": (np.arange(rows) % episode == episode - 1).astype(np.float32),
    }
    monkeypatch.setattr(open_loop, "load_task_dataset", lambda task, cfg: cfg)
    monkeypatch.setattr(open_loop, "dataset_arrays", lambda cfg: data)
    cfg = load_config(["leq_pixels_cpu"], ["model.holdout_fraction=0.1"])
    tail = open_loop.held_out_windows(cfg, 0, 64, 8, seed=0, tail=True)["rewards"]
    assert tail.shape == (64, 8) and tail.min() >= 360  # rows 360-399
    anywhere = open_loop.held_out_windows(cfg, 0, 64, 8, seed=0)["rewards"]
    assert anywhere.min() < 360
