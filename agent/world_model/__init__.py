"""World models behind one protocol (`agent.protocol.WorldModel`); `world_model.kind` picks one."""

from __future__ import annotations

from agent.world_model.ensemble import EnsembleWorldModel, ensemble_step
from agent.world_model.ensemble_config import EnsembleConfig, ensemble_config
from agent.world_model.ensemble_net import EnsembleParams

KINDS = ("ensemble",)

__all__ = [
    "KINDS",
    "EnsembleConfig",
    "EnsembleParams",
    "EnsembleWorldModel",
    "ensemble_config",
    "ensemble_step",
    "make_world_model",
]


def make_world_model(cfg, spec, context) -> EnsembleWorldModel:
    """The world model named by `cfg.world_model.kind`, for a task's spec and data context."""
    kind = cfg.world_model.kind
    if kind == "ensemble":
        if list(spec.obs) != ["state"]:
            raise ValueError(
                f"world_model.kind=ensemble needs state observations, got fields {list(spec.obs)}"
            )
        return EnsembleWorldModel(
            spec.obs["state"].shape[0],
            spec.act_dim,
            ensemble_config(cfg.world_model),
            context.termination_fn,
            context.reward_scale,
            context.reward_bias,
        )
    raise ValueError(f"world_model.kind='{kind}' is not one of: {', '.join(KINDS)}")
