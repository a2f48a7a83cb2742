"""Behaviour is unchanged by restructuring: the debug runs of every method (seed 0) end with the
recorded final metrics and final policy (tests/fingerprint.py says what a fingerprint holds).

The records were made on the code before the agent-protocol restructuring, with one change to
that code: its random draws rearranged to the runner's counter-based recipe (init key
fold_in(root, 0); step t's key fold_in(fold_in(root, 1), t); periodic work's key
fold_in(fold_in(root, 2), t)); tests/records/fingerprint_rng_recipe.diff is that change. LEQ's
record was then made anew after one deliberate fix: at the FQE -> LEQ switch the critic's EMA copy
is set to the trained FQE critic (tests/test_leq_agent.py tests the fix itself).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fingerprint import DATA, MACHINE_KEY, RUNS, cpu_signature, fingerprint

RECORDED = json.loads(DATA.read_text())
RECORDED_ON = RECORDED[MACHINE_KEY]["cpu_features"]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RUNS))
def test_debug_run_matches_its_recorded_fingerprint(method, data_dir, tmp_path):
    if cpu_signature() != RECORDED_ON:
        pytest.skip(
            f"recorded on a CPU with {RECORDED_ON}, this one has {cpu_signature()}: XLA generates "
            "other vector code, so floats differ; rerecord with `python -m tests.fingerprint "
            "--write` on the previous code to compare here"
        )
    found = fingerprint(method, data_dir, tmp_path)
    recorded = RECORDED[method]
    assert found["result"] == pytest.approx(recorded["result"], rel=1e-6)
    for key, value in recorded["train"].items():
        assert found["train"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    np.testing.assert_allclose(found["actions"], recorded["actions"], atol=2e-6)
