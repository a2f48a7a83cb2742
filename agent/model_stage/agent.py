"""Method `model`: the RSSM world model trained alone on a pixel dataset (LEQ_DV3's stage 1).

Each step is one gradient step of the world-model loss (`RssmWorldModel.loss`) on
`rssm.batch_size` windows of `rssm.length` transitions, drawn uniformly among the windows that
stay inside one trajectory (on the device, or on the host for a host replay). There is no
policy: at evaluation times the runner logs `report` instead, the open-loop prediction of
`model.report_horizon` frames after `model.report_context` filtered ones (real | model |
difference, as a video) and its mean squared pixel error.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agent import replay as replay_lib
from agent.config import ConfigError
from agent.protocol import Agent, Context, Spec
from agent.world_model import make_world_model
from agent.world_model.rssm import RssmWorldModel, sequence_from_window
from agent.world_model.rssm_training import (
    RssmTrainState,
    init_rssm_training,
    open_loop,
    open_loop_error,
    rssm_update,
)

PHASE = "model"


def comparison_video(real: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Frames [T, H, W, C] in [0, 1] side by side: real | model | |difference|, uint8."""
    diff = np.abs(real - predicted)
    both = np.concatenate([real, predicted, diff], axis=2)
    return (np.clip(both, 0.0, 1.0) * 255).astype(np.uint8)


class ModelStageAgent(Agent):
    """Trains `world_model.kind: rssm` alone; its state is the model's params and optimiser."""

    host_loop_chunks = True  # convolutions: see Agent.host_loop_chunks
    device_replay = False
    has_policy = False

    def __init__(self, cfg, spec: Spec, context: Context) -> None:
        super().__init__(cfg, spec, context)
        if cfg.world_model.kind != "rssm":
            raise ConfigError("method 'model' trains an RSSM: set world_model.kind=rssm")
        self.world: RssmWorldModel = make_world_model(cfg, spec, context)
        self.batch, self.length = int(cfg.rssm.batch_size), int(cfg.rssm.length)
        m = cfg.model
        self.report_batch = int(m.report_batch)
        self.context_frames, self.horizon = int(m.report_context), int(m.report_horizon)
        world = self.world
        self._open_loop = jax.jit(
            lambda params, images, actions, key: open_loop(
                world, params, images, actions, self.context_frames, key
            )
        )

    def init(self, key: jax.Array, spec: Spec) -> RssmTrainState:
        return init_rssm_training(self.world, key)

    def trained_world_model(self, state: RssmTrainState) -> tuple:
        return self.world, state.params

    def phase(self, step: int) -> str:
        return PHASE

    def batch_size(self, phase: str) -> int:
        return self.batch

    def host_batch(self, phase: str, replay: Any, rng: np.random.Generator) -> dict:
        return replay.sample_windows(rng, self.batch, self.length)

    def train(self, phase, state: RssmTrainState, replay, key) -> tuple[RssmTrainState, dict]:
        """One world-model gradient step on a batch of windows."""
        sample_key, loss_key = jax.random.split(key)
        window = replay_lib.sample_windows(replay, sample_key, self.batch, self.length)
        state, metrics = rssm_update(self.world, state, window, loss_key)
        return state, {f"model/{k}": v for k, v in metrics.items()}

    def policy(self, state, carry, obs, mode, key):
        raise NotImplementedError("method 'model' learns no policy")

    def report(self, state: RssmTrainState, replay: Any, key: jax.Array) -> tuple[dict, dict]:
        """Open-loop predictions on windows of the replay: their error and one as a video."""
        length = self.context_frames + self.horizon - 1  # transitions: context + horizon frames
        sample_key, roll_key = jax.random.split(key)
        if isinstance(replay, replay_lib.HostReplay):
            seed = int(jax.random.randint(sample_key, (), 0, 2**31 - 1))
            window = replay.sample_windows(np.random.default_rng(seed), self.report_batch, length)
        else:
            window = replay_lib.sample_windows(replay, sample_key, self.report_batch, length)
        seq = sequence_from_window(jax.tree.map(jnp.asarray, window))
        predicted = self._open_loop(state.params, seq["images"], seq["actions"], roll_key)
        errors = np.asarray(open_loop_error(predicted, seq["images"], self.context_frames))
        real = np.asarray(seq["images"][0, self.context_frames :], np.float32) / 255.0
        scalars = {
            "model/open_loop_mse": float(errors.mean()),
            "model/open_loop_mse_first": float(errors[0]),
            "model/open_loop_mse_last": float(errors[-1]),
        }
        return scalars, {"model/open_loop": comparison_video(real, np.asarray(predicted[0]))}
