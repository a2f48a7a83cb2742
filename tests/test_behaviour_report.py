"""benchmarks/behaviour_report.py: the learning-curve plot and the dataset table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from envs import get_task
from tests.test_collect import fake_gem_run

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location(
        "behaviour_report", ROOT / "benchmarks" / "behaviour_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_and_table_from_exported_policies(tmp_path, monkeypatch):
    from envs.datasets import trained_policies
    from envs.datasets.export import export

    report = _report()
    hopper = get_task("hopper")
    export(fake_gem_run(tmp_path / "run", hopper, method="sac"), "hopper", tmp_path / "p", "t")
    png = tmp_path / "docs" / "curves.png"
    assert report.plot_curves(png, tmp_path / "p") == ["hopper"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    monkeypatch.setattr(trained_policies, "POLICY_DIR", tmp_path / "p")
    row = report.dataset_row("hopper", "expert", 120, 0, str(tmp_path / "data"))
    assert row["steps"] == 120 and row["trajectories"] >= 1
    assert row["d4rl_v2_trajectories"] == 1028
    table = report.markdown([row])
    assert table.splitlines()[2].startswith("| hopper-expert | 120 | ")
