"""OpenVINO conversion: IR from the verified ONNX, and INT8 through NNCF."""
