"""Update records: what every method's compiled updates give on fixed synthetic batches.

tests/test_agent_contract.py trains each method (and observation kind) for two steps of every
phase of its schedule on seeded synthetic rows, then reads the policy's deterministic actions on
fixed observations (or, for a method without a policy, its report). Those numbers are compared
with tests/records/update_records.json (update_records_O0.json at the suite's optimisation level,
`records_path`) with a float32 tolerance (RTOL, ATOL), so unlike the
whole-run fingerprints (tests/fingerprint.py, bit-exact per processor) they hold on every
processor: a behaviour change in any update function fails on any machine.

`python -m tests.update_records --write` records them anew (by running the contract tests, slow
ones included); do so only for a deliberate change of behaviour, and say which in the commit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from tests.fingerprint import at_level_0

RECORDS_DIR = Path(__file__).resolve().parent / "records"
WRITE_ENV = "WMRL_WRITE_UPDATE_RECORDS"
RTOL, ATOL = 1e-4, 1e-6


def records_path() -> Path:
    """update_records.json, or update_records_O0.json at LLVM optimisation level 0 (the test
    suite's, tests/conftest.py): between the levels, leq_pixels' critic gradient norm after the
    seeded steps moved by 23 %, beyond any float tolerance, while every other method agreed."""
    return RECORDS_DIR / ("update_records_O0.json" if at_level_0() else "update_records.json")


def load_records() -> dict[str, dict]:
    """{"method/kind": record} from `records_path()`."""
    path = records_path()
    return json.loads(path.read_text()) if path.exists() else {}


def as_record(value):
    """A JSON-able copy of nested dicts of arrays and numbers (floats as lists)."""
    if isinstance(value, dict):
        return {str(k): as_record(v) for k, v in value.items()}
    return np.asarray(value, np.float64).tolist()


def check_or_write(case: str, found: dict) -> None:
    """Compare `found` with the record of `case`; with WMRL_WRITE_UPDATE_RECORDS=1, record it."""
    found = as_record(found)
    records = load_records()
    if os.environ.get(WRITE_ENV) == "1":
        records[case] = found
        records_path().write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
        return
    assert case in records, (
        f"no update record for {case}: run `python -m tests.update_records --write`"
    )
    _compare(records[case], found, case)


def _compare(recorded, found, where: str) -> None:
    if isinstance(recorded, dict):
        assert isinstance(found, dict) and sorted(found) == sorted(recorded), (
            f"{where}: keys {sorted(found)} != recorded {sorted(recorded)}"
        )
        for key in recorded:
            _compare(recorded[key], found[key], f"{where} {key}")
        return
    np.testing.assert_allclose(found, recorded, rtol=RTOL, atol=ATOL, err_msg=where)


def main() -> int:
    import pytest

    if "--write" not in sys.argv[1:]:
        print(__doc__)
        return 2
    os.environ[WRITE_ENV] = "1"
    from tests import conftest  # noqa: F401  (sets the suite's XLA flags, hence the file)

    records_path().unlink(missing_ok=True)
    return pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_agent_contract.py"])


if __name__ == "__main__":
    sys.exit(main())
