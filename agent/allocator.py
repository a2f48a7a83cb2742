"""glibc's malloc on transparent huge pages for the training process.

XLA:CPU allocates its large temporary buffers afresh on every call, so on Linux a step pays the
page faults of touching them again; backing those blocks by 2 MiB pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, glibc 2.35 or newer) made the pixel world model's
step 1.2-1.3x and online training 1.05-1.3x faster on a 2-core CPU (docs/pixels.md,
docs/methods.md). A tunable is read only when a process starts, so `run.py` and the timing
benchmarks restart themselves once with it; processes they start (a local Ray instance and its
workers) inherit it, while workers of an existing Ray cluster have whatever their node started
them with. `WMRL_HUGE_PAGES=0`, or a GLIBC_TUNABLES that already names the tunable, leaves the
allocator as it is.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "WMRL_HUGE_PAGES"
RESTARTED = "WMRL_HUGE_PAGES_RESTARTED"  # set before the restart: never restart twice


def tunables_with_huge_pages(current: str) -> str | None:
    """GLIBC_TUNABLES `current` with glibc.malloc.hugetlb=1 appended; None if it names it."""
    entries = [entry for entry in current.split(":") if entry]
    if any(entry.split("=", 1)[0] == TUNABLE for entry in entries):
        return None
    return ":".join([*entries, f"{TUNABLE}=1"])


def _glibc_has_the_tunable() -> bool:
    if platform.system() != "Linux":
        return False
    libc, version = platform.libc_ver()
    try:
        return libc == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 35)
    except ValueError:
        return False


def _started_as_script(script: str) -> bool:
    """Whether this interpreter was started as `python [options] script ...` (not from stdin,
    `-c`, an interactive session or a notebook), so the same command line runs it again."""
    if sys.flags.interactive or "IPython" in sys.modules:
        return False
    target = os.path.realpath(script)
    return any(os.path.realpath(arg) == target for arg in sys.orig_argv[1:] if arg != "-")


def restart_with_huge_pages(script: str) -> None:
    """Replace this process by the same command with huge pages on, when `script` (the caller's
    `__file__`) is what this interpreter was started to run; returns when nothing changes."""
    if os.environ.get(OPT_OUT) == "0" or os.environ.get(RESTARTED):
        return
    if not _glibc_has_the_tunable() or not _started_as_script(script):
        return
    tunables = tunables_with_huge_pages(os.environ.get("GLIBC_TUNABLES", ""))
    if tunables is None:
        return
    os.environ["GLIBC_TUNABLES"], os.environ[RESTARTED] = tunables, "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:  # keep running as started
        del os.environ[RESTARTED]
