"""Hyper-parameters of the probabilistic dynamics ensemble (defaults: the official code's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ELITE_SAMPLING_MODES = ("iid", "balanced")


@dataclass(frozen=True)
class EnsembleConfig:
    """Immutable and hashable, so it can be a static argument of jitted functions.

    elite_sampling: "iid" draws one elite uniformly and independently for every batch element
    (the spec; costs num_elites member evaluations per step). "balanced" randomly permutes the
    batch and splits it evenly over the elites (each element still gets a uniformly random elite,
    but the assignments are not independent); it costs about one member evaluation per step.
    """

    num_members: int = 7
    num_elites: int = 5
    hidden_sizes: tuple[int, ...] = (200, 200, 200, 200)
    weight_decays: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # hidden..., output
    learning_rate: float = 1e-3
    batch_size: int = 256
    holdout_fraction: float = 0.2
    holdout_max: int = 1000
    max_epochs: int | None = None  # None: train until early stop
    patience: int = 5  # epochs without any member improving
    improvement_threshold: float = 0.01  # relative holdout-MSE improvement that counts
    logvar_bound_coef: float = 0.01
    max_logvar_init: float = 0.5
    min_logvar_init: float = -10.0
    elite_sampling: str = "iid"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        object.__setattr__(self, "weight_decays", tuple(float(w) for w in self.weight_decays))
        if len(self.weight_decays) != len(self.hidden_sizes) + 1:
            raise ValueError(
                f"weight_decays needs {len(self.hidden_sizes) + 1} entries (one per hidden layer "
                f"plus the output layer), got {len(self.weight_decays)}"
            )
        if not 0 < self.num_elites <= self.num_members:
            raise ValueError(f"need 0 < num_elites <= num_members, got {self}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs must be None or >= 1, got {self.max_epochs}")
        if self.elite_sampling not in ELITE_SAMPLING_MODES:
            raise ValueError(f"elite_sampling must be one of {ELITE_SAMPLING_MODES}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EnsembleConfig:
        """Build from a (YAML) mapping; unknown keys raise KeyError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"unknown world-model config keys: {unknown}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def ensemble_config(section: Any) -> EnsembleConfig:
    """The `world_model` config section as an EnsembleConfig (ValueError on a bad combination)."""
    return EnsembleConfig(
        num_members=section.members,
        num_elites=section.elites,
        hidden_sizes=tuple(section.hidden),
        weight_decays=tuple(section.weight_decays),
        learning_rate=section.lr,
        batch_size=section.batch_size,
        holdout_fraction=section.holdout_fraction,
        holdout_max=section.holdout_max,
        max_epochs=section.max_epochs,
        patience=section.patience,
        elite_sampling=section.elite_sampling,
    )
