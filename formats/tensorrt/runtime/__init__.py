"""TensorRT on the device: the runner, the engine cache and its rules, build-engine, and what doctor asks."""
