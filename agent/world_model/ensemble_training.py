"""Training of the dynamics ensemble (§2.1): holdout split, bootstrap, early stop, elites.

One epoch (all minibatch steps, validation and snapshotting) is a single jitted call; the Python
loop only decides when to stop. Jitted functions are module-level with the config as a static
argument, so every model with the same config and data size reuses the same compiled code.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent.optimizers import apply_updates
from agent.protocol import FitEpoch
from agent.world_model.ensemble_config import EnsembleConfig
from agent.world_model.ensemble_net import (
    EnsembleParams,
    Net,
    ensemble_loss,
    init_net,
    member_mse,
)
from agent.world_model.scaler import apply_scaler, fit_scaler


class DataSplit(NamedTuple):
    """Normalised inputs z = scaler([s, a]) and raw targets y = [s' - s, r_raw]."""

    train_z: jax.Array  # [T, in]
    train_y: jax.Array  # [T, D]
    hold_z: jax.Array  # [H, in]
    hold_y: jax.Array  # [H, D]


class TrainState(NamedTuple):
    net: Net
    opt_state: optax.OptState
    best_layers: list  # per-member snapshots of net["layers"]
    best_mse: jax.Array  # [M] best holdout MSE so far (inf before the first epoch)
    boot_idx: jax.Array  # int32 [M, T] bootstrap indices into the train split


def inputs_and_targets(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """x = [s, a]; y = [s' - s, r_raw] with r_raw = (r - reward_bias) / reward_scale.

    data: an `OfflineData` (any object with those arrays and the reward affine map)."""
    if data.reward_scale == 0:
        raise ValueError("OfflineData.reward_scale is 0: raw rewards cannot be recovered")
    raw_reward = (data.rewards - data.reward_bias) / data.reward_scale
    x = np.concatenate([data.observations, data.actions], axis=-1)
    y = np.concatenate([data.next_observations - data.observations, raw_reward[:, None]], axis=-1)
    return x.astype(np.float32), y.astype(np.float32)


def holdout_size(n: int, config: EnsembleConfig) -> int:
    """min(int(fraction * n), holdout_max)."""
    return min(int(n * config.holdout_fraction), config.holdout_max)


def split_data(x: np.ndarray, y: np.ndarray, key: jax.Array, config: EnsembleConfig):
    """Random holdout split; the scaler is fitted on the train part. -> (DataSplit, mean, std)."""
    n = len(x)
    n_hold = holdout_size(n, config)
    if n_hold < 1 or n - n_hold < 1:
        raise ValueError(f"need more transitions to train a world model, got {n}")
    perm = np.asarray(jax.random.permutation(key, n))
    train, hold = perm[n_hold:], perm[:n_hold]
    mean, std = fit_scaler(x[train])
    split = DataSplit(
        train_z=jnp.asarray(apply_scaler(x[train], mean, std)),
        train_y=jnp.asarray(y[train]),
        hold_z=jnp.asarray(apply_scaler(x[hold], mean, std)),
        hold_y=jnp.asarray(y[hold]),
    )
    return split, mean, std


def make_optimizer(config: EnsembleConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


def init_train_state(
    key: jax.Array, in_dim: int, out_dim: int, train_size: int, config: EnsembleConfig
) -> TrainState:
    net_key, boot_key = jax.random.split(key)
    net = init_net(net_key, in_dim, out_dim, config)
    boot_idx = jax.random.randint(boot_key, (config.num_members, train_size), 0, train_size)
    return TrainState(
        net=net,
        opt_state=make_optimizer(config).init(net),
        best_layers=jax.tree_util.tree_map(jnp.copy, net["layers"]),
        best_mse=jnp.full((config.num_members,), jnp.inf, jnp.float32),
        boot_idx=boot_idx,
    )


def shuffle_rows(key: jax.Array, idx: jax.Array) -> jax.Array:
    """Independently permute every row of idx [M, T]."""
    keys = jax.random.split(key, idx.shape[0])
    return jax.vmap(jax.random.permutation)(keys, idx)


def epoch_batches(idx: jax.Array, batch_size: int) -> jax.Array:
    """idx [M, T] -> [S, M, batch] with S = ceil(T / batch); the last batch wraps to the start."""
    m, t = idx.shape
    steps = -(-t // batch_size)
    cols = jnp.arange(steps * batch_size) % t
    return idx[:, cols].reshape(m, steps, batch_size).transpose(1, 0, 2)


def improved_members(best: jax.Array, new: jax.Array, threshold: float) -> jax.Array:
    """(best - new) / best > threshold, per member (true on the first epoch, false for NaN)."""
    return new < best * (1.0 - threshold)


def select_elites(mse: np.ndarray, num_elites: int) -> np.ndarray:
    """Indices of the num_elites lowest holdout MSEs, best first."""
    return np.argsort(np.asarray(mse), kind="stable")[:num_elites].astype(np.int32)


def _snapshot(improved: jax.Array, new: list, best: list) -> list:
    def pick(n, b):
        mask = improved.reshape((-1,) + (1,) * (n.ndim - 1))
        return jnp.where(mask, n, b)

    return jax.tree_util.tree_map(pick, new, best)


@functools.partial(jax.jit, static_argnames="config")
def train_epoch(
    state: TrainState, data: DataSplit, key: jax.Array, config: EnsembleConfig
) -> tuple[TrainState, dict]:
    """Re-shuffle the bootstrap rows, one pass of minibatch Adam steps (lax.scan), validate,
    snapshot members whose holdout MSE improved by > threshold relative."""
    optimizer = make_optimizer(config)
    boot_idx = shuffle_rows(key, state.boot_idx)

    def sgd_step(carry, idx):  # idx [M, B]
        net, opt_state = carry
        grads, info = jax.grad(ensemble_loss, has_aux=True)(
            net, data.train_z[idx], data.train_y[idx], config
        )
        net, opt_state, norm = apply_updates(optimizer, net, opt_state, grads)
        return (net, opt_state), (info["loss"], norm)

    (net, opt_state), (losses, norms) = jax.lax.scan(
        sgd_step, (state.net, state.opt_state), epoch_batches(boot_idx, config.batch_size)
    )
    mse = member_mse(net, data.hold_z, data.hold_y)
    improved = improved_members(state.best_mse, mse, config.improvement_threshold)
    new_state = TrainState(
        net=net,
        opt_state=opt_state,
        best_layers=_snapshot(improved, net["layers"], state.best_layers),
        best_mse=jnp.where(improved, mse, state.best_mse),
        boot_idx=boot_idx,
    )
    metrics = {"train_loss": jnp.mean(losses), "grad_norm": jnp.mean(norms)}
    return new_state, {**metrics, "holdout_mse": mse, "improved": improved}


def _epoch_log(metrics: dict, best_mse: np.ndarray, since: int, dt: float, n_elites: int) -> dict:
    out = {
        "train_loss": float(metrics["train_loss"]),
        "grad_norm": float(metrics["grad_norm"]),
        "holdout_mse/elite_mean": float(np.sort(best_mse)[:n_elites].mean()),
        "improved_members": int(np.sum(metrics["improved"])),
        "epochs_since_improvement": since,
        "epoch_time_s": dt,
    }
    for k, v in enumerate(metrics["holdout_mse"]):
        out[f"holdout_mse/member_{k}"] = float(v)
    return out


def _fit_summary(best_mse: np.ndarray, elites: np.ndarray) -> str:
    """The holdout error of the elites and who they are, in words."""
    members = " ".join(str(int(e)) for e in sorted(elites))
    return f"holdout mse {float(best_mse[elites].mean()):.4g} (elite mean), elites [{members}]"


def _epoch_progress(
    epoch: int, since: int, metrics: dict, best_mse: np.ndarray, config: EnsembleConfig
) -> FitEpoch:
    """Where the fit stands after `epoch`: at least `patience - since` more epochs (early
    stopping needs that many without improvement), at most up to `max_epochs`."""
    improved = int(np.sum(metrics["improved"]))
    summary = (
        f"{_fit_summary(best_mse, select_elites(best_mse, config.num_elites))}, "
        f"{improved}/{len(best_mse)} members improved"
    )
    most = None if config.max_epochs is None else max(0, config.max_epochs - epoch)
    least = max(0, config.patience - since)
    if most is not None:
        least = min(least, most)
    return FitEpoch(epoch, summary, least, most)


def fit_ensemble(
    x: np.ndarray,
    y: np.ndarray,
    key: jax.Array,
    config: EnsembleConfig,
    log: Callable | None = None,
    progress: Callable[[FitEpoch], None] | None = None,
) -> EnsembleParams:
    """Train until no member improved for `patience` epochs (or `max_epochs`), restore each
    member's best snapshot and pick the elites. x: [N, in] raw inputs, y: [N, D] raw targets.

    log(epoch, metrics) gets one call per epoch and a final call with "elites" (a tuple of ints);
    progress gets a `FitEpoch` per epoch (holdout error, current elites, epochs left) and a last
    one when the fit ends.
    """
    split_key, init_key, epoch_key = jax.random.split(key, 3)
    data, mean, std = split_data(x, y, split_key, config)
    state = init_train_state(init_key, x.shape[1], y.shape[1], len(data.train_z), config)
    epoch, since = 0, 0
    while True:
        epoch += 1
        t0 = time.perf_counter()
        state, metrics = train_epoch(state, data, jax.random.fold_in(epoch_key, epoch), config)
        metrics = jax.device_get(metrics)
        since = 0 if metrics["improved"].any() else since + 1
        if log is not None:
            best = np.asarray(state.best_mse)
            dt = time.perf_counter() - t0
            log(epoch, _epoch_log(metrics, best, since, dt, config.num_elites))
        if progress is not None:
            progress(_epoch_progress(epoch, since, metrics, np.asarray(state.best_mse), config))
        if since >= config.patience or (
            config.max_epochs is not None and epoch >= config.max_epochs
        ):
            break
    best_mse = np.asarray(state.best_mse)
    elites = select_elites(best_mse, config.num_elites)
    if progress is not None:
        summary = _fit_summary(best_mse, elites)
        progress(FitEpoch(epoch, summary, least_left=0, most_left=0, done=True))
    if log is not None:
        log(
            epoch,
            {
                "elites": tuple(int(e) for e in elites),
                "holdout_mse/elite_mean": float(best_mse[elites].mean()),
                "epochs": epoch,
            },
        )
    net = {**state.net, "layers": state.best_layers}
    return EnsembleParams(net, jnp.asarray(mean), jnp.asarray(std), jnp.asarray(elites))
