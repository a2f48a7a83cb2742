"""`run.py sweep`: grid and seed parsing, a debug sweep on Ray that a rerun skips, and the
in-process fallback without Ray."""

from __future__ import annotations

import csv
import sys

import pytest

from agent.config import ConfigError
from agent.runner.cli import main
from agent.runner.sweep import parse_grid, parse_seeds
from agent.runner.sweep_report import overall_speed, score_matrix, splice, summarise

# Two quick debug runs per method: BC and VEM on the debug-sized default data (hopper m-r).
QUICK = ["--config", "default", "--config", "debug", "--set", "train.steps=300",
         "--set", "eval.final_episodes=2"]  # fmt: skip


def test_seeds_and_grid_parse_and_bad_ones_name_the_problem():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,7") == [0, 2, 7] and parse_seeds("3") == [3]
    for bad in ("4-0", "a", "0,0", ""):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    assert parse_grid(["task=hopper,walker2d", "method=leq"]) == [
        ("task", ["hopper", "walker2d"]), ("method", ["leq"])
    ]  # fmt: skip
    for bad in (["task"], ["task="], ["a=1", "a=2"], ["seed=1,2"]):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)


def test_config_grid_keys_load_presets_after_the_config_ones(tmp_path):
    from agent.runner.sweep import expand

    grid = parse_grid(["config=iql_hopper,td3bc_hopper+debug", "train.steps=300"])
    runs = expand(["default"], [], grid, [0, 1], tmp_path)
    assert len(runs) == 4
    first, last = runs[0].config(["default"]), runs[-1].config(["default"])
    assert (first.method, first.task, first.train.steps) == ("iql", "hopper", 300)
    assert (last.method, last.dataset.size, last.seed) == ("td3bc", 5000, 1)  # debug applied
    assert runs[-1].logdir == tmp_path / "config=td3bc_hopper+debug,train.steps=300" / "seed1"
    with pytest.raises(ConfigError, match="nope"):
        expand(["default"], [], parse_grid(["config=nope"]), [0], tmp_path)


def test_a_bad_grid_value_stops_before_any_run(tmp_path, capsys):
    code = main(["sweep", *QUICK, "--grid", "method=bc,nope", "--root", str(tmp_path / "s")])
    assert code == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_debug_sweep_on_ray_writes_its_table_and_plot_and_a_rerun_skips_it(
    tmp_path, capsys, data_dir
):
    pytest.importorskip("ray")  # in the test extra; the fallback test covers its absence
    root = tmp_path / "sweep"
    args = ["sweep", *QUICK, "--set", f"dataset.dir={data_dir}",
            "--grid", "method=bc,vem", "--seeds", "0-1", "--root", str(root)]  # fmt: skip
    # 4 runs on Ray's 2 CPUs, so two of them wait for a CPU
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "local Ray instance" in out and out.count("done ") == 4
    with (root / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["grid point"] for r in rows] == ["method=bc", "method=vem"]
    assert all(r["runs"] == "2" and r["score mean"] and r["wall s"] for r in rows)
    assert "| method=vem | hopper | vem | 2 |" in (root / "results.md").read_text()
    assert (root / "curves_hopper.png").stat().st_size > 0
    assert main(args) == 0
    again = capsys.readouterr().out
    assert again.count("skip ") == 4 and "done " not in again and "Ray" not in again

    page = tmp_path / "docs" / "RESULTS.md"
    page.parent.mkdir()
    page.write_text("# Results\n\nWritten by hand.\n")
    assert main([*args, "--report-only", "--page", str(page)]) == 0
    assert "skip " not in capsys.readouterr().out  # nothing trained, nothing even checked
    text = page.read_text()
    assert text.startswith("# Results\n\nWritten by hand.\n")
    assert "<!-- sweep sweep: begin -->" in text and "| method=bc | hopper | bc | 2 |" in text
    assert "--report-only" not in text
    assert "![curves_hopper](results/sweep/curves_hopper.png)" in text
    assert (tmp_path / "docs" / "results" / "sweep" / "curves_hopper.png").is_file()


@pytest.mark.slow
def test_without_ray_the_runs_go_one_after_another_in_process(
    tmp_path, capsys, monkeypatch, data_dir
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    root = tmp_path / "sweep"
    args = ["sweep", *QUICK, "--set", f"dataset.dir={data_dir}",
            "--set", "method=bc", "--set", "train.steps=100", "--root", str(root)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Ray is not installed" in out and "[1/1]" in out
    assert (root / "seed0" / "result.json").exists() and (root / "results.md").exists()


def _row(values, seed, score, speed=100.0):
    return {"label": ",".join(values), "values": values, "task": "hopper", "method": values[-1],
            "seed": seed, "score": score, "wall_s": 10.0, "speed": speed, "curve": []}  # fmt: skip


def test_the_score_matrix_has_a_row_per_dataset_and_says_which_cells_are_unfinished():
    rows = [_row(("hopper_mr", "leq"), 0, 30.0), _row(("hopper_mr", "leq"), 1, 40.0),
            _row(("hopper_mr", "bc"), 0, 10.0), _row(("hopper_mr", "bc"), 1, None),
            _row(("maze", "leq"), 0, None), _row(("maze", "leq"), 1, None)]  # fmt: skip
    table = summarise(rows)
    assert [r["runs"] for r in table] == ["2", "1/2", "0/2"]
    assert table[0]["score mean"] == 35.0 and table[0]["score std"] == 5.0
    lines = score_matrix(table)
    assert lines[0] == "| | leq | bc |"
    assert lines[2] == "| hopper_mr | 35.0 ± 5.0 | 10.0 ± 0.0 (1/2 runs finished) |"
    assert lines[3] == "| maze | not finished (0/2 runs) | not in the grid |"


def test_overall_speed_is_steps_over_time_of_equal_step_intervals():
    rates = [250.0, 250.0, 20.0, 40.0]  # LEQ: fast BC/FQE logs, then slow imagination logs
    seconds = sum(1000 / r for r in rates)  # 1000 steps per log interval
    assert overall_speed(rates) == pytest.approx(4000 / seconds)
    assert overall_speed([]) is None


def test_splice_replaces_only_its_own_section(tmp_path):
    page = tmp_path / "page.md"
    splice(page, "a", ["one"])
    page.write_text(page.read_text() + "\nhand-written\n")
    splice(page, "b", ["two"])
    splice(page, "a", ["three"])
    text = page.read_text()
    assert "one" not in text and text.index("three") < text.index("hand-written")
    assert text.index("hand-written") < text.index("two")
    assert text.count("<!-- sweep a: begin -->") == 1


def test_wall_time_is_summed_over_the_calls_that_trained_a_run(tmp_path, monkeypatch):
    import agent.runner
    from agent.runner import sweep

    run = sweep.expand(["default"], [], [], [0], tmp_path)[0]
    outcomes = iter([KeyboardInterrupt, {"step": 1}])

    def fake_train(cfg, logdir, quiet):
        logdir.mkdir(parents=True, exist_ok=True)
        outcome = next(outcomes)
        if outcome is KeyboardInterrupt:
            raise KeyboardInterrupt
        return outcome

    clock = iter([0.0, 5.0, 10.0, 13.0])  # start and end of each call
    monkeypatch.chdir(tmp_path)  # execute() changes into its workdir; restored afterwards
    monkeypatch.setattr(agent.runner, "train", fake_train)
    monkeypatch.setattr(sweep.time, "perf_counter", lambda: next(clock))
    with pytest.raises(KeyboardInterrupt):
        sweep.execute(["default"], run, str(tmp_path))
    assert sweep.wall_seconds(run.logdir) == 5.0
    assert sweep.execute(["default"], run, str(tmp_path)) == {"step": 1}
    assert sweep.wall_seconds(run.logdir) == 8.0


def test_plots_are_one_per_group_of_finished_runs_and_stale_ones_go(tmp_path):
    from agent.runner.sweep_report import plot_curves

    curve = [(100, 1.0), (200, 3.0)]
    rows = [{**_row(("hopper_mr", "leq"), 0, 30.0), "curve": curve},
            {**_row(("hopper_mr", "bc"), 0, None), "curve": curve},
            {**_row(("maze", "leq"), 0, None), "curve": curve}]  # fmt: skip
    (tmp_path / "curves_old_dataset.png").write_bytes(b"stale")
    (tmp_path / "notes.png").write_bytes(b"not ours")
    paths = plot_curves(rows, tmp_path)
    assert paths == [tmp_path / "curves_hopper_mr.png"]  # maze has no finished run yet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves_hopper_mr.png", "notes.png"]


def _finish(run, steps: int, score: float) -> None:
    """What a finished run leaves in its folder: the final result and an evaluation curve."""
    import json

    from agent.runner import rundir

    run.logdir.mkdir(parents=True)
    rundir.write_json_atomic(run.logdir / "result.json", {"step": steps, SCORE: score})
    lines = [{"step": steps // 2, SCORE: score / 2}, {"step": steps, SCORE: score}]
    (run.logdir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))


SCORE = "eval/normalized_score"


def test_a_finished_runs_record_beside_the_page_stands_in_for_its_lost_folder(tmp_path):
    import shutil

    from agent.runner.sweep import expand, is_finished
    from agent.runner.sweep_records import config_difference, read_records, records_folder
    from agent.runner.sweep_report import write_report

    root, page = tmp_path / "runs" / "offline", tmp_path / "docs" / "RESULTS.md"
    runs = expand(["default"], [], parse_grid(["method=bc,vem"]), [0, 1], root)
    steps = runs[0].config(["default"]).train.steps
    _finish(runs[0], steps, 40.0)
    _finish(runs[1], steps, 20.0)  # bc: both seeds; vem: none
    write_report(["default"], runs, root, "cmd", page)
    folder = records_folder(root, page)
    assert folder == tmp_path / "docs" / "results" / "offline"
    records = read_records(folder)
    assert sorted(records) == [("method=bc", 0), ("method=bc", 1)]
    assert records[("method=bc", 0)]["curve"] == [[steps // 2, 20.0], [steps, 40.0]]

    shutil.rmtree(tmp_path / "runs")  # another machine: the run folders are gone
    assert [is_finished(run, ["default"], records) for run in runs] == [True, True, False, False]
    assert not any(is_finished(run, ["default"]) for run in runs)  # without the records
    write_report(["default"], runs, root, "cmd", page)
    with (folder / "results.csv").open() as handle:
        rows = {r["grid point"]: r for r in csv.DictReader(handle)}
    assert (rows["method=bc"]["runs"], rows["method=bc"]["score mean"]) == ("2", "30.0")
    assert rows["method=vem"]["runs"] == "0/2"
    assert (folder / "curves_hopper.png").is_file()  # drawn from the records' curves

    longer = expand(["default"], [f"train.steps={steps + 1}"], parse_grid(["method=bc"]), [0], root)
    assert not is_finished(longer[0], ["default"], records)  # a record of fewer steps is not final
    other = expand(["default"], ["eval.episodes=3"], parse_grid(["method=bc"]), [0], root)[0]
    assert not is_finished(other, ["default"], records)  # nor one of another config
    assert (
        config_difference(records[("method=bc", 0)], other.config(["default"])) == "eval.episodes"
    )


def test_a_point_with_no_run_here_keeps_its_complete_row_from_the_previous_report(tmp_path):
    from agent.runner.sweep_report import carry_previous, markdown, plot_curves

    with (tmp_path / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["grid point", "task", "method", "runs", "score mean", "score std",
                         "wall s", "speed"])  # fmt: skip
        writer.writerow(["mr,leq", "hopper", "leq", "2", "33.5", "6.5", "1691.3", "31.4"])
        writer.writerow(["mr,bc", "hopper", "bc", "1/2", "13.5", "0.0", "136.0", "247.8"])
        writer.writerow(["maze,leq", "hopper", "leq", "2", "5.0", "1.0", "100.0", "30.0"])
    rows = [_row(("mr", "leq"), s, None) for s in (0, 1)]
    rows += [_row(("mr", "bc"), s, None) for s in (0, 1)]
    rows += [_row(("maze", "leq"), 0, 7.0), _row(("maze", "leq"), 1, None)]
    table = carry_previous(summarise(rows), tmp_path)
    assert [(r["runs"], r["score mean"], bool(r.get("carried"))) for r in table] == [
        ("2", 33.5, True),  # complete before, nothing here: carried
        ("0/2", None, False),  # incomplete before: not carried
        ("1/2", 7.0, False),  # a run finished here: this machine's runs win
    ]
    text = "\n".join(markdown(table, "cmd", []))
    assert "| mr | 33.5 ± 6.5 † | not finished (0/2 runs) |" in text
    assert "| mr,leq | hopper | leq | 2 † | 33.5 |" in text and "† Kept from" in text

    (tmp_path / "curves_mr.png").write_bytes(b"measured before")
    (tmp_path / "curves_gone.png").write_bytes(b"stale")
    plot_curves(rows, tmp_path, keep=frozenset({"mr"}))
    assert (tmp_path / "curves_mr.png").read_bytes() == b"measured before"
    assert not (tmp_path / "curves_gone.png").exists()
