"""World models: a common interface and the state-based probabilistic dynamics ensemble."""

from agent.world_model.base import WorldModel
from agent.world_model.ensemble import EnsembleWorldModel, ensemble_step
from agent.world_model.ensemble_config import EnsembleConfig
from agent.world_model.ensemble_net import EnsembleParams

__all__ = [
    "EnsembleConfig",
    "EnsembleParams",
    "EnsembleWorldModel",
    "WorldModel",
    "ensemble_step",
]
