"""A TensorBoard event file written in the caller's thread.

tensorboardX's `SummaryWriter` writes from a background thread: a write that fails there (a full
disk) prints a traceback from that thread, later writes block on its full queue, and the failure
reaches the run only at `close`. Writing synchronously lets a failed write raise where it happens,
so the run can name it in one line. The events are the same protocol buffers TensorBoard reads.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import image, scalar


class EventsFile:
    """Scalars and images appended to one event file in `folder`, flushed on `flush()`.

    `purge_step`: on resume, TensorBoard drops the events of earlier files at steps >= it (those
    written after the checkpoint the run resumed from).
    """

    def __init__(self, folder: Path, purge_step: int | None = None):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(folder / "events"))
        if purge_step:
            self._write(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self._closed = False

    def _write(self, event: Event) -> None:
        event.wall_time = time.time()
        self._writer.write_event(event)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._write(Event(step=step, summary=scalar(tag, float(value))))

    def image(self, tag: str, frame: np.ndarray, step: int) -> None:
        """One uint8 image [H, W, C]."""
        self._write(Event(step=step, summary=image(tag, frame, dataformats="HWC")))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        """Flush and close; closing again does nothing."""
        if not self._closed:
            self._closed = True
            self._writer.close()
