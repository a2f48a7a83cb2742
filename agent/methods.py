"""The method registry: config key `method` -> agent class, imported on first use."""

from __future__ import annotations

import importlib

from agent.config import ConfigError
from agent.protocol import Agent

METHODS = {
    "bc": "agent.bc.agent:BCAgent",
    "gem": "agent.gem.agent:GEMAgent",
    "iql": "agent.iql.agent:IQLAgent",
    "leq": "agent.leq.agent:LEQAgent",
    "leq_pixels": "agent.leq_pixels.agent:LEQPixelsAgent",
    "model": "agent.model_stage.agent:ModelStageAgent",
    "sac": "agent.sac.agent:SACAgent",
    "td3": "agent.td3.agent:TD3Agent",
    "td3bc": "agent.td3bc.agent:TD3BCAgent",
    "vem": "agent.vem.agent:VEMAgent",
}


def agent_class(method: str) -> type[Agent]:
    """The agent class registered as `method` (ConfigError for an unknown name)."""
    if method not in METHODS:
        raise ConfigError(f"method '{method}' is not one of: {', '.join(sorted(METHODS))}")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)
