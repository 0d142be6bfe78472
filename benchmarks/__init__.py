"""Evaluation side: datasets, the segmentation metric, synthetic scenes and the benchmark harness."""
