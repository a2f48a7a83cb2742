"""The method registry: config key `method` -> agent class."""

from __future__ import annotations

from agent.base import Agent
from agent.bc import BCAgent
from agent.config import ConfigError
from agent.gem import GEMAgent
from agent.leq.agent import LEQAgent
from agent.vem import VEMAgent
from envs.offline_data import OfflineData

METHODS = {"bc": BCAgent, "gem": GEMAgent, "leq": LEQAgent, "vem": VEMAgent}


def make_agent(cfg, obs_dim: int, act_dim: int, data: OfflineData | None) -> Agent:
    """Build the agent named by `cfg.method` (data supplies normalisation statistics)."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method '{cfg.method}' is not one of: {', '.join(sorted(METHODS))}")
    return METHODS[cfg.method](cfg, obs_dim, act_dim, data)


def is_online(method: str) -> bool:
    """True for methods that collect their own data (no dataset is loaded for them)."""
    return bool(getattr(METHODS.get(method), "online", False))
