"""Ctrl-C (and `kill`) held back over a critical section: `with InterruptLatch() as latch: ...`.

The online loop's chunk consumes the replay it is given (the replay write donates its buffer,
so that adding 50 rows to a 1M-row replay does not copy it), so between that write and the end
of the chunk there is no consistent state to save. The latch records a SIGINT that arrives in
that window instead of raising it; the loop finishes the chunk, then saves and stops.

`terminate_as_interrupt()` makes SIGTERM (a plain `kill`, or a job scheduler stopping the run)
act like Ctrl-C, so a run started in the background, where the shell ignores SIGINT, can still be
stopped with its work saved.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class InterruptLatch:
    """Records SIGINT / SIGTERM inside the `with` block (main thread only); `pending` says
    whether one came. Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: dict[int, object] = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True

    def __enter__(self) -> InterruptLatch:
        if _in_main_thread():
            # A signal the process ignores (SIGINT under nohup / `&`) stays ignored.
            wanted = [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
            self._previous = {s: signal.signal(s, self._record) for s in wanted}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt from now on (main thread only), as Ctrl-C does."""
    if _in_main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
