"""dm_control from pixels: determinism, frames that match the physics, action repeat, the
renderer's look, and the one-line error without OpenGL."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.tasks import rendering
from envs.tasks.dmc_pixels import make_dmc_pixels
from envs.tasks.frames import resize_images

SIZE = 32  # small frames keep the tests fast


def rollout(env, steps: int, seed: int = 0):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, rewards = [obs["image"]], []
    for _ in range(steps):
        obs, reward, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        frames.append(obs["image"])
        rewards.append(reward)
    return np.stack(frames), np.array(rewards)


def test_pixel_tasks_are_registered_with_image_fields():
    for name in ("walker-walk", "cheetah-run", "cartpole-swingup"):
        task = envs.get_task(f"{name}-pixels")
        assert task.observation_fields == {"image": ((64, 64, 3), "uint8")}
        assert task.max_episode_steps == 500 and task.family == "dmc_pixels"
        assert task.act_dim == envs.get_task(name).act_dim


def test_kept_frames_are_each_steps_own_and_follow_the_motion():
    """Frames kept from step to step stay as rendered (none is a view that the next render
    overwrites) and change as the cart moves."""
    env = make_dmc_pixels("cartpole-swingup-pixels", seed=0, image_size=SIZE)
    obs, _ = env.reset(seed=0)
    kept = [obs["image"]]
    for _ in range(15):
        obs, *_ = env.step(np.ones(1, np.float32))
        kept.append(obs["image"])
    copies = [frame.copy() for frame in kept]
    for frame, copy in zip(kept, copies, strict=True):
        np.testing.assert_array_equal(frame, copy)
    assert not np.array_equal(kept[0], kept[-1])  # the cart has moved
    assert sum(not np.array_equal(a, b) for a, b in zip(kept, kept[1:], strict=False)) >= 10


def test_a_pixel_task_at_another_image_size_resizes_as_datasets_are_resized():
    from envs.tasks.frames import resize_images

    full = envs.get_task("cartpole-swingup-pixels")
    task = full.at_image_size(16)
    assert task.observation_fields == {"image": ((16, 16, 3), "uint8")}
    small_env, full_env = task.make(seed=0), full.make(seed=0)
    assert small_env.observation_space["image"].shape == (16, 16, 3)
    small, _ = small_env.reset(seed=0)
    big, _ = full_env.reset(seed=0)
    action = np.full(1, 0.5, np.float32)
    for _ in range(3):  # the evaluation frames are the 64px frames resized as a dataset's are
        np.testing.assert_array_equal(small["image"], resize_images(big["image"][None], 16)[0])
        small, *_ = small_env.step(action)
        big, *_ = full_env.step(action)
    hopper = envs.get_task("hopper")
    assert hopper.at_image_size(16) is hopper  # state tasks have no frames to resize


@pytest.mark.slow  # renders frames in the simulator
def test_same_seed_same_frames_and_84px_option():
    a, ra = rollout(make_dmc_pixels("cheetah-run-pixels", seed=3, image_size=SIZE), 5, seed=3)
    b, rb = rollout(make_dmc_pixels("cheetah-run-pixels", seed=3, image_size=SIZE), 5, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra, rb)
    assert a.shape == (6, SIZE, SIZE, 3) and a.dtype == np.uint8
    assert a.std() > 5  # a scene, not a blank frame
    c, _ = rollout(make_dmc_pixels("cheetah-run-pixels", seed=4, image_size=SIZE), 5, seed=4)
    assert not np.array_equal(a, c)
    obs, _ = envs.get_task("walker-walk-pixels").make(seed=0, image_size=84).reset(seed=0)
    assert obs["image"].shape == (84, 84, 3)


def test_frames_match_the_physics_state_they_were_rendered_from():
    env = make_dmc_pixels("walker-walk-pixels", seed=0, image_size=SIZE).unwrapped
    frames, _ = rollout(env, 4)
    state = env.physics.get_state().copy()
    other = make_dmc_pixels("walker-walk-pixels", seed=9, image_size=SIZE).unwrapped
    other.reset(seed=9)
    with other.physics.reset_context():
        other.physics.set_state(state)
    again = rendering.FrameRenderer(other.physics, SIZE).render()
    np.testing.assert_array_equal(again, frames[-1])


def test_action_repeat_sums_the_rewards_of_two_control_steps():
    pixels = make_dmc_pixels("walker-walk-pixels", seed=1, image_size=SIZE, with_state=True)
    states = envs.make_env("walker-walk", seed=1)
    obs, _ = pixels.reset(seed=1)
    flat, _ = states.reset(seed=1)
    np.testing.assert_array_equal(obs["state"], flat)
    action = np.full(6, 0.3, np.float32)
    obs, reward, *_ = pixels.step(action)
    first, second = (states.step(action) for _ in range(2))
    assert reward == pytest.approx(first[1] + second[1], rel=1e-6)
    np.testing.assert_array_equal(obs["state"], second[0])


def test_default_renderer_keeps_the_look_and_fast_is_an_option():
    env = make_dmc_pixels("walker-walk-pixels", seed=0, image_size=SIZE).unwrapped
    env.reset(seed=0)
    ours = env.render()
    stock = env.physics.render(height=SIZE, width=SIZE, camera_id=0)
    np.testing.assert_array_equal(ours, stock)  # same pixels as dm_control's own render
    fast = make_dmc_pixels("walker-walk-pixels", seed=0, image_size=SIZE, fast_render=True)
    image = fast.reset(seed=0)[0]["image"]
    assert image.shape == ours.shape and not np.array_equal(image, ours)  # no shadows


@pytest.mark.slow  # renders frames in the simulator
def test_fast_render_key_reaches_the_simulator_and_gives_datasets_their_own_folder():
    from agent.config import load_config
    from agent.runner.sources import config_task
    from envs.datasets.pixel_datasets import _build_record, vd4rl_folder

    task_of = lambda *sets: config_task(load_config(["bc_pixels_cartpole_swingup"], list(sets)))
    default, fast = task_of(f"image_size={SIZE}"), task_of(f"image_size={SIZE}", "fast_render=true")
    assert (default.fast_render, fast.fast_render) == (False, True)
    assert fast.image_shape == default.image_shape == (SIZE, SIZE, 3)  # both keys apply
    image = lambda task: task.make(seed=0).reset(seed=0)[0]["image"]
    expected = make_dmc_pixels("cartpole-swingup-pixels", seed=0, image_size=64, fast_render=True)
    stored = expected.reset(seed=0)[0]["image"]
    assert not np.array_equal(image(fast), image(default))
    np.testing.assert_array_equal(image(fast), resize_images(stored[None], SIZE)[0])
    folders = [vd4rl_folder("data", task, "expert", 5000, 0) for task in (default, fast)]
    assert folders[0].parts[1] == "vd4rl-n5000-s0" and folders[1].parts[1] == "vd4rl-n5000-s0-fast"
    assert folders[0].parts[2:] == folders[1].parts[2:]  # V-D4RL's layout below the root
    assert "render" not in _build_record(default, "random", 5000, 0)  # old folders stay valid
    assert _build_record(fast, "random", 5000, 0)["render"] == "fast"
    assert envs.get_task("hopper").with_fast_render(True) == envs.get_task("hopper")


def test_collect_builds_the_look_that_train_would_use(tmp_path, capsys):
    from agent.runner.cli import main

    args = ["collect", "--task", "cartpole-swingup-pixels", "--quality", "random",
            "--set", "dataset.size=10", "--set", f"dataset.dir={tmp_path}"]  # fmt: skip
    assert main([*args, "--set", "fast_render=true"]) == 0
    assert "vd4rl-n10-s0-fast" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["vd4rl-n10-s0-fast"]


def test_without_opengl_one_line_says_what_to_install(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(rendering.ctypes.util, "find_library", lambda name: None)
    assert rendering.select_gl_platform() is None
    with pytest.raises(rendering.RenderError, match="libegl1.*libosmesa6") as err:
        rendering.FrameRenderer(physics=None, size=SIZE)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert rendering.select_gl_platform() == "osmesa"  # the user's choice is kept


@pytest.mark.slow
def test_an_episode_is_500_steps_of_action_repeat_2():
    env = make_dmc_pixels("cartpole-swingup-pixels", seed=0, image_size=16)
    env.reset(seed=0)
    zeros = np.zeros(1, np.float32)
    for t in range(1, 501):
        *_, terminated, truncated, _ = env.step(zeros)
        assert not terminated and truncated == (t == 500)


# ------------------------------------------------------------------------------------------
# Pixel datasets in V-D4RL's layout, and behaviour cloning from them


@pytest.mark.slow
def test_built_pixel_dataset_is_vd4rl_npz_and_deterministic(tmp_path):
    from envs.datasets import load_task_dataset
    from envs.datasets.pixel_datasets import build_or_reuse_pixels, collect_pixel_episodes
    from envs.datasets.vd4rl import read_npz_episodes

    # the fast look keeps this test quick; the builder does not depend on the look, and the
    # default look is the renderer's test above
    task = envs.get_task("cartpole-swingup-pixels").with_fast_render(True)
    folder = build_or_reuse_pixels(task, "random", 600, 5, tmp_path, progress=False)
    assert folder.relative_to(tmp_path).parts == (
        "vd4rl-n600-s5-fast", "main", "cartpole_swingup", "random", "64px"
    )  # fmt: skip
    episodes = read_npz_episodes(folder)
    assert [len(ep["reward"]) for ep in episodes] == [501, 501]  # ceil(600 / 500) episodes
    first = episodes[0]
    assert first["image"].shape == (501, 64, 64, 3) and first["image"].dtype == np.uint8
    assert first["action"][0].tolist() == [0.0] and first["reward"][0] == 0.0
    assert first["is_first"][0] and first["is_last"][-1] and not first["is_terminal"].any()
    again = collect_pixel_episodes(task, "random", 2, 5, progress=False)
    for a, b in zip(episodes, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    data = load_task_dataset(task, {"dir": str(tmp_path), "size": 600, "seed": 5})
    assert len(data) == 1000 and data.observations["image"].dtype == np.uint8
    np.testing.assert_array_equal(data.next_observations["image"][0], first["image"][1])
    np.testing.assert_array_equal(data.actions[0], first["action"][1])
    assert data.episode_ends.sum() == 2 and data.timeouts.sum() == 2
    small = task.at_image_size(16)  # `image_size: 16`: the same 64px folder, resized on loading
    shrunk = load_task_dataset(small, {"dir": str(tmp_path), "size": 600, "seed": 5})
    assert shrunk.observations["image"].shape == (1000, 16, 16, 3)
    np.testing.assert_array_equal(shrunk.actions, data.actions)
    np.testing.assert_array_equal(shrunk.rewards, data.rewards)


@pytest.mark.slow  # renders frames in the simulator
def test_a_users_vd4rl_folder_with_a_wrong_action_size_is_one_line(tmp_path):
    from envs.datasets import load_dataset
    from envs.datasets.errors import DatasetError
    from envs.datasets.pixel_datasets import build_or_reuse_pixels

    cartpole = build_or_reuse_pixels(
        envs.get_task("cartpole-swingup-pixels"), "random", 10, 0, tmp_path, progress=False
    )
    with pytest.raises(DatasetError, match="key 'action' has \\[1\\] dimensions.*expects 6"):
        load_dataset("walker-walk-pixels", {"path": str(cartpole)})


@pytest.mark.slow
def test_bc_from_pixels_debug_run_records_video_and_resumes_bit_identical(tmp_path, pixel_data_dir):
    from tests.conftest import pixel_debug_run_and_resume

    sets = ["train.steps=100", "train.checkpoint_every=50", "train.eval_every=0"]
    sets += ["eval.final_episodes=1", "eval.video_every=100"]
    _, straight, _ = pixel_debug_run_and_resume(
        "bc_pixels_cartpole_swingup", pixel_data_dir, tmp_path, sets, kill_after=50
    )
    assert list((straight / "videos").glob("*.gif"))  # the frames the agent saw


@pytest.mark.slow
def test_84px_tasks_build_hdf5_shards_that_load_back(tmp_path):
    from envs.datasets import load_dataset
    from envs.datasets.pixel_datasets import build_or_reuse_pixels

    task = envs.get_task("cartpole-swingup-pixels84")
    assert task.observation_fields == {"image": ((84, 84, 3), "uint8")}
    folder = build_or_reuse_pixels(task, "random", 10, 0, tmp_path, progress=False)
    assert folder.name == "84px" and [p.name for p in folder.glob("*.hdf5")] == ["0.hdf5"]
    data = load_dataset(task.name, {"path": str(folder)})
    assert data.observations["image"].shape == (500, 84, 84, 3)
    small = load_dataset("cartpole-swingup-pixels", {"path": str(folder)})  # resized, as LEQ_DV3
    assert small.observations["image"].shape == (500, 64, 64, 3)
