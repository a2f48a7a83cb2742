"""Shared fixtures and helpers of the test suite.

Everything heavy is built once per session:

- one XLA compilation cache for the session and every `run.py` subprocess it starts (set through
  the environment, so subprocesses and Ray workers inherit it);
- datasets in one session folder (`data_dir`, `pixel_data_dir`);
- one run per canonical debug configuration (`leq_debug_run`, `bc_debug_run`, `vem_debug_run`,
  `gem_debug_run`), shared by every test that asserts something about it: its files, metrics,
  evaluation, fingerprint, resume and world-model reuse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The suite's programs are small and compiled once each, so compiling dominates its time: LLVM's
# optimisation level 0 compiles them several times faster (jit(RssmWorldModel.init): 2.8 s
# against 26 s) and runs them a little slower. Floats differ from the default level in the last
# bits, so whole-run fingerprints have records per level (tests/fingerprint.py). Set before any
# computation (this process and, through the environment, every subprocess); a level the user
# set in XLA_FLAGS is kept.
SUITE_XLA_FLAG = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SUITE_XLA_FLAG}".strip()

# jax writes only compilations slower than 1 s or larger than a few bytes by default; the test
# suite's programs are many small ones compiled again by every run, so cache them all. A whole
# session writes about 50 MB; the cap keeps a cache reused across sessions bounded (LRU).
XLA_CACHE_SETTINGS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
    "jax_compilation_cache_max_size": 512 * 2**20,
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: trains a run or starts a simulator-heavy build (`-m 'not slow'` skips)"
    )
    _use_compilation_cache(config)


# Tests that take over ~1.5 s on 2 idle cores but sit in files other work owns (pure maths
# checks, runner tests): marked slow here by function name, so a test keeps its mark when it
# moves to another file. Whole runs and simulator builds in the other files carry the decorator.
SLOW_BY_NAME = frozenset(
    {
        # whole training runs (runner tests)
        "test_ctrl_c_during_a_learning_chunk_saves_it_and_the_rerun_matches",
        "test_ctrl_c_during_a_periodic_checkpoint_write_still_saves_and_the_rerun_matches",
        "test_sigterm_stops_a_background_run_with_its_work_saved",
        "test_a_branch_on_the_step_counter_stays_a_branch_across_seeds",
        "test_vmapped_seeds_end_where_separate_runs_end",
        "test_vmapped_seeds_resume_bit_identical",
        "test_each_seed_gets_the_logs_videos_and_result_of_one_run",
        # over ~2.5 s each with an empty compilation cache (a clean clone)
        "test_with_separate_keys_the_critic_fits_a_different_rollout",
        "test_observe_matches_the_sequence_filter_in_mode",
        "test_every_preset_name_of_before_the_aliases_resolves_as_it_did",
        "test_host_fed_batches_train_like_device_sampling",
        "test_numpy_tanh_gaussian_actor_matches_the_haiku_actor",
        "test_the_fit_reports_every_epoch_and_its_end",
        "test_refresh_equals_kernel_on_target_heads",
        "test_elites_have_lowest_holdout_mse_and_bad_member_is_excluded",
        "test_gradients_are_total_derivatives",
        "test_the_action_enters_where_the_form_says",
        "test_online_schedule_and_policy_modes",
        "test_cli_prints_a_range_error_in_one_line_with_status_2",  # a run.py subprocess
        # compile-bound checks of the maths and networks
        "test_imagine_step_applies_reward_affine_and_termination",
        "test_loss_matches_numpy_reference",
        "test_step_gradient_wrt_action_matches_finite_differences",
        "test_training_learns_linear_system",
        "test_numpy_actor_matches_the_haiku_actor",
        "test_fused_policy_gradient_equals_surrogate_gradient",
        "test_networks_shapes_and_normalisation",
        "test_policy_surrogate_gradient_is_weighted_dpg",
        "test_production_gradients_equal_reference_float32",
        "test_production_gradients_equal_reference_float64",
        "test_dpg_action_gradients_are_each_steps_own_total_derivative",
        "test_shared_rollout_equals_the_separate_form_run_with_one_key",
        "test_the_actor_steps_rollout_is_the_one_the_critic_would_imagine_with_that_key",
        "test_end_sentinel_changes_nothing_where_the_end_is_not_bootstrapped",
        "test_end_sentinel_matches_brute_force_on_the_official_layout",
        "test_forms_match_brute_force",
        "test_imagination_draws_one_prior_head_per_step",
        "test_loss_finite_and_kl_over_every_head",
        "test_open_loop_predicts_every_step_after_the_context",
        "test_training_lowers_the_loss_on_a_fixed_batch",
        "test_interleaved_schedule_updates_value_and_policy_each_step",
        "test_train_chunk_refreshes_at_step_zero_and_at_the_phase_switch",
    }
)


# Session fixtures that train or build something: under pytest-xdist (`-n 2 --dist loadgroup`,
# README's test command) every test that uses one runs in the same worker, so it is built once.
SHARED_BUILDS = (
    "leq_debug_run",
    "bc_debug_run",
    "vem_debug_run",
    "gem_debug_run",
    "pixel_data_dir",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects and before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if getattr(item, "originalname", item.name) in SLOW_BY_NAME:
            item.add_marker(pytest.mark.slow)
        item.add_marker(pytest.mark.xdist_group(_worker_group(item)))


def _worker_group(item) -> str:
    """The session build a test uses, else its file: a file's module fixtures are built once."""
    used = [name for name in SHARED_BUILDS if name in getattr(item, "fixturenames", ())]
    return used[0] if used else item.path.stem


def _use_compilation_cache(config) -> None:
    """Point this process and its subprocesses at one persistent XLA compilation cache: the
    user's JAX_COMPILATION_CACHE_DIR, else pytest's cache folder (kept between sessions), else a
    temporary folder."""
    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not folder:
        cache = getattr(config, "cache", None)
        folder = str(cache.mkdir("xla") if cache else tempfile.mkdtemp(prefix="xla-cache-"))
    settings = {"jax_compilation_cache_dir": folder, **XLA_CACHE_SETTINGS}
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)  # run.py subprocesses and Ray workers
        jax.config.update(name, value)
    _count_cache_events()


CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": 0, "/jax/compilation_cache/cache_misses": 0}


def _count_cache_events() -> None:
    from jax._src import monitoring  # no public listener API

    def listen(event: str, **_) -> None:
        if event in CACHE_EVENTS:
            CACHE_EVENTS[event] += 1

    monitoring.register_event_listener(listen)


def pytest_terminal_summary(terminalreporter):
    hits, misses = CACHE_EVENTS.values()
    if not hits + misses:  # the controller of xdist workers compiles nothing itself
        return
    terminalreporter.write_line(
        f"XLA compilation cache (this process): {hits} hits, {misses} misses, in "
        f"{os.environ.get('JAX_COMPILATION_CACHE_DIR')}"
    )


# ----------------------------------------------------------------------------- datasets ----


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One dataset cache for the whole session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def pixel_data_dir(tmp_path_factory) -> Path:
    """One folder for the session's tiny pixel dataset (`tiny_random_pixels`)."""
    return tmp_path_factory.mktemp("pixel_data")


def tiny_random_pixels(data: Path) -> list[str]:
    """Config overrides for a 500-step random pixel dataset kept in `data` (no policy files)."""
    return [f"dataset.dir={data}", "dataset.quality=random", "dataset.size=500"]


def pixel_debug_run_and_resume(preset: str, data: Path, work: Path, sets: list, kill_after: int):
    """`preset` + debug on the tiny pixel dataset in `data` with `sets`, trained straight and
    interrupted after `kill_after` steps then resumed (tests/resume.py) -> (result, straight
    logdir, resumed logdir)."""
    from agent.config import load_config
    from tests.resume import train_straight_and_resumed

    cfg = load_config([preset, "debug"], [*tiny_random_pixels(data), *sets])
    return train_straight_and_resumed(cfg, work, kill_after=kill_after)


# ---------------------------------------------------------------------------- the CLI ----


def run_py(args: list[str], timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a subprocess from the repository root, output captured. Only for
    what needs a process of its own (the smoke run, signals); `cli` runs the rest in-process."""
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@dataclasses.dataclass
class CliResult:
    """What `python run.py ARGS` would have returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def cli(args: list[str]) -> CliResult:
    """`python run.py ARGS` run in this process: the CLI's exit status and its output. The
    SIGTERM handler that the CLI installs is put back afterwards."""
    from agent.runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's own errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, handler)
    return CliResult(int(code or 0), out.getvalue(), err.getvalue())


# ---------------------------------------------------------- canonical debug runs ----


@dataclasses.dataclass
class DebugRun:
    """A finished debug run: its train arguments (the config names and --set overrides), the
    loaded config, its folder, what `run.py` printed and its result line."""

    names: list[str]
    sets: list[str]
    logdir: Path
    stdout: str
    result: dict

    @property
    def cfg(self):
        from agent.config import load_config

        return load_config(self.names, self.sets)

    def train_args(self, logdir: Path) -> list[str]:
        """`run.py` arguments that train this run's config in `logdir` (a resume when it holds
        a copy of this run)."""
        configs = [word for name in self.names for word in ("--config", name)]
        sets = [word for value in self.sets for word in ("--set", value)]
        return ["train", *configs, *sets, "--logdir", str(logdir), "--quiet"]

    def lines(self, name: str = "metrics.jsonl") -> list[dict]:
        return [json.loads(x) for x in (self.logdir / name).read_text().splitlines()]


def _debug_run(method: str, folder: Path, data: Path, subprocess_: bool = False) -> DebugRun:
    """The fingerprinted debug run of `method` (tests/fingerprint.py's RUNS) with the settings
    that only add observations (OBSERVERS: videos, more evaluations, kept checkpoints,
    snapshots), never change what is trained; tests/test_fingerprints.py checks that it still
    ends with the recorded fingerprint."""
    from tests.fingerprint import OBSERVERS, RUNS

    names, sets = RUNS[method]
    sets = [*sets, f"dataset.dir={data}", "seed=0", *OBSERVERS[method]]
    run = DebugRun(names, sets, folder, "", {})
    args = run.train_args(folder)
    done = run_py(args) if subprocess_ else cli(args)
    assert done.returncode == 0, done.stderr[-3000:]
    run.stdout = done.stdout
    run.result = json.loads(done.stdout.strip().splitlines()[-1])
    return run


@pytest.fixture(scope="session")
def leq_debug_run(tmp_path_factory, data_dir) -> DebugRun:
    """`python run.py train --config default --config debug` (LEQ on hopper medium-replay) in a
    real subprocess: the smoke run of the command line."""
    return _debug_run("leq", tmp_path_factory.mktemp("leq") / "run", data_dir, subprocess_=True)


@pytest.fixture(scope="session")
def bc_debug_run(tmp_path_factory, data_dir) -> DebugRun:
    """BC's debug run on the default data."""
    return _debug_run("bc", tmp_path_factory.mktemp("bc") / "run", data_dir)


@pytest.fixture(scope="session")
def vem_debug_run(tmp_path_factory, data_dir) -> DebugRun:
    """VEM's debug run on maze2d-umaze."""
    return _debug_run("vem", tmp_path_factory.mktemp("vem") / "run", data_dir)


@pytest.fixture(scope="session")
def gem_debug_run(tmp_path_factory, data_dir) -> DebugRun:
    """GEM's debug run on hopper (online), every checkpoint kept, evaluated and snapshotted
    every 100 steps."""
    return _debug_run("gem", tmp_path_factory.mktemp("gem") / "run", data_dir)


# ------------------------------------------------------------------------ programs ----


def run_chunk(agent, state, replay, phase: str, length: int, step: int = 0, seed: int = 0):
    """One compiled chunk of `length` steps of `phase` from `step` -> (state, metrics)."""
    from agent.programs import Programs

    program = Programs(agent).chunk(phase, length)
    return program(state, replay, jax.random.PRNGKey(seed), step)


def leaves_equal(a, b) -> bool:
    """Every leaf of two pytrees is bit-identical."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )
