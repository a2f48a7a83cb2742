"""Shared fixtures and helpers of the test suite.

Everything heavy is built once per session: datasets go to one session folder (`data_dir`), and
`agent_parts` builds an agent with its replay through the runner's own code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from agent.config import load_config
from agent.programs import Programs
from agent.runner.build import build, fresh_run

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs simulators or whole training runs (`pytest -m 'not slow'` skips)"
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One dataset cache for the whole session."""
    return tmp_path_factory.mktemp("data")


def run_py(args: list[str], timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python run.py ARGS` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def agent_parts(names: list[str], overrides: list[str], logdir: Path):
    """(cfg, agent, replay, spec, run) built as `train` builds them (data, world model, state)."""
    cfg = load_config(names, overrides)
    logdir.mkdir(parents=True, exist_ok=True)
    agent, replay, spec = build(cfg, logdir)
    return cfg, agent, replay, spec, fresh_run(cfg, agent, spec)


def run_chunk(agent, state, replay, phase: str, length: int, step: int = 0, seed: int = 0):
    """One compiled chunk of `length` steps of `phase` from `step` -> (state, metrics)."""
    program = Programs(agent).chunk(phase, length)
    return program(state, replay, jax.random.PRNGKey(seed), step)


def leaves_equal(a, b) -> bool:
    """Every leaf of two pytrees is bit-identical."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )
