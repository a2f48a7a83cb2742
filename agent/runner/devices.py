"""`train.shard`: how a run spreads over the local devices (a 1-D jax mesh).

    none    one device (the default)
    batch   data parallel for one seed: parameters and dataset replicated on every device,
            each batch the agents sample split along its batch axis (replay.sharded_batches),
            so XLA computes every gradient piecewise and sums it across devices
    seeds   with train.seeds > 1 (runner/seeds.py): the seed axis of the stacked state split
            over the devices, the dataset replicated

On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N (or `jax.host_device_count: N`
before JAX starts) gives N devices to test with.
"""

from __future__ import annotations

import jax
import numpy as np

from agent.config import Config, ConfigError

SHARDS = ("none", "batch", "seeds")


def check_shard(cfg: Config) -> None:
    if cfg.train.shard not in SHARDS:
        raise ConfigError(f"train.shard='{cfg.train.shard}' is not one of: {', '.join(SHARDS)}")
    if cfg.train.shard == "batch" and cfg.train.seeds > 1:
        raise ConfigError(
            "train.shard=batch splits one seed's batches; with train.seeds > 1 use "
            "train.shard=seeds"
        )


def mesh_shardings(axis: str) -> tuple[jax.sharding.NamedSharding, jax.sharding.NamedSharding]:
    """(split along the leading axis, replicated) over a mesh of every local device."""
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (axis,))
    spec = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(mesh, spec(axis)), jax.sharding.NamedSharding(mesh, spec())


def seed_shardings(cfg: Config):
    """(stacked, replicated) shardings for train.shard=seeds, else (None, None)."""
    check_shard(cfg)
    if cfg.train.shard != "seeds":
        return None, None
    devices = jax.local_device_count()
    if cfg.train.seeds % devices:
        raise ConfigError(
            f"train.shard=seeds: train.seeds={cfg.train.seeds} must be a multiple of the "
            f"{devices} local devices"
        )
    return mesh_shardings("seeds")


def batch_shardings(cfg: Config):
    """(batch, replicated) shardings for train.shard=batch, else (None, None)."""
    check_shard(cfg)
    if cfg.train.shard != "batch":
        return None, None
    return mesh_shardings("batch")
