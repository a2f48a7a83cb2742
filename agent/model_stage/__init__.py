"""The world model trained alone: LEQ_DV3's first stage (`algo=model`)."""
