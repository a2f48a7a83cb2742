"""Method `model`: the RSSM world model trained alone on a pixel dataset (LEQ_DV3's stage 1).

Each step is one gradient step of the world-model loss (`RssmWorldModel.loss`) on
`rssm.batch_size` windows of `rssm.length` transitions, drawn uniformly among the windows that
stay inside one trajectory (on the device, or on the host for a host replay) and outside the
last `model.holdout_fraction` of the dataset's rows. There is no policy: at evaluation times the
runner logs `report` instead, the open-loop prediction of `model.report_horizon` frames after
`model.report_context` filtered ones on those held-out rows (real | model | difference, as a
video) and its mean squared pixel error.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from agent.config import ConfigError
from agent.protocol import Agent, Context, Spec
from agent.world_model import make_world_model
from agent.world_model.rssm import RssmWorldModel
from agent.world_model.rssm_report import model_report
from agent.world_model.rssm_training import RssmTrainState, init_rssm_training, train_on_windows

PHASE = "model"


class ModelStageAgent(Agent):
    """Trains `world_model.kind: rssm` alone; its state is the model's params and optimiser."""

    device_replay = False
    has_policy = False
    vmaps_seeds = False  # its world model: trained and saved, or cached, per run

    def __init__(self, cfg, spec: Spec, context: Context) -> None:
        super().__init__(cfg, spec, context)
        if cfg.world_model.kind != "rssm":
            raise ConfigError("method 'model' trains an RSSM: set world_model.kind=rssm")
        self.world: RssmWorldModel = make_world_model(cfg, spec, context)
        self.host_loop_chunks = self.world.steps_loop_on_host
        self.batch, self.length = int(cfg.rssm.batch_size), int(cfg.rssm.length)
        self.rows, self._report = model_report(cfg, self.world, context.data_size)

    def init(self, key: jax.Array, spec: Spec) -> RssmTrainState:
        return init_rssm_training(self.world, key)

    def trained_world_model(self, state: RssmTrainState) -> tuple:
        return self.world, state.params

    def phase(self, step: int) -> str:
        return PHASE

    def batch_size(self, phase: str) -> int:
        return self.batch

    def host_batch(self, phase: str, replay: Any, rng: np.random.Generator) -> dict:
        return replay.sample_windows(rng, self.batch, self.length, rows=self.rows)

    def train(self, phase, state: RssmTrainState, replay, key) -> tuple[RssmTrainState, dict]:
        """One world-model gradient step on a batch of windows."""
        return train_on_windows(self.world, state, replay, key, self.batch, self.length, self.rows)

    def policy(self, state, carry, obs, mode, key):
        raise NotImplementedError("method 'model' learns no policy")

    def report(self, state: RssmTrainState, replay: Any, key: jax.Array) -> tuple[dict, dict]:
        """Open-loop predictions on held-out windows: their error and one as a video."""
        return self._report(state.params, replay, key)
