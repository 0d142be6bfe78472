"""TFLite conversion: the exporter, the full-INT8 XNNPACK recipe, the operator check and the metadata writer."""
