"""Behaviour cloning."""

from agent.bc.agent import BCAgent, bc_loss

__all__ = ["BCAgent", "bc_loss"]
