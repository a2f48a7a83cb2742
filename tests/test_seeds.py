"""Several seeds as one vmapped program, and the runs spread over two CPU devices: both end
where the plain runs end, within float tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.config import ConfigError, load_config
from agent.runner import train
from tests.resume import assert_same_final_state, copy_as_killed_after, final_state

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300  # VEM: 200 value steps, then 100 policy steps (debug sizes)


def quick(tmp_path: Path, method: str, *sets: str):
    return load_config(
        ["default", "debug"],
        [f"method={method}", f"dataset.dir={tmp_path / 'data'}", f"train.steps={STEPS}",
         "eval.final_episodes=2", *sets],
    )  # fmt: skip


@pytest.mark.parametrize("method", ["bc", "vem"])
def test_vmapped_seeds_end_where_separate_runs_end(tmp_path, method):
    result = train(quick(tmp_path, method, "seed=3", "train.seeds=2"), tmp_path / "both")
    stacked = final_state(tmp_path / "both", STEPS)
    for i, seed in enumerate((3, 4)):
        alone = tmp_path / f"seed{seed}"
        single = train(quick(tmp_path, method, f"seed={seed}"), alone)
        state = final_state(alone, STEPS)
        assert state.keys() == stacked.keys()
        for key, value in state.items():  # agent state and keys stacked; counters shared
            got = stacked[key][i] if stacked[key].ndim == value.ndim + 1 else stacked[key]
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6, err_msg=key)
        per_seed = json.loads((tmp_path / "both" / f"seed{seed}" / "result.json").read_text())
        assert per_seed["eval/return"] == pytest.approx(single["eval/return"], abs=1e-3)
    scores = [r["eval/normalized_score"] for r in result["per_seed"]]
    assert result["eval/normalized_score"] == pytest.approx(np.mean(scores))
    assert result["eval/normalized_score_seed_std"] == pytest.approx(np.std(scores))


@pytest.mark.parametrize("method", ["vem", "leq"])
def test_a_branch_on_the_step_counter_stays_a_branch_across_seeds(tmp_path, method):
    # VEM refreshes its memory and LEQ expands its model buffer under a lax.cond on the step
    # counter; with the counter batched over seeds, vmap would run them at every step or chunk.
    import jax

    from agent.programs import Programs
    from agent.runner.build import build, fresh_run

    cfg = quick(tmp_path, method, "train.seeds=2")
    (tmp_path / "run").mkdir()
    agent, replay, spec = build(cfg, tmp_path / "run")
    run = fresh_run(cfg, agent, spec)
    phase = agent.phase(cfg.train.steps - 1)  # VEM's policy phase, LEQ's imagination phase
    chunk = Programs(agent, seeds=True).chunk(phase, 2)
    assert " cond[" in str(jax.make_jaxpr(chunk)(run.agent, replay, run.rng, 0))
    states, _ = chunk(run.agent, replay, run.rng, 0)
    assert states.step.tolist() == [2, 2]


def test_vmapped_seeds_resume_bit_identical(tmp_path):
    cfg = quick(tmp_path, "bc", "train.seeds=2")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(cfg, straight)
    copy_as_killed_after(straight, resumed, 200)
    train(cfg, resumed)
    assert_same_final_state(straight, resumed, STEPS)


def test_seeds_of_an_online_method_a_host_replay_or_a_world_model_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="online"):
        train(quick(tmp_path, "sac", "task=hopper", "train.seeds=2"), tmp_path / "a")
    cfg = quick(tmp_path, "bc", "train.seeds=2", "replay.placement=host")
    with pytest.raises(ConfigError, match="host"):
        train(cfg, tmp_path / "b")
    # a world model of its own per run, even with device batches and chunks that scan
    for method in ("model", "leq_pixels"):
        cfg = load_config(
            ["leq_pixels_cpu", "debug"],
            [f"method={method}", "train.seeds=2", "replay.placement=device"],
        )
        with pytest.raises(ConfigError, match="world model per run"):
            train(cfg, tmp_path / method)


TWO_DEVICES = """
import json, sys
import jax
from agent.config import load_config
from agent.runner import train
cfg = load_config(["default", "debug"], sys.argv[2:])
assert jax.local_device_count() == 2, jax.local_devices()
result = train(cfg, sys.argv[1], quiet=True)
print(json.dumps({"return": result["eval/return"]}))
"""


# The suite's XLA flags (its optimisation level, tests/conftest.py) plus two host devices.
TWO_DEVICE_FLAGS = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"


def _two_devices(logdir: Path, sets: list[str]) -> None:
    env = {**os.environ, "XLA_FLAGS": TWO_DEVICE_FLAGS}
    out = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, str(logdir), *sets],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shard", "seeds"), [("batch", 1), ("seeds", 2)], ids=["data-parallel", "seeds-sharded"]
)
def test_two_cpu_devices_give_the_one_device_result(tmp_path, shard, seeds):
    sets = ["method=bc", f"dataset.dir={tmp_path / 'data'}", f"train.steps={STEPS}",
            "eval.final_episodes=2", f"train.seeds={seeds}"]  # fmt: skip
    one = tmp_path / "one"
    train(load_config(["default", "debug"], sets), one)
    two = tmp_path / "two"
    _two_devices(two, [*sets, f"train.shard={shard}"])
    a, b = final_state(one, STEPS), final_state(two, STEPS)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)


SPLIT_BATCH = """
import jax, jax.numpy as jnp
from agent import replay as replay_lib
from agent.runner.devices import mesh_shardings
batch, replicated = mesh_shardings("batch")
data = {"x": jnp.arange(1000.0).reshape(500, 2), "episode_ends": jnp.zeros(500)}
replay = jax.device_put(replay_lib.full(data), replicated)
draw = jax.jit(lambda r, k: replay_lib.sample(r, k, 64)["x"])
with replay_lib.sharded_batches(batch):
    got = draw(replay, jax.random.PRNGKey(0))
print(got.sharding.spec, len(got.addressable_shards), got.addressable_shards[0].data.shape)
"""


@pytest.mark.slow
def test_data_parallel_samples_are_split_over_the_devices():
    env = {**os.environ, "XLA_FLAGS": TWO_DEVICE_FLAGS}
    out = subprocess.run(
        [sys.executable, "-c", SPLIT_BATCH], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["P('batch',)", "2", "(32,", "2)"]


def test_each_seed_gets_the_logs_videos_and_result_of_one_run(tmp_path):
    from agent.runner import evaluate_logdir

    cfg = quick(tmp_path, "bc", "train.seeds=2", "eval.video_every=300")
    train(cfg, tmp_path / "run")
    for seed in (0, 1):
        folder = tmp_path / "run" / f"seed{seed}"
        assert list((folder / "videos").glob("*.gif")), seed
        records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert any("eval/return" in r for r in records) and any("train/loss" in r for r in records)
    evaluated = evaluate_logdir(tmp_path / "run", episodes=1)
    assert evaluated["seeds"] == [0, 1] and len(evaluated["per_seed"]) == 2
