"""Behaviour is unchanged by restructuring: the debug runs of every method (seed 0) end with the
recorded final metrics and final policy (tests/fingerprint.py says what a fingerprint holds).

The records were made on the code before the agent-protocol restructuring, with one change to
that code: its random draws rearranged to the runner's counter-based recipe (init key
fold_in(root, 0); step t's key fold_in(fold_in(root, 1), t); periodic work's key
fold_in(fold_in(root, 2), t)). LEQ's record was then made anew after one deliberate fix: at the
FQE -> LEQ switch the critic's EMA copy is set to the trained FQE critic (tests/test_leq_agent.py
tests the fix itself), and again when the embedded default changed.

Floats depend on the processor's vector extensions, so there is one record per CPU signature.
The AVX-512 record was made first; the AVX2 one (no AVX-512) was made on code whose debug runs
matched the AVX-512 record in CI the session before (only the sweep's records module and
docstrings changed in between), so it stands for the same behaviour on that processor. The two
agree closely: training metrics within 4.3e-7 (relative), policy actions within 1e-6. GEM's
record was made anew on the AVX-512 processor when its critic became the official one, and again
when the memory refresh came to draw its smoothing noise once per row (so `gem.refresh_chunk`
no longer changes results) and when its four critics became stacked parameters under one vmap
(rounding only: the final evaluation's return std moved by 6e-5 relative, every other entry
stayed within the tolerances); the AVX2 record has no GEM entry since (`NOT_RERECORDED`).

The test suite compiles at LLVM optimisation level 0 (tests/conftest.py: several times faster
to compile), whose floats differ from the default level's in the last bits, so a record's key
ends in " O0" for that level. The O0 record of the AVX-512 processor was made (`XLA_FLAGS=
--xla_backend_optimization_level=0 python -m tests.fingerprint --write`) on code whose debug runs
had matched that processor's default-level record the same day, in a full suite and in a clean
clone's CI, so it stands for the same behaviour.

A processor without a record skips these whole-run checks; tests/test_agent_contract.py's
update records (every method's compiled updates on fixed synthetic batches, compared with a
float32 tolerance) run on every processor.

The runs are the session's shared debug runs (tests/conftest.py), so this file trains nothing of
its own; the runs add observers (tests/fingerprint.py's OBSERVERS) that must not change them.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fingerprint import RUNS, cpu_signature, load_records, summarise

RECORDS = load_records()
SIGNATURE = cpu_signature()


# The processor the records are kept on; it always holds every method, at both levels.
REFERENCE = "sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16"
# Methods whose behaviour changed on purpose after another processor's record was made, so that
# record lacks them until someone re-records it on such a processor (GEM: the official critic,
# the refresh's noise).
NOT_RERECORDED = {"sse4_2 avx avx2 fma": {"gem"}}


def test_every_record_holds_every_method():
    assert sorted(RECORDS.get(REFERENCE, {})) == sorted(RUNS)
    assert sorted(RECORDS.get(f"{REFERENCE} O0", {})) == sorted(RUNS)
    for signature, runs in RECORDS.items():
        missing = set(RUNS) - set(runs)
        assert missing == NOT_RERECORDED.get(signature, set()), signature


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RUNS))
def test_debug_run_matches_its_recorded_fingerprint(method, request):
    if SIGNATURE not in RECORDS:
        pytest.skip(
            f"no record for a CPU with [{SIGNATURE}] (recorded: {' | '.join(RECORDS)}): XLA "
            "generates other vector code, so floats differ; record one with `python -m "
            "tests.fingerprint --write` on code that matches a recorded CPU's fingerprints"
        )
    if method in NOT_RERECORDED.get(SIGNATURE, ()):
        pytest.skip(f"{method} changed on purpose since this processor's record was made")
    run = request.getfixturevalue(f"{method}_debug_run")
    found = summarise(run.logdir, run.result, run.cfg.task)
    recorded = RECORDS[SIGNATURE][method]
    assert found["result"] == pytest.approx(recorded["result"], rel=1e-6)
    for key, value in recorded["train"].items():
        assert found["train"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    np.testing.assert_allclose(found["actions"], recorded["actions"], atol=2e-6)
