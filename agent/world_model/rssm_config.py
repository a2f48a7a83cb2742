"""Hyper-parameters of the RSSM world model, from the `rssm:` config section.

The defaults are sized for this 2-core CPU; `configs/rssm_dmc_vision.yaml` holds LEQ_DV3's
`dmc_vision` sizes for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How the networks are written as XLA programs; both compute the same function (to float
# rounding), so a run resumes and a saved model loads across a change (config.SPEED_SETTINGS).
# fast: convolutions differentiated in XLA:CPU's fast forms (world_model/conv.py), and the
# posterior's embedding projection and the prior heads computed outside the filter's scan;
# plain: hk.Conv2D as XLA differentiates it, everything per step inside the scan.
FORMULATIONS = ("fast", "plain")


@dataclass(frozen=True)
class RssmConfig:
    """Immutable and hashable, so it can be a static argument of jitted functions.

    deter: GRU state size; hidden: width of every MLP layer; stoch x classes: the categorical
    latent; prior_heads: K prior heads sharing GRU and posterior; cnn_depth: channels of the
    first convolution (doubling per stage, at most 8x); unimix: uniform mixture of the
    categoricals; free_nats / dyn_scale / rep_scale: KL balancing; cont_horizon: the continue
    head's soft label is cont * (1 - 1 / cont_horizon) (the discount folded into it);
    batch x length: sequence windows per update; formulation: how the same function is
    computed (FORMULATIONS; a speed setting, not part of `file_config`).
    """

    deter: int = 256
    hidden: int = 256
    stoch: int = 32
    classes: int = 16
    prior_heads: int = 7
    cnn_depth: int = 16
    unimix: float = 0.01
    free_nats: float = 1.0
    dyn_scale: float = 1.0
    rep_scale: float = 0.1
    image_scale: float = 1.0
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    cont_horizon: float = 333.0
    reward_bins: int = 255
    lr: float = 3e-4
    grad_clip: float = 100.0
    batch_size: int = 16
    length: int = 64
    formulation: str = "fast"

    def __post_init__(self) -> None:
        for name in ("deter", "hidden", "stoch", "classes", "prior_heads", "cnn_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.unimix < 1.0:
            raise ValueError(f"unimix must be in [0, 1), got {self.unimix}")
        if self.cont_horizon < 1.0:
            raise ValueError(f"cont_horizon must be >= 1, got {self.cont_horizon}")
        if self.length < 2:
            raise ValueError(f"length must be >= 2 (a window of transitions), got {self.length}")
        if self.formulation not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {FORMULATIONS}, got {self.formulation!r}")

    @property
    def fast(self) -> bool:
        """Whether the networks use the fast formulation."""
        return self.formulation == "fast"

    @property
    def feature_dim(self) -> int:
        """Size of feature = concat(h, flat z)."""
        return self.deter + self.stoch * self.classes

    def file_config(self) -> dict:
        """The sizes a saved model must match to be reused."""
        keys = ("deter", "hidden", "stoch", "classes", "prior_heads", "cnn_depth", "reward_bins")
        return {k: int(getattr(self, k)) for k in keys}


def rssm_config(section: Any) -> RssmConfig:
    """An RssmConfig from the `rssm:` config section (every field by its name)."""
    fields = RssmConfig.__dataclass_fields__
    return RssmConfig(**{name: getattr(section, name) for name in fields})
