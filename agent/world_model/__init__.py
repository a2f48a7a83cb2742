"""World models behind one protocol (`agent.protocol.WorldModel`); `world_model.kind` picks one."""

from __future__ import annotations

from agent.world_model.ensemble import EnsembleWorldModel, ensemble_step
from agent.world_model.ensemble_config import EnsembleConfig, ensemble_config
from agent.world_model.ensemble_net import EnsembleParams
from agent.world_model.rssm import RssmWorldModel
from agent.world_model.rssm_config import RssmConfig, rssm_config

KINDS = ("ensemble", "rssm")

__all__ = [
    "KINDS",
    "EnsembleConfig",
    "EnsembleParams",
    "EnsembleWorldModel",
    "RssmConfig",
    "RssmWorldModel",
    "ensemble_config",
    "ensemble_step",
    "make_world_model",
    "rssm_config",
]


def make_world_model(cfg, spec, context) -> EnsembleWorldModel | RssmWorldModel:
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
    if kind == "rssm":
        image = spec.obs.get("image")
        if image is None or len(image.shape) != 3:
            raise ValueError(
                f"world_model.kind=rssm needs an 'image' observation, got fields {list(spec.obs)}"
            )
        return RssmWorldModel(rssm_config(cfg.rssm), spec.act_dim, tuple(image.shape))
    raise ValueError(f"world_model.kind='{kind}' is not one of: {', '.join(KINDS)}")
