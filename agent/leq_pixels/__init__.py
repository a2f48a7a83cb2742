"""LEQ from pixels (LEQ_DV3): lower-expectile actor-critic in the RSSM's
latent imagination, on a frozen world model."""
