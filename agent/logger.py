"""One logging stack: a progress bar, `metrics.jsonl`, TensorBoard scalars and evaluation videos.

Scalars are slash-namespaced (`train/...`, `eval/return`, `eval/normalized_score`). Videos go to
TensorBoard as an image grid (tensorboardX's `add_video` silently needs moviepy) and to
`LOGDIR/videos/<step>.gif` for a quick look without TensorBoard.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from agent.events_file import EventsFile
from agent.failures import json_safe, reported_write

# Metrics worth seeing on the progress bar, in order of preference.
BAR_KEYS = ("eval/normalized_score", "eval/return", "train/loss", "train/actor_loss")


def _scalar(value) -> float:
    return float(np.asarray(value))


def image_grid(frames: np.ndarray, columns: int = 8) -> np.ndarray:
    """Tile frames [T, H, W, C] into one image [rows*H, columns*W, C] (missing tiles black)."""
    count, height, width, channels = frames.shape
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * height, columns * width, channels), frames.dtype)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = frame
    return grid


class MetricStream:
    """A secondary series with its own x axis (e.g. world-model epochs): `LOGDIR/<name>.jsonl`
    and TensorBoard scalars under `<name>/...` in `LOGDIR/tb/<name>`."""

    def __init__(self, logdir: Path, name: str):
        self.name = name
        self._path, self._tb_path = Path(logdir) / f"{name}.jsonl", Path(logdir) / "tb" / name
        with reported_write(self._tb_path):
            self._writer = EventsFile(self._tb_path)

    def __call__(self, step: int, metrics: Mapping) -> None:
        """Record `metrics` at `step`; lists and tuples (e.g. elite indices) go to JSON only."""
        record = {
            k: (list(v) if isinstance(v, list | tuple) else _scalar(v)) for k, v in metrics.items()
        }
        with reported_write(self._path), self._path.open("a") as handle:
            handle.write(json.dumps(json_safe({"step": step, **record})) + "\n")
        with reported_write(self._tb_path):
            for key, value in record.items():
                if not isinstance(value, list) and math.isfinite(value):
                    self._writer.scalar(f"{self.name}/{key}", value, step)
            self._writer.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write was already reported
            self._writer.close()


class Logger:
    """Writes every metric to the JSONL file and TensorBoard; shows a few on the progress bar."""

    def __init__(self, logdir: Path, total_steps: int, initial_step: int = 0, quiet: bool = False):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._jsonl_path, self._tb_path = self.logdir / "metrics.jsonl", self.logdir / "tb"
        with reported_write(self._jsonl_path):
            self._jsonl = self._jsonl_path.open("a")
        with reported_write(self._tb_path):
            self._writer = EventsFile(self._tb_path, purge_step=initial_step or None)
        # A live bar on a terminal; plain progress lines (with ETA) when output goes to a file.
        self._plain = not quiet and not sys.stdout.isatty()
        self._bar = tqdm(
            total=total_steps,
            initial=initial_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=quiet or self._plain,
            file=sys.stdout,
            # no tqdm estimate of the time left: one rate over phases of other speeds misleads
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )
        self._shown: dict[str, float] = {}
        self._total, self._start_step, self._start_time = total_steps, initial_step, time.time()
        self._last_plain = initial_step

    def scalars(self, step: int, metrics: Mapping) -> None:
        """Record a dict of scalars at `step`."""
        values = {k: _scalar(v) for k, v in metrics.items()}
        with reported_write(self._jsonl_path):
            self._jsonl.write(json.dumps(json_safe({"step": step, **values})) + "\n")
            self._jsonl.flush()
        with reported_write(self._tb_path):
            for key, value in values.items():
                if math.isfinite(value):  # TensorBoard warns on each NaN; the JSONL keeps it
                    self._writer.scalar(key, value, step)
            self._writer.flush()
        for key in BAR_KEYS:
            if key in values:
                self._shown[key.split("/", 1)[1]] = round(values[key], 3)
        self._bar.set_postfix(self._shown, refresh=False)

    def video(self, step: int, frames: np.ndarray, name: str = "eval/video") -> None:
        """Record an episode's frames [T, H, W, 3] uint8 as a grid image and a GIF file."""
        if len(frames) == 0:
            return
        stride = max(1, len(frames) // 32)  # at most 32 tiles in the grid
        grid = image_grid(frames[::stride])
        with reported_write(self._tb_path):
            self._writer.image(name, grid, step)
            self._writer.flush()
        prefix = "" if name == "eval/video" else name.replace("/", "_") + "_"
        with reported_write(self.logdir / "videos"):
            self._write_gif(step, frames, prefix)

    def _write_gif(self, step: int, frames: np.ndarray, prefix: str = "") -> None:
        from PIL import Image

        folder = self.logdir / "videos"
        folder.mkdir(exist_ok=True)
        images = [Image.fromarray(f) for f in frames[:: max(1, len(frames) // 200)]]
        tmp = folder / f".{prefix}{step:09d}.gif.tmp"
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=40)
        tmp.replace(folder / f"{prefix}{step:09d}.gif")

    def advance(self, step: int, eta: str | None = None) -> None:
        """Move the progress bar to `step` (plain mode: a line every 10 % of the run). `eta`:
        the time left in words (default: elapsed time per step so far times the steps left)."""
        if eta is not None:
            self._bar.set_postfix({**self._shown, "eta": eta}, refresh=False)
        self._bar.update(step - self._bar.n)
        if self._plain and (step - self._last_plain >= self._total / 10 or step == self._total):
            self._last_plain = step
            print(self._progress_line(step, eta), flush=True)

    def _progress_line(self, step: int, eta: str | None = None) -> str:
        if eta is None:
            elapsed = time.time() - self._start_time
            done = step - self._start_step
            eta = f"{elapsed / done * (self._total - step):.0f}s" if done else "?"
        shown = " ".join(f"{k}={v}" for k, v in self._shown.items())
        percent = 100 * step / self._total
        return f"step {step}/{self._total} ({percent:.0f}%) {shown} eta {eta}"

    def message(self, text: str) -> None:
        """Print a line without breaking the progress bar."""
        if self._plain:
            print(text, flush=True)
        else:
            self._bar.write(text, file=sys.stdout)

    def close(self) -> None:
        """Close the files; a write that fails here was already reported, so it stays quiet."""
        self._bar.close()
        with contextlib.suppress(OSError):
            self._writer.close()
        with contextlib.suppress(OSError):
            self._jsonl.close()
