"""IQL: implicit Q-learning (Kostrikov et al. 2022), an offline model-free baseline."""
