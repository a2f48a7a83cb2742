"""LEQ: lower-expectile Q-learning with lambda-returns on imagined rollouts.

Pure building blocks: returns (§3.3), losses (§3.2, §3.4), imagination, per-step action
gradients for the actor surrogate, and the critic/actor networks (§3.6).
"""

from agent.leq import action_gradients, imagination, losses, networks, returns

__all__ = ["action_gradients", "imagination", "losses", "networks", "returns"]
