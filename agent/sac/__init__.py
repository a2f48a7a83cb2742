"""SAC: soft actor-critic with automatic entropy temperature (online)."""
