"""The `jax` config section: platform, NaN debugging, host device count."""

from __future__ import annotations

import os
import re

import jax

from agent.config import ConfigError

PLATFORMS = ("auto", "cpu", "gpu", "tpu")
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def configure_jax(section) -> None:
    """Apply `jax.platform`, `jax.debug_nans` and `jax.host_device_count`.

    The platform and host device count only take effect before JAX starts its backend (the first
    computation); asking for a different device count later is an error, not a silent no-op.
    """
    if section.platform not in PLATFORMS:
        raise ConfigError(
            f"jax.platform='{section.platform}' is not one of: {', '.join(PLATFORMS)}"
        )
    jax.config.update("jax_debug_nans", bool(section.debug_nans))
    count = int(section.host_device_count)
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and f"{_DEVICE_FLAG}={count}" not in flags:
        flags = re.sub(rf"{_DEVICE_FLAG}=\d+", "", flags)
        os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()
    if section.platform != "auto":
        jax.config.update("jax_platforms", section.platform)
    if count > 1 and jax.local_device_count() < count and jax.default_backend() == "cpu":
        raise ConfigError(
            f"jax.host_device_count={count}: JAX had already started with "
            f"{jax.local_device_count()} device(s); set XLA_FLAGS={_DEVICE_FLAG}={count} "
            "before starting Python"
        )
