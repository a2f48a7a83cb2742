"""VEM: Offline RL with Value-based Episodic Memory (Ma et al., ICLR 2022)."""

from agent.vem.agent import VEMAgent, VEMState

__all__ = ["VEMAgent", "VEMState"]
