"""Where a compiled XLA program spends its time: a jax.profiler trace, summed per op kind.

`op_time_shares(run, calls, trace_dir)` traces `calls` calls of `run()` and returns the share of
the summed op time per kind of XLA op (matrix products, element-wise fusions, sorts and
gathers, loops and copies) and the ops that took longest. The op times come from the trace's
per-thunk events; ops that run concurrently on different cores each count in full, so shares,
not seconds, are the figure to read.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path

import jax

_KINDS = (
    ("matmul", re.compile(r"^(ynn_fusion|xnn_fusion|dot|convolution|custom-call)")),
    ("sort_gather_scatter", re.compile(r"(sort|gather|scatter)")),
    ("loops_and_copies", re.compile(r"^(while|copy|conditional|call)")),
)
_NOT_OPS = ("ThunkExecutor", "$", "Slinky", "PjitFunction", "CommonPjRt", "end: ")


def _kind(name: str) -> str:
    for kind, pattern in _KINDS:
        if pattern.search(name):
            return kind
    return "elementwise_and_reductions"


def _op_events(trace_dir: Path) -> list[dict]:
    files = sorted(trace_dir.glob("**/*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    events = json.loads(gzip.decompress(files[-1].read_bytes()))["traceEvents"]
    return [e for e in events if e.get("ph") == "X" and not e.get("name", "").startswith(_NOT_OPS)]


def op_time_shares(run: Callable[[], object], calls: int, trace_dir: Path, top: int = 8) -> dict:
    """Trace `calls` calls of `run` (already compiled and warm) into `trace_dir`; -> shares of
    the op time per kind and the `top` ops by time (name without its number, share, count)."""
    jax.profiler.start_trace(str(trace_dir))
    try:
        for _ in range(calls):
            jax.block_until_ready(run())
    finally:
        jax.profiler.stop_trace()
    per_kind, per_op, count = collections.Counter(), collections.Counter(), collections.Counter()
    for event in _op_events(trace_dir):
        name = re.sub(r"\.\d+$", "", event["name"])
        per_kind[_kind(name)] += event.get("dur", 0)
        per_op[name] += event.get("dur", 0)
        count[name] += 1
    total = sum(per_kind.values())
    if not total:
        return {"error": "the trace held no op events"}
    return {
        "op_time_share": {k: round(v / total, 3) for k, v in per_kind.most_common()},
        "top_ops": [
            {"op": name, "share": round(t / total, 3), "count": count[name]}
            for name, t in per_op.most_common(top)
        ],
    }
