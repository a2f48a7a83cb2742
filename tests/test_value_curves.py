"""benchmarks/value_curves.py: the critic against the data's returns, read from run logs."""

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
