"""What a run that trains an RSSM reports in place of (or beside) returns.

The last `model.holdout_fraction` of the dataset's rows are held out from world-model training;
at evaluation times `OpenLoopReport` filters `model.report_context` frames of windows drawn
there and predicts `model.report_horizon` more from the actions alone (a random prior head per
step, as imagination does), logging the mean squared pixel error and one window as a
real | model | difference video.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agent import replay as replay_lib
from agent.config import ConfigError
from agent.world_model.rssm import RssmWorldModel, sequence_from_window
from agent.world_model.rssm_training import open_loop, open_loop_error


def holdout_split(data_size: int, fraction: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(training rows, held-out rows) of a dataset: its last `fraction` of rows are held out
    from world-model training, for the open-loop report."""
    cut = data_size - int(round(fraction * data_size))
    return (0, cut), (cut, data_size)


def comparison_video(real: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Frames [T, H, W, C] in [0, 1] side by side: real | model | |difference|, uint8."""
    both = np.concatenate([real, predicted, np.abs(real - predicted)], axis=2)
    return (np.clip(both, 0.0, 1.0) * 255).astype(np.uint8)


class OpenLoopReport:
    """Open-loop predictions on held-out windows of a replay: their error and one as a video.

    `context` frames are filtered, `horizon` frames predicted; windows are drawn inside `rows`."""

    def __init__(self, world: RssmWorldModel, windows: int, context: int, horizon: int, rows):
        self.windows, self.context, self.rows = windows, context, rows
        self.length = context + horizon - 1  # transitions: context + horizon frames
        self._predict = jax.jit(
            lambda params, images, actions, key: open_loop(
                world, params, images, actions, context, key
            )
        )

    def predict(self, params: Any, window: dict, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
        """A window batch [B, length, ...] -> (mean squared pixel error per predicted step
        [horizon], the first window as a real | model | difference video)."""
        seq = sequence_from_window(jax.tree.map(jnp.asarray, window))
        predicted = self._predict(params, seq["images"], seq["actions"], key)
        errors = np.asarray(open_loop_error(predicted, seq["images"], self.context))
        real = np.asarray(seq["images"][0, self.context :], np.float32) / 255.0
        return errors, comparison_video(real, np.asarray(predicted[0]))

    def __call__(self, params: Any, replay: Any, key: jax.Array) -> tuple[dict, dict]:
        sample_key, roll_key = jax.random.split(key)
        if isinstance(replay, replay_lib.HostReplay):
            seed = int(jax.random.randint(sample_key, (), 0, 2**31 - 1))
            rng = np.random.default_rng(seed)
            window = replay.sample_windows(rng, self.windows, self.length, rows=self.rows)
        else:
            window = replay_lib.sample_windows(
                replay, sample_key, self.windows, self.length, rows=self.rows
            )
        errors, video = self.predict(params, window, roll_key)
        scalars = {
            "model/open_loop_mse": float(errors.mean()),
            "model/open_loop_mse_first": float(errors[0]),
            "model/open_loop_mse_last": float(errors[-1]),
        }
        return scalars, {"model/open_loop": video}


def model_report(cfg, world: RssmWorldModel, data_size: int) -> tuple[tuple, OpenLoopReport]:
    """(training rows, the held-out open-loop report) of a run that trains an RSSM."""
    m = cfg.model
    train_rows, held_out = holdout_split(data_size, float(m.holdout_fraction))
    report = OpenLoopReport(
        world, int(m.report_batch), int(m.report_context), int(m.report_horizon), held_out
    )
    if held_out[1] - held_out[0] < report.length:
        raise ConfigError(
            f"model.holdout_fraction={m.holdout_fraction} holds out {held_out[1] - held_out[0]} "
            f"rows, fewer than one report window ({report.length} transitions: "
            "model.report_context + model.report_horizon - 1)"
        )
    return train_rows, report
