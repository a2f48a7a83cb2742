"""run.py and the timing benchmarks restart once with glibc's malloc on huge pages
(agent/allocator.py)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.allocator import _glibc_has_the_tunable, tunables_with_huge_pages

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
print(os.environ.get("GLIBC_TUNABLES"), flush=True)
from agent.allocator import restart_with_huge_pages
restart_with_huge_pages(__file__)
print("ran", flush=True)
"""


def test_the_tunable_is_added_once_and_a_users_choice_is_kept():
    assert tunables_with_huge_pages("") == "glibc.malloc.hugetlb=1"
    assert (
        tunables_with_huge_pages("glibc.malloc.mmap_threshold=65536")
        == "glibc.malloc.mmap_threshold=65536:glibc.malloc.hugetlb=1"
    )
    assert tunables_with_huge_pages("glibc.malloc.hugetlb=0") is None
    assert tunables_with_huge_pages("a=1:glibc.malloc.hugetlb=1") is None


def _starts(tmp_path: Path, how: str, **env_vars: str) -> list[str]:
    """The lines a script printed: GLIBC_TUNABLES at each start of Python, then "ran"."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    drop = ("GLIBC_TUNABLES", "WMRL_HUGE_PAGES", "WMRL_HUGE_PAGES_RESTARTED")
    env = {k: v for k, v in os.environ.items() if k not in drop} | env_vars
    command, stdin = ([sys.executable, "-"], SCRIPT) if how == "stdin" else (
        [sys.executable, str(script)], None)  # fmt: skip
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(not _glibc_has_the_tunable(), reason="needs glibc 2.35+ on Linux")
def test_a_script_restarts_once_with_huge_pages(tmp_path):
    assert _starts(tmp_path, "file") == ["None", "glibc.malloc.hugetlb=1", "ran"]


def test_no_restart_when_opted_out_or_when_the_command_cannot_rerun_it(tmp_path):
    assert _starts(tmp_path, "file", WMRL_HUGE_PAGES="0") == ["None", "ran"]
    assert _starts(tmp_path, "stdin") == ["None", "ran"]  # stdin is spent: not rerun


def test_run_py_restarts_before_anything_else():
    tree = ast.parse((ROOT / "run.py").read_text())
    main = next(node for node in tree.body if isinstance(node, ast.If))
    first = main.body[0].value
    assert ast.unparse(main.test) == "__name__ == '__main__'"
    assert ast.unparse(first) == "restart_with_huge_pages(__file__)"
