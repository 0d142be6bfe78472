"""TFLite / LiteRT: the Android targets' artifact, run by the LiteRT interpreter (XNNPACK, GPU delegate, NNAPI)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.formats import ArtifactFormat, Package
from edgeseg.packages import MODEL_STACK


@dataclass(frozen=True)
class LiteRTOptions:
    """The `litert:` section, which only LiteRT targets have: the delegate the phone runs the model with."""

    delegate: str = "xnnpack"

    @property
    def splits_dilated_convs(self) -> bool:
        """Whether the export splits dilated convolutions by output region for this delegate (measured to pay on
        XNNPACK, whose kernels compute every tap, padded or not: formats/tflite/convert/region_split.py)."""
        return self.delegate in REGION_SPLIT_DELEGATES

    def to_dict(self) -> dict:
        return {"delegate": self.delegate}


REGION_SPLIT_DELEGATES = ("xnnpack",)


LITERT = Package("ai_edge_litert", "ai-edge-litert", "litert")
# The older interpreter package, run where ai-edge-litert is not installed (it needs numpy<2); no extra brings it.
TFLITE_RUNTIME = Package("tflite_runtime", "tflite-runtime", None)
INTERPRETERS = (LITERT, TFLITE_RUNTIME)  # in the order tried; each one's `<module>.interpreter` runs a .tflite
LITERT_TORCH = Package("litert_torch", "litert-torch", "tflite")
AI_EDGE_QUANTIZER = Package("ai_edge_quantizer", "ai-edge-quantizer", "tflite")

FORMAT = ArtifactFormat(
    "tflite", backend="litert", suffix=".tflite",
    runner="edgeseg.formats.tflite.runtime.runner", probe="edgeseg.formats.tflite.runtime.probe",
    exporter="edgeseg.formats.tflite.convert.export",
    run_packages=(LITERT,),
    # TFLite Model Metadata is written with MediaPipe's metadata writers.
    convert_packages=(*MODEL_STACK, LITERT_TORCH, AI_EDGE_QUANTIZER,
                      Package("mediapipe", "mediapipe", "tflite"), LITERT),
    weight_quantizer=AI_EDGE_QUANTIZER.distribution,
    describes_itself=True,
    section=LiteRTOptions,
    engine_package=LITERT.distribution, engine_min_version="1.4.0",
)
