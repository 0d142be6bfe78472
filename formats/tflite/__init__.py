"""TFLite / LiteRT: the Android targets' artifact, run by the LiteRT interpreter (XNNPACK, GPU delegate, NNAPI)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.formats import ArtifactFormat, Package


@dataclass(frozen=True)
class LiteRTOptions:
    """The `litert:` section, which only LiteRT targets have: the delegate the phone runs the model with."""

    delegate: str = "xnnpack"

    def to_dict(self) -> dict:
        return {"delegate": self.delegate}



FORMAT = ArtifactFormat(
    "tflite", backend="litert", suffix=".tflite",
    runner="edgeseg.formats.tflite.runtime.runner", probe="edgeseg.formats.tflite.runtime.probe",
    exporter="edgeseg.formats.tflite.convert.export",
    run_packages=(Package("ai_edge_litert", "ai-edge-litert", "litert"),),
    convert_packages=(Package("torch", "torch", "convert"), Package("torchvision", "torchvision", "convert"),
                      Package("litert_torch", "litert-torch", "tflite"),
                      Package("ai_edge_quantizer", "ai-edge-quantizer", "tflite"),
                      Package("ai_edge_litert", "ai-edge-litert", "litert")),
    weight_quantizer="ai-edge-quantizer",
    describes_itself=True,
    section=LiteRTOptions,
    engine_package="ai-edge-litert", engine_min_version="1.4.0",
)
