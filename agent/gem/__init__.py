"""GEM: Generalizable Episodic Memory (online; algorithms.md §5)."""

from agent.gem.agent import GEMAgent, GEMState

__all__ = ["GEMAgent", "GEMState"]
