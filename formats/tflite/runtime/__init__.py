"""LiteRT on the device: the interpreter runner, TFLite Model Metadata read back, and what doctor asks."""
