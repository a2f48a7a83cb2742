"""run.py restarts itself once with glibc's malloc on huge pages (agent/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from agent.allocator import tunables_with_huge_pages

ROOT = Path(__file__).resolve().parents[1]


def test_the_tunable_is_added_once_and_a_users_choice_is_kept():
    assert tunables_with_huge_pages("") == "glibc.malloc.hugetlb=1"
    assert (
        tunables_with_huge_pages("glibc.malloc.mmap_threshold=65536")
        == "glibc.malloc.mmap_threshold=65536:glibc.malloc.hugetlb=1"
    )
    assert tunables_with_huge_pages("glibc.malloc.hugetlb=0") is None
    assert tunables_with_huge_pages("a=1:glibc.malloc.hugetlb=1") is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc tunable")
@pytest.mark.parametrize("opt_out", [False, True])
def test_run_py_restarts_with_huge_pages_unless_opted_out(opt_out):
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if opt_out:
        env["WMRL_HUGE_PAGES"] = "0"
    # prints the tunables at each start of the interpreter, then runs run.py as `python run.py`
    code = (
        "import os, runpy, sys; print(os.environ.get('GLIBC_TUNABLES'), flush=True); "
        "sys.argv = ['run.py', '--help']; runpy.run_path('run.py', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    starts = [line for line in done.stdout.splitlines() if line.startswith(("None", "glibc"))]
    assert starts == (["None"] if opt_out else ["None", "glibc.malloc.hugetlb=1"])
