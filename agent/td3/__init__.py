"""TD3: twin delayed deep deterministic policy gradient (online)."""
