"""Per-dimension standardisation of network inputs (StandardScaler)."""

from __future__ import annotations

import jax
import numpy as np

from agent.observations import normalize

MIN_STD = 1e-12


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean and std over axis 0 (population std); a std below 1e-12 is replaced by 1."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std < MIN_STD, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def apply_scaler(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """z = (x - mean) / std (works on numpy and jax arrays)."""
    return normalize(x, mean, std)
