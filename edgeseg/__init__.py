"""edgeseg: DeepLabV3 segmentation from a PyTorch checkpoint to edge devices, verified and benchmarked."""

__version__ = "0.1.0"
