"""OpenVINO IR (`.xml` + `.bin`): the intel-* targets, run by OpenVINO on an Intel CPU, GPU or NPU; INT8 by NNCF."""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.formats import ArtifactFormat, Package
from edgeseg.packages import CONVERSION_STACK


@dataclass(frozen=True)
class OpenVINOOptions:
    """The `openvino:` section, which only OpenVINO targets have: the OpenVINO device that runs the model."""

    device: str = "CPU"  # an entry of openvino.Core().available_devices: CPU, GPU, NPU

    def to_dict(self) -> dict:
        return {"device": self.device}

IR_WEIGHTS_SUFFIX = ".bin"  # the IR's weights file, beside its .xml
OPENVINO = Package("openvino", "openvino", "openvino")

FORMAT = ArtifactFormat(
    "openvino", backend="openvino", suffix=".xml",
    runner="edgeseg.formats.openvino.runtime", probe="edgeseg.formats.openvino.runtime",
    exporter="edgeseg.formats.openvino.convert.export",
    precision_exporters={"int8": "edgeseg.formats.openvino.convert.int8"},
    run_packages=(OPENVINO,),
    convert_packages=(*CONVERSION_STACK, OPENVINO, Package("nncf", "nncf", "openvino-convert")),
    weight_quantizer="NNCF",
    weights_suffix=IR_WEIGHTS_SUFFIX,
    section=OpenVINOOptions,
)
