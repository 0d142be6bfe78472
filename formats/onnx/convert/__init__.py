"""ONNX Runtime INT8: the workstation side of the onnx format."""
