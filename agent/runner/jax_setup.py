"""The `jax` config section: platform, NaN debugging, host device count."""

from __future__ import annotations

import os
import re

import jax
from jax._src import xla_bridge  # backends_are_initialized: no public equivalent

from agent.config import ConfigError

PLATFORMS = ("auto", "cpu", "gpu", "tpu")
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def configure_jax(section) -> None:
    """Apply `jax.platform`, `jax.debug_nans` and `jax.host_device_count`.

    The platform and host device count only take effect before JAX starts its backend (the first
    computation); asking for a different device count later is an error, not a silent no-op, and
    leaves the environment untouched.
    """
    if section.platform not in PLATFORMS:
        raise ConfigError(
            f"jax.platform='{section.platform}' is not one of: {', '.join(PLATFORMS)}"
        )
    jax.config.update("jax_debug_nans", bool(section.debug_nans))
    count = int(section.host_device_count)
    started = xla_bridge.backends_are_initialized()
    on_cpu = started and jax.default_backend() == "cpu"
    if count > 1 and on_cpu and jax.local_device_count() != count:
        raise ConfigError(
            f"jax.host_device_count={count}: JAX had already started with "
            f"{jax.local_device_count()} device(s); set XLA_FLAGS={_DEVICE_FLAG}={count} "
            "before starting Python"
        )
    if not started:
        if count > 1:
            flags = re.sub(rf"{_DEVICE_FLAG}=\d+", "", os.environ.get("XLA_FLAGS", ""))
            os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()
        if section.platform != "auto":
            jax.config.update("jax_platforms", section.platform)
