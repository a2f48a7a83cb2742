"""Dataset collection in the real simulators: determinism, episode bookkeeping, behaviours,
and the behaviour-policy export."""

import re

import gymnasium as gym
import numpy as np
import pytest

from envs import get_task
from envs.datasets import behaviour
from envs.datasets.behaviour import available_qualities, make_behaviour, register_behaviour
from envs.datasets.collect import GENERATOR_VERSION, collect, collect_task, union_part_seeds
from envs.datasets.d4rl_hdf5 import read_d4rl_hdf5
from envs.datasets.errors import DatasetError
from envs.tasks.task import TaskSpec


def never_done(obs, act, next_obs):
    return np.zeros(np.shape(obs)[:-1], bool)


def gym_task(env_id, name, family, obs_dim, act_dim, steps) -> TaskSpec:
    """A TaskSpec over a plain gymnasium env (independent of envs.get_task)."""

    def make(seed=None, render=False):
        return gym.make(env_id, max_episode_steps=steps)

    return TaskSpec(name, family, obs_dim, act_dim, steps, 0.0, 1.0, never_done, make)


HOPPER = gym_task("Hopper-v5", "hopper", "locomotion", 11, 3, 1000)
CHEETAH = gym_task("HalfCheetah-v5", "halfcheetah", "locomotion", 17, 6, 50)
UMAZE = get_task("maze2d-umaze")

ARRAY_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if key != "metadata":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_same_seed_same_data_different_seed_different_data():
    first = collect_task(HOPPER, "random", 600, seed=5, progress=False)
    assert_same(first, collect_task(HOPPER, "random", 600, seed=5, progress=False))
    other = collect_task(HOPPER, "random", 600, seed=6, progress=False)
    assert not np.array_equal(first["actions"], other["actions"])
    assert not np.array_equal(first["observations"][0], other["observations"][0])


def test_terminal_episodes_and_the_final_cut():
    raw = collect_task(HOPPER, "random", 700, seed=0, progress=False)
    assert all(len(raw[k]) == 700 for k in ARRAY_KEYS)
    assert raw["terminals"].sum() > 5  # random hopper falls within tens of steps
    assert raw["terminals"][-1] or raw["timeouts"][-1]
    assert not (raw["terminals"] & raw["timeouts"]).any()
    # within an episode next_obs[i] is obs[i + 1]; after an end the simulator was reset
    ends = raw["terminals"] | raw["timeouts"]
    gaps = np.linalg.norm(raw["observations"][1:] - raw["next_observations"][:-1], axis=1)
    assert (gaps[~ends[:-1]] == 0).all() and (gaps[ends[:-1]] > 0).all()
    assert raw["actions"].min() >= -1 and raw["actions"].max() <= 1
    meta = raw["metadata"]
    assert (meta["task"], meta["quality"], meta["seed"], meta["size"]) == (
        "hopper",
        "random",
        0,
        700,
    )
    assert meta["generator_version"] == GENERATOR_VERSION


def test_time_limit_gives_timeouts_not_terminals():
    raw = collect_task(CHEETAH, "random", 175, seed=1, progress=False)
    assert raw["terminals"].sum() == 0
    # truncated every 50 steps, plus the final step cut by the size limit
    np.testing.assert_array_equal(np.flatnonzero(raw["timeouts"]), [49, 99, 149, 174])


def test_maze2d_planner_is_one_continuing_run_cut_at_goals():
    raw = collect_task(UMAZE, "planner", 2500, seed=0, progress=False)
    assert_same(raw, collect_task(UMAZE, "planner", 2500, seed=0, progress=False))
    # never reset, even past the 300-step time limit: next_obs[i] == obs[i + 1] throughout
    np.testing.assert_array_equal(raw["observations"][1:], raw["next_observations"][:-1])
    cuts = np.flatnonzero(raw["timeouts"])
    lengths = np.diff(np.r_[-1, cuts])
    assert len(cuts) >= 10 and lengths.max() <= 300 and raw["terminals"].sum() == 0
    goals = raw["infos/goal"]
    assert len(np.unique(goals.round(3), axis=0)) >= 5  # goals resampled on arrival
    # at each cut the particle is at its goal (or the segment hit the time limit)
    xy = raw["next_observations"][cuts[:-1], :2]
    near = np.linalg.norm(xy - np.round(goals[cuts[:-1]]), axis=1) < 0.1
    assert (near | (lengths[:-1] == 300)).all()
    # rewards are the environment's: 1 within 0.5 of the evaluation goal, cell (1, 1)
    at_eval_goal = np.linalg.norm(raw["next_observations"][:, :2] - [1.0, 1.0], axis=1) <= 0.5
    np.testing.assert_array_equal(raw["rewards"], at_eval_goal.astype(np.float32))
    assert raw["metadata"]["continuing"] is True


def test_maze2d_expert_episodes_reach_the_evaluation_goal():
    raw = collect_task(UMAZE, "expert", 1500, seed=0, progress=False)
    assert "continuing" not in raw["metadata"] or raw["metadata"]["continuing"] is False
    ends = np.flatnonzero(raw["timeouts"])
    assert np.diff(np.r_[-1, ends]).tolist() == [300] * 5  # ordinary 300-step episodes
    rewards = raw["rewards"].reshape(5, 300)
    # The planner reaches the goal in every episode and stays there: most late steps pay 1.
    assert (rewards.sum(axis=1) > 0).all()
    assert rewards[:, -50:].mean() > 0.8
    random_raw = collect_task(UMAZE, "random", 1500, seed=0, progress=False)
    assert raw["rewards"].sum() > 3 * random_raw["rewards"].sum()


def test_unknown_or_unavailable_quality_lists_the_available_ones(monkeypatch, tmp_path):
    from envs.datasets import trained_policies

    monkeypatch.setattr(trained_policies, "POLICY_DIR", tmp_path)  # no trained policies
    assert available_qualities(HOPPER) == ["random"]
    assert available_qualities(UMAZE) == ["expert", "planner", "random"]
    with pytest.raises(
        DatasetError, match=r"hopper: quality not available 'expert' \(available: random\)"
    ):
        collect_task(HOPPER, "expert", 10, seed=0, progress=False)
    with pytest.raises(DatasetError, match=r"hopper: quality not available 'medium-expert'"):
        collect_task(HOPPER, "medium-expert", 10, seed=0, progress=False)
    with pytest.raises(DatasetError, match=r"hopper: unknown quality 'superb'"):
        collect_task(HOPPER, "superb", 10, seed=0, progress=False)
    env = HOPPER.make()
    with pytest.raises(DatasetError, match=r"quality not available 'planner'"):
        make_behaviour("planner", HOPPER, env, 0)
    env.close()


def test_registered_behaviour_is_used_by_the_collector(monkeypatch):
    monkeypatch.setattr(behaviour, "_REGISTRY", dict(behaviour._REGISTRY))

    def zero_factory(task, env, seed):
        return lambda obs, rng: np.zeros(task.act_dim, np.float32)

    register_behaviour("still", zero_factory, families=("locomotion",))
    raw = collect_task(CHEETAH, "still", 60, seed=0, progress=False)
    assert (raw["actions"] == 0).all() and raw["metadata"]["quality"] == "still"
    assert "still" not in available_qualities(UMAZE)


def test_collect_by_task_name():
    raw = collect("walker-walk", "random", 300, seed=2, progress=False)
    assert raw["observations"].shape == (300, 24) and raw["metadata"]["task"] == "walker-walk"
    assert raw["observations"].dtype == np.float32


# --------------------------------------------------------------------------------------------
# Union qualities (medium-expert) and the trained behaviours (committed hopper policies)


def test_medium_expert_halves_use_different_seeds():
    hopper = get_task("hopper")
    raw = collect_task(hopper, "medium-expert", 40, seed=0, progress=False)
    # Same seed for both halves would reset both to the same state and reuse the noise stream.
    assert not np.array_equal(raw["observations"][0], raw["observations"][20])
    seeds = union_part_seeds(0, 2)
    assert seeds[0] == 0 and seeds[1] != 0 and union_part_seeds(0, 2) == seeds
    assert union_part_seeds(1, 2)[1] not in seeds
    medium = collect_task(hopper, "medium", 20, seed=seeds[0], progress=False)
    expert = collect_task(hopper, "expert", 20, seed=seeds[1], progress=False)
    for key in ARRAY_KEYS:
        np.testing.assert_array_equal(raw[key][:20], medium[key], err_msg=key)
        np.testing.assert_array_equal(raw[key][20:], expert[key], err_msg=key)
    assert raw["metadata"]["seed"] == 0
    assert raw["metadata"]["part_seeds"] == f"0,{seeds[1]}"
    assert raw["metadata"]["parts"] == "medium:20,expert:20"
    assert_same(raw, collect_task(hopper, "medium-expert", 40, seed=0, progress=False))


def fake_gem_run(
    root, task: TaskSpec, steps=(100, 200, 300, 400), learning_starts=150, method="gem"
):
    """A run folder as an online run writes it: config.yaml, metrics.jsonl,
    snapshots/actor_*.npz (GEM's LayerNorm actor, or SAC's Gaussian actor for method="sac")."""
    rng = np.random.default_rng(0)
    (root / "snapshots").mkdir(parents=True)
    out_dim = 2 * task.act_dim if method == "sac" else task.act_dim
    for step in steps:
        sizes = [task.obs_dim, 8, 8]
        weights = {}
        for i in range(2):
            weights[f"dense_{i}/w"] = rng.normal(0, 0.5, sizes[i : i + 2])
            weights[f"dense_{i}/b"] = np.zeros(sizes[i + 1])
            if method == "gem":
                weights[f"ln_{i}/scale"] = np.ones(sizes[i + 1])
                weights[f"ln_{i}/offset"] = np.zeros(sizes[i + 1])
        weights["out/w"] = rng.normal(0, 0.5, (8, out_dim))
        weights["out/b"] = np.zeros(out_dim)
        np.savez(root / "snapshots" / f"actor_{step:08d}.npz", **weights)
    lines = [f'{{"step": {s}, "eval/return": {s / 10}}}' for s in steps]
    (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (root / "config.yaml").write_text(
        f"seed: 0\nmethod: {method}\n"
        f"{method}: {{learning_starts: {learning_starts}, memory: true}}\n"
        "train: {steps: 400}\neval: {episodes: 2}\n"
    )
    return root


def test_export_of_a_sac_run_samples_its_gaussian_actor_and_has_full_replay(tmp_path):
    """A SAC run exports tanh-Gaussian actors; full-replay re-enacts the whole run: random for
    learning_starts, then each snapshot for its share of training steps."""
    from envs.datasets import trained_policies
    from envs.datasets.export import export

    hopper = get_task("hopper")
    run = fake_gem_run(tmp_path / "run", hopper, method="sac")
    out = tmp_path / "policies"
    manifest = export(run, "hopper", out, "made by a test", upto=300)
    assert manifest["actor"] == "tanh_gaussian" and manifest["made_by"]["method"] == "sac"
    assert manifest["expert"]["env_step"] == 300
    assert [s["stop"] for s in manifest["full_replay"]["segments"]] == [200, 300]
    assert set(manifest["fingerprint"]["reward_sums"]) == {
        "medium",
        "expert",
        "medium-replay",
        "full-replay",
    }
    section = trained_policies.read_manifest("hopper", out)
    behaviour = trained_policies.ReplayBehaviour(out / "hopper", section, 3, "full_replay")
    behaviour.prepare(600)  # random 150 of 300 training steps, then 200 (to 200), then 300
    assert behaviour.bounds == [300, 400, 600]
    actor = trained_policies.TanhGaussianActor.load(out / "hopper" / "actor_00000300.npz")
    obs = np.full(11, 0.3, np.float32)
    rng = np.random.default_rng(0)
    actions = np.array([behaviour(obs, rng) for _ in range(600)])
    mean, log_std = actor.distribution(obs)
    # The last segment samples tanh(N(mean, std^2)): its arctanh has that mean.
    pre = np.arctanh(np.clip(actions[400:], -0.999999, 0.999999))
    assert np.abs(pre.mean(0) - mean).max() < 4 * np.exp(log_std).max() / np.sqrt(200) + 0.05
    assert np.abs(actions[:300].mean(0)).max() < 0.15  # uniform in [-1, 1]


def test_export_writes_policies_that_collect_from_an_explicit_folder(tmp_path, monkeypatch):
    from envs.datasets import trained_policies
    from envs.datasets.export import export, fingerprint

    hopper = get_task("hopper")
    run = fake_gem_run(tmp_path / "run", hopper)
    out = tmp_path / "policies"
    manifest = export(run, "hopper", out, "made by a test")
    assert manifest["expert"]["env_step"] == 400 and manifest["medium"]["env_step"] == 200
    assert sorted(p.name for p in (out / "hopper").iterdir()) == [
        "actor_00000200.npz",
        "actor_00000300.npz",  # full-replay's
        "actor_00000400.npz",
        "policies.json",
    ]
    # The package's POLICY_DIR is never swapped: the folder is passed to the factories.
    nothing = tmp_path / "nothing"
    monkeypatch.setattr(trained_policies, "POLICY_DIR", nothing)
    assert fingerprint("hopper", out) == manifest["fingerprint"]
    assert trained_policies.POLICY_DIR is nothing  # untouched
    assert "expert" not in available_qualities(hopper)
    monkeypatch.setattr(trained_policies, "POLICY_DIR", out)
    raw = collect_task(hopper, "expert", 300, seed=0, progress=False)
    assert raw["rewards"].sum() == pytest.approx(manifest["fingerprint"]["reward_sums"]["expert"])


def test_export_command_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    from agent.runner.cli import main

    hopper = get_task("hopper")
    run = fake_gem_run(tmp_path / "run", hopper)
    empty = tmp_path / "empty"
    (empty / "snapshots").mkdir(parents=True)
    (empty / "config.yaml").write_text("seed: 0\n")
    cases = [
        (["--run", str(tmp_path / "missing"), "--task", "hopper"], "no such run folder"),
        (["--run", str(empty), "--task", "hopper"], "no actor_\\*.npz snapshots"),
        (["--run", str(run), "--task", "hoppr"], "unknown task 'hoppr'; valid names: hopper"),
    ]
    for argv, message in cases:
        status = main(["export", *argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert status == 2, argv
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0
    assert "--made-with" in capsys.readouterr().out


def test_a_cached_dataset_from_other_policy_files_is_rebuilt(tmp_path, monkeypatch, capsys):
    """Datasets record the hash of the policies.json they came from; a cached file built from
    other files (a re-export) is rebuilt, never silently reused."""
    from envs.datasets import trained_policies
    from envs.datasets.export import export
    from envs.datasets.loading import build_or_reuse

    hopper = get_task("hopper")
    first = export(fake_gem_run(tmp_path / "a", hopper), "hopper", tmp_path / "pa", "a")
    second = export(
        fake_gem_run(tmp_path / "b", hopper, steps=(100, 200, 300)), "hopper", tmp_path / "pb", "b"
    )
    assert first["expert"]["file"] != second["expert"]["file"]
    cache = tmp_path / "cache"
    monkeypatch.setattr(trained_policies, "POLICY_DIR", tmp_path / "pa")
    path = build_or_reuse(hopper, "expert", 50, 0, str(cache))
    build_or_reuse(hopper, "expert", 50, 0, str(cache))
    assert "reusing" in capsys.readouterr().out
    monkeypatch.setattr(trained_policies, "POLICY_DIR", tmp_path / "pb")
    build_or_reuse(hopper, "expert", 50, 0, str(cache))
    assert "other behaviour policy files; rebuilding" in capsys.readouterr().out
    stored = read_d4rl_hdf5(path)["metadata"]["policies"]
    assert stored == trained_policies.policies_id("hopper") != ""
