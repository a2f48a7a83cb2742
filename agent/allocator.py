"""glibc's malloc on transparent huge pages for the training process.

XLA:CPU allocates its large temporary buffers afresh on every call, so on Linux a step pays the
page faults of touching them again; backing those blocks by 2 MiB pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) made the pixel world model's step about 1.2x faster
(docs/pixels.md). A tunable is read only when the process starts, so `run.py` and
benchmarks/rssm.py restart themselves once with it. `WMRL_HUGE_PAGES=0`, or a GLIBC_TUNABLES
that already names the tunable, leaves the allocator as it is.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "WMRL_HUGE_PAGES"


def tunables_with_huge_pages(current: str) -> str | None:
    """GLIBC_TUNABLES `current` with glibc.malloc.hugetlb=1 appended; None if it names it."""
    entries = [entry for entry in current.split(":") if entry]
    if any(entry.split("=", 1)[0] == TUNABLE for entry in entries):
        return None
    return ":".join([*entries, f"{TUNABLE}=1"])


def restart_with_huge_pages() -> None:
    """Replace this process by the same command with huge pages on (Linux with glibc only;
    returns when nothing needs to change)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    if os.environ.get(OPT_OUT) == "0":
        return
    tunables = tunables_with_huge_pages(os.environ.get("GLIBC_TUNABLES", ""))
    if tunables is None:
        return
    os.environ["GLIBC_TUNABLES"] = tunables
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)
