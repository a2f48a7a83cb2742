"""TD3+BC (Fujimoto and Gu 2021): TD3 with a behaviour-cloning term, an offline baseline."""
