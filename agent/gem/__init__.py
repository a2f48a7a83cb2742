"""GEM: Generalizable Episodic Memory (online)."""

from agent.gem.agent import GEMAgent, GEMState

__all__ = ["GEMAgent", "GEMState"]
