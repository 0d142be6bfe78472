"""The Jetson bundle: Q/DQ INT8 placed for TensorRT, the parser check per TensorRT version, the bundle writer."""
